//! Stage 1, intake: `POST /api/events` and the endpoints that read the event log, documented
//! with OpenAPI.
//!
//! An accepted event is logged (stage 2), its metadata published for operators (stage 3) and a
//! delivery job queued (stage 4) before the intake answers `202 Accepted`; the worker
//! (stage 5) delivers it to the WebSocket server (stage 6).
//!
//! Stages 2 to 4 run in groups ([`crate::batch`]): the events accepted (or replayed) while the
//! previous group was being written are written together. With the queue in the log's database
//! (SQLite or Postgres), a group's events and their jobs are one transaction ([`SqlTx`]), made
//! durable once, after which this process's worker runs the jobs it claimed in it (SQLite) or
//! is woken to fetch them; with the queue on Redis, the events are logged in one transaction,
//! then queued in one write and marked `queued` in another.

mod api;
mod auth;
mod body;
mod problem;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, watch};

pub use api::{IntakeApi, openapi_json, openapi_service};
pub use auth::verify_signatures;
pub use problem::{Problem, ProblemResponse, allow_methods, problem_from_error};

use crate::apps::{App, AppRegistry, now_millis};
use crate::batch::Batcher;
use crate::eventlog::{EventLog, LoggedEvent, NewEvent};
use crate::pubsub::{Bus, EventMetadata};
use crate::queue::Queue;
use crate::rate::TokenBucket;
use crate::transaction::SqlTx;

/// How old an `accepted` event must be before the sweeper queues it again.
pub const SWEEP_AFTER: Duration = Duration::from_secs(5);

/// How long a `queued` or `retrying` event may go without being queued or attempted before
/// the sweeper queues it again. Longer than the longest retry delay (5 minutes, +50% jitter),
/// so only a lost job is replaced; a job merely stuck behind a backlog this long gets a
/// duplicate, which delivers the event twice at worst (delivery is at least once).
pub const STALL_AFTER: Duration = Duration::from_secs(15 * 60);

/// A validated publish request.
#[derive(Debug, Clone)]
pub struct Publish {
    pub channels: Vec<String>,
    pub event: String,
    pub data: String,
    pub socket_id: Option<String>,
}

