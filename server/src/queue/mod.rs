//! Stage 4, the delivery queue, on apalis: SQLite or Postgres in the same database as the
//! event log, or Redis in production.
//!
//! A job the intake queues carries the event, so that its first attempt reads nothing back;
//! retries carry only the id and read the event from the log. With the queue in the log's
//! database, the intake writes the event and its job in one transaction
//! ([`JobQueue::push_in`]); on SQLite the job is written claimed by this process's worker,
//! which runs it as soon as the transaction commits (`claims`). Other pushes wake this
//! process's worker at once (see [`JobQueue`]), so no path from intake to subscribers waits for
//! a polling interval. Jobs pushed by other processes, and retries scheduled for later, are
//! found by polling every [`POLL_INTERVAL`].
//!
//! The queue itself is generic ([`JobQueue`]); the webhook queue is another instance of it.

mod claims;
mod jobs;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use jobs::{JobHandler, JobQueue, Pushed, QueueError, QueueJob, QueueSettings};

use crate::delivery::Deliverer;
use crate::eventlog::LoggedEvent;
use crate::transaction::SqlTx;

/// How often the worker looks for jobs it was not woken for, by default.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How often a worker tells the SQL queue it is alive. A job locked by a worker silent for
/// two of these (a process killed mid-delivery) goes back to the queue, so this bounds how
/// long such a delivery waits after a restart.
const HEARTBEAT: Duration = Duration::from_secs(3);

/// A delivery job: deliver the logged event with this id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub event_id: String,
    /// The event itself, in a job queued as the event was logged. Absent in retries and in
    /// jobs queued again by the sweeper (and in jobs queued before this field existed), which
    /// read the event from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<FreshEvent>,
}

/// What a first delivery attempt needs of a newly logged event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreshEvent {
    pub app_id: String,
    pub channels: Vec<String>,
    pub name: String,
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
}

impl FreshEvent {
    fn of(event: &LoggedEvent) -> Self {
        Self {
            app_id: event.app_id.clone(),
            channels: event.channels.clone(),
            name: event.event.clone(),
            data: event.data.clone(),
            socket_id: event.socket_id.clone(),
        }
    }
}

impl Delivery {
    /// The first delivery of a newly logged event, carrying the event.
    fn fresh(event: &LoggedEvent) -> Self {
        Self {
            event_id: event.id.clone(),
            event: Some(FreshEvent::of(event)),
        }
    }
}

impl QueueJob for Delivery {
    const QUEUE: QueueSettings = QueueSettings {
        job: "delivery",
        queue: "queue",
        redis_queue: "deliveries",
        worker: "delivery",
        sql_heartbeat: Some(HEARTBEAT),
        recheck_wakes: true,
    };
}

/// The handle intake and worker use to queue deliveries.
pub type Queue = JobQueue<Delivery>;

impl JobQueue<Delivery> {
    /// Queues a delivery, to run after `delay` when one is given.
    pub async fn push(&self, event_id: &str, delay: Option<Duration>) -> Result<(), QueueError> {
        let job = Delivery {
            event_id: event_id.to_owned(),
            event: None,
        };
        self.enqueue(job, delay).await
    }

    /// Queues the first delivery of newly logged events, each job carrying its event, in one
    /// write.
    pub async fn push_fresh(
        &self,
        events: impl IntoIterator<Item = &LoggedEvent>,
    ) -> Result<(), QueueError> {
        let jobs = events.into_iter().map(Delivery::fresh).collect();
        self.enqueue_many(jobs).await
    }

    /// Writes the first delivery of newly logged events in `tx`, each job carrying its event;
    /// see [`JobQueue::push_in`].
    pub async fn push_fresh_in(
        &self,
        tx: &mut SqlTx,
        events: &[LoggedEvent],
    ) -> Result<Pushed<Delivery>, QueueError> {
        let jobs: Vec<Delivery> = events.iter().map(Delivery::fresh).collect();
        self.push_in(tx, jobs).await
    }

    /// Runs a worker with `concurrency` parallel deliveries until `stop` turns true. It is
    /// woken at once by this process's pushes and looks for other jobs every `poll_interval`.
    pub async fn run_worker(
        &self,
        deliverer: Arc<Deliverer>,
        concurrency: usize,
        poll_interval: Duration,
        stop: watch::Receiver<bool>,
    ) {
        self.work(deliverer, concurrency, poll_interval, stop).await;
    }
}

/// One delivery attempt. Failures are recorded and retried by the deliverer, so the job
/// itself always completes.
impl JobHandler<Delivery> for Deliverer {
    async fn handle(&self, job: Delivery) {
        self.deliver_job(job).await;
    }
}