impl Publish {
    /// A fingerprint of the request, to tell an idempotent retry from a different request
    /// that reuses its key.
    fn hash(&self) -> String {
        let canonical = serde_json::json!([self.channels, self.event, self.data, self.socket_id]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// The intake's shared state.
pub struct Intake {
    pub log: EventLog,
    pub queue: Queue,
    pub bus: Bus,
    pub apps: AppRegistry,
    limits: DashMap<String, Arc<Mutex<TokenBucket>>>,
    writer: Batcher<NewEvent, Result<Written, AcceptError>>,
}

/// Most events logged and queued in one group. 64 rows of the event table's 17 columns stay
/// far below every backend's limit on bound parameters.
const WRITE_BATCH: usize = 64;

/// What the group writer did with one event.
#[derive(Debug)]
enum Written {
    /// Logged now, and handed to the queue.
    New(LoggedEvent),
    /// Another request with the same idempotency key logged it first.
    Existing(LoggedEvent),
}

/// Why an event was not accepted.
#[derive(Debug)]
pub enum AcceptError {
    RateLimited(Duration),
    IdempotencyConflict,
    Log(sea_orm::DbErr),
}

impl Intake {
    pub fn new(log: EventLog, queue: Queue, bus: Bus, apps: AppRegistry) -> Arc<Self> {
        let writer = {
            let (log, queue, bus) = (log.clone(), queue.clone(), bus.clone());
            Batcher::spawn(WRITE_BATCH, move |news: Vec<NewEvent>| {
                let (log, queue, bus) = (log.clone(), queue.clone(), bus.clone());
                async move { write_group(&log, &queue, &bus, news).await }
            })
        };
        Arc::new(Self {
            log,
            queue,
            bus,
            apps,
            limits: DashMap::new(),
            writer,
        })
    }

    /// Takes one token from the app's intake budget, or says how long to wait.
    async fn take_token(&self, app: &App) -> Result<(), Duration> {
        let rate = app.settings.intake_rate;
        let bucket = self
            .limits
            .entry(app.id.clone())
            .or_insert_with(|| Arc::new(Mutex::new(TokenBucket::new(rate))))
            .clone();
        let mut bucket = bucket.lock().await;
        if bucket.try_take(rate) {
            Ok(())
        } else {
            Err(bucket.wait_time(rate))
        }
    }

    /// Logs, announces and queues an event. With an idempotency key, a repeat of an earlier
    /// request returns the earlier event instead of creating another.
    pub async fn accept(
        &self,
        app: &App,
        publish: Publish,
        idempotency_key: Option<String>,
    ) -> Result<LoggedEvent, AcceptError> {
        let received_at = now_millis();
        let hash = publish.hash();
        if let Some(key) = &idempotency_key
            && let Some(existing) = self
                .log
                .find_by_idempotency_key(&app.id, key)
                .await
                .map_err(AcceptError::Log)?
        {
            return if existing.request_hash == hash {
                Ok(existing)
            } else {
                Err(AcceptError::IdempotencyConflict)
            };
        }
        self.take_token(app)
            .await
            .map_err(AcceptError::RateLimited)?;
        let new = NewEvent {
            app_id: app.id.clone(),
            channels: publish.channels,
            event: publish.event,
            data: publish.data,
            socket_id: publish.socket_id,
            idempotency_key: idempotency_key.clone(),
            request_hash: hash.clone(),
            replay_of: None,
            received_at,
        };
        self.write(new).await
    }

    /// Logs, announces and queues one event through the group writer.
    async fn write(&self, new: NewEvent) -> Result<LoggedEvent, AcceptError> {
        match self.writer.submit(new).await {
            Some(Ok(Written::New(event) | Written::Existing(event))) => Ok(event),
            Some(Err(error)) => Err(error),
            None => Err(AcceptError::Log(sea_orm::DbErr::Custom(
                "the event log writer has stopped".into(),
            ))),
        }
    }

    /// Re-delivers a logged event as a new event that records what it replays.
    pub async fn replay(&self, original: &LoggedEvent) -> Result<LoggedEvent, AcceptError> {
        let new = NewEvent {
            app_id: original.app_id.clone(),
            channels: original.channels.clone(),
            event: original.event.clone(),
            data: original.data.clone(),
            socket_id: None,
            idempotency_key: None,
            request_hash: original.request_hash.clone(),
            replay_of: Some(original.id.clone()),
            received_at: now_millis(),
        };
        self.write(new).await
    }
}

/// Logs, announces and queues a group of accepted events; answers each in order.
async fn write_group(
    log: &EventLog,
    queue: &Queue,
    bus: &Bus,
    news: Vec<NewEvent>,
) -> Vec<Result<Written, AcceptError>> {
    let together = queue.is_in_database();
    let mut written = match log_events(log, queue, together, news.clone()).await {
        Ok(events) => events.into_iter().map(|e| Ok(Written::New(e))).collect(),
        // One row failed the whole group (a repeated idempotency key, most likely): write
        // each on its own, so that only that one fails.
        Err(_) if news.len() > 1 => {
            let mut written = Vec::with_capacity(news.len());
            for new in news {
                written.push(write_one(log, queue, together, new).await);
            }
            written
        }
        Err(error) => {
            let new = news.into_iter().next().expect("a group has an event");
            vec![concurrent_duplicate(log, &new, error).await]
        }
    };
    let mut fresh: Vec<&mut LoggedEvent> = written
        .iter_mut()
        .filter_map(|result| match result {
            Ok(Written::New(event)) => Some(event),
            _ => None,
        })
        .collect();
    if together {
        for event in &fresh {
            bus.publish(metadata(event)).await;
        }
    } else {
        dispatch_group(log, queue, bus, &mut fresh).await;
    }
    written
}

/// Logs events; with the queue in the log's database (`together`), queues them in the same
/// transaction ([`log_and_queue`]), otherwise leaves them `accepted` for [`dispatch_group`].
async fn log_events(
    log: &EventLog,
    queue: &Queue,
    together: bool,
    news: Vec<NewEvent>,
) -> Result<Vec<LoggedEvent>, sea_orm::DbErr> {
    if together {
        log_and_queue(log, queue, news).await
    } else {
        log.insert_many(news).await
    }
}

/// Logs events and queues their deliveries in one transaction, made durable once: both or
/// neither. For a queue in the log's own database.
async fn log_and_queue(
    log: &EventLog,
    queue: &Queue,
    news: Vec<NewEvent>,
) -> Result<Vec<LoggedEvent>, sea_orm::DbErr> {
    let mut tx = SqlTx::begin(log.connection()).await?;
    let events = log.insert_queued_in(&mut tx, news).await?;
    let pushed = queue
        .push_fresh_in(&mut tx, &events)
        .await
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
    tx.commit().await?;
    log.make_durable().await?;
    pushed.committed();
    Ok(events)
}

async fn write_one(
    log: &EventLog,
    queue: &Queue,
    together: bool,
    new: NewEvent,
) -> Result<Written, AcceptError> {
    let written = log_events(log, queue, together, vec![new.clone()]).await;
    match written.map(|mut events| events.pop()) {
        Ok(Some(event)) => Ok(Written::New(event)),
        Ok(None) => Err(AcceptError::Log(sea_orm::DbErr::Custom(
            "the log wrote no event".into(),
        ))),
        Err(error) => concurrent_duplicate(log, &new, error).await,
    }
}

/// An insert failed. When two requests with one idempotency key raced, the loser answers with
/// the winner's event; otherwise the error stands.
async fn concurrent_duplicate(
    log: &EventLog,
    new: &NewEvent,
    error: sea_orm::DbErr,
) -> Result<Written, AcceptError> {
    let Some(key) = &new.idempotency_key else {
        return Err(AcceptError::Log(error));
    };
    match log
        .find_by_idempotency_key(&new.app_id, key)
        .await
        .map_err(AcceptError::Log)?
    {
        Some(existing) if existing.request_hash == new.request_hash => {
            Ok(Written::Existing(existing))
        }
        Some(_) => Err(AcceptError::IdempotencyConflict),
        None => Err(AcceptError::Log(error)),
    }
}

/// Publishes the events' metadata and queues their deliveries in one write. A queue failure
/// leaves them `accepted`; the sweeper queues them later, so their callers still get a 202.
async fn dispatch_group(log: &EventLog, queue: &Queue, bus: &Bus, events: &mut [&mut LoggedEvent]) {
    if events.is_empty() {
        return;
    }
    for event in events.iter() {
        bus.publish(metadata(event)).await;
    }
    if let Err(error) = queue.push_fresh(events.iter().map(|e| &**e)).await {
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        tracing::warn!(event_ids = ?ids, %error, "events logged but not queued; the sweeper will retry");
        return;
    }
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    if let Ok(queued_at) = log.mark_queued_many(&ids).await {
        for event in events.iter_mut() {
            event.queued_at = Some(queued_at);
            event.status = crate::eventlog::EventStatus::Queued;
        }
    }
}

pub fn metadata(event: &LoggedEvent) -> EventMetadata {
    EventMetadata {
        id: event.id.clone(),
        app_id: event.app_id.clone(),
        channels: event.channels.clone(),
        event: event.event.clone(),
        size: event.data.len() as u64,
        received_at: event.received_at,
    }
}

/// Queues events left `accepted` by a crash between logging and queueing, every `every`.
pub async fn run_sweeper(intake: Arc<Intake>, every: Duration, stop: watch::Receiver<bool>) {
    let mut every = crate::periodic::Every::new(every, stop);
    while every.tick().await {
        if let Err(error) = sweep(&intake, SWEEP_AFTER).await {
            tracing::warn!(%error, "sweeper cannot read the event log");
        }
        if let Err(error) = sweep_stalled(&intake, STALL_AFTER).await {
            tracing::warn!(%error, "sweeper cannot read the event log");
        }
    }
}

/// Queues every event that has been `accepted` for longer than `older_than`; returns how many
/// it queued.
pub async fn sweep(intake: &Intake, older_than: Duration) -> Result<usize, sea_orm::DbErr> {
    let before = now_millis() - older_than.as_millis() as i64;
    let mut queued = 0;
    loop {
        let stuck = intake.log.stuck(before, 500).await?;
        let full = stuck.len() == 500;
        for event in stuck {
            tracing::info!(event_id = %event.id, "queueing an event left unqueued");
            match intake.queue.push(&event.id, None).await {
                Ok(()) => {
                    intake.log.mark_queued(&event.id).await?;
                    queued += 1;
                }
                Err(error) => {
                    tracing::warn!(event_id = %event.id, %error, "sweeper cannot queue an event");
                    return Ok(queued);
                }
            }
        }
        if !full {
            return Ok(queued);
        }
    }
}

/// Queues again every `queued` or `retrying` event with no activity for `older_than`; returns
/// how many it queued.
pub async fn sweep_stalled(intake: &Intake, older_than: Duration) -> Result<usize, sea_orm::DbErr> {
    let before = now_millis() - older_than.as_millis() as i64;
    let stalled = intake.log.stalled(before, 500).await?;
    let mut queued = 0;
    for event in stalled {
        tracing::warn!(event_id = %event.id, status = event.status.as_str(), "queueing a stalled event again");
        if let Err(error) = intake.queue.push(&event.id, None).await {
            tracing::warn!(event_id = %event.id, %error, "sweeper cannot queue an event");
            break;
        }
        intake.log.mark_queued(&event.id).await?;
        queued += 1;
    }
    Ok(queued)
}

/// Deletes events older than each app's retention, in batches, every `every`.
pub async fn run_retention(intake: Arc<Intake>, every: Duration, stop: watch::Receiver<bool>) {
    let mut every = crate::periodic::Every::new(every, stop);
    while every.tick().await {
        prune_expired(&intake, RETENTION_BATCH).await;
    }
}

/// Events one retention batch deletes; small enough that no transaction holds the log long.
pub const RETENTION_BATCH: u64 = 1000;

/// Deletes, `batch` at a time, every event older than its app's `retention_days`; returns how
/// many it deleted. Errors are logged and end that app's pass.
pub async fn prune_expired(intake: &Intake, batch: u64) -> u64 {
    let apps = match intake.apps.store().list().await {
        Ok(apps) => apps,
        Err(error) => {
            tracing::warn!(%error, "retention cannot list apps");
            return 0;
        }
    };
    let mut total = 0;
    for app in apps {
        let cutoff = now_millis() - i64::from(app.settings.retention_days) * 86_400_000;
        let mut deleted = 0;
        loop {
            match intake.log.prune(&app.id, cutoff, batch).await {
                Ok(n) => {
                    deleted += n;
                    if n < batch {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(app_id = %app.id, %error, "cannot prune events");
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(app_id = %app.id, deleted, "pruned old events");
        }
        total += deleted;
    }
    total
}
