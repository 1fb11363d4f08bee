//! Pusher webhooks: every transition the hub reports, batched, filtered per endpoint, signed,
//! queued on apalis, retried, and recorded.
//!
//! The path of one event:
//!
//! 1. The hub (or a connection, for client events) calls [`Webhooks::notify`]. That is a send
//!    on an unbounded channel: it never waits, never does I/O, and never fails the caller.
//! 2. [`batcher`]: one task per app holds removals back for the rejoin delay and collects
//!    events for a short window.
//! 3. The dispatcher splits each finished batch per endpoint with the endpoint's filters,
//!    stores one [`Batch`] per endpoint that wants any of it, and queues a job for it.
//! 4. [`sender`]: the apalis worker signs the body (`X-Pusher-Signature` over the exact bytes
//!    sent), POSTs it, records the attempt, and retries with exponential backoff until the
//!    batch is delivered or dead.
//! 5. Dead batches can be listed and marked for re-sending from any process (the CLI does);
//!    every server looks for marked batches each [`RESEND_SWEEP`], claims each one with a
//!    conditional update so only one queues it, and sends it with a fresh set of attempts.
//!
//! The notify channel is unbounded on purpose: the batcher counts occupations and members,
//! and a dropped event would leave a count wrong for good. Its backlog is bounded in practice
//! by how fast one task can move events between two maps.
//!
//! The hub reports transitions as its mode decides them: on a single node from its own
//! subscribers; in a cluster, the cluster adapter reports the cluster-wide ones (the first
//! subscriber in the cluster, the last one leaving), each on the node where Redis decided
//! it. The rejoin delay is kept by that node's batcher, which asks the cluster when the delay
//! ends whether the removal still holds ([`Webhooks::use_cluster`]). A user who leaves on one
//! node and rejoins on another within the delay therefore gets no `member_removed`; the
//! second node has already sent its `member_added`, so the receiver sees that user added
//! twice, which leaves it with the right members.
//!
//! Events still inside the window or the rejoin delay when the process stops are lost;
//! batches already stored are sent after a restart.

pub mod batcher;
pub mod cli;
pub mod endpoints;
pub mod sender;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use batcher::{Recheck, Timing};
pub use endpoints::{
    Batch, BatchStatus, EVENT_NAMES, Endpoint, EndpointError, NewEndpoint, WebhookAttempt,
    WebhookStore, parse_header,
};
pub use sender::{Sender, SenderSettings, WebhookQueue};

use crate::apps::{AppRegistry, now_millis};
use crate::delivery::RetryPolicy;
use crate::hub::Cluster;

/// How long the dispatcher trusts its copy of an app's endpoints, so endpoints added with
/// the CLI (another process) take effect within this time.
const ENDPOINT_CACHE_TTL: Duration = Duration::from_secs(1);

/// How often a server looks for batches marked to be re-sent.
pub const RESEND_SWEEP: Duration = Duration::from_secs(1);

/// One webhook event, serialized exactly as it appears in the body's `events` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum WebhookEvent {
    ChannelOccupied {
        channel: String,
    },
    ChannelVacated {
        channel: String,
    },
    MemberAdded {
        channel: String,
        user_id: String,
    },
    MemberRemoved {
        channel: String,
        user_id: String,
    },
    ClientEvent {
        channel: String,
        event: String,
        /// The event's data as a string, as Pusher sends it.
        data: String,
        socket_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    CacheMiss {
        channel: String,
    },
    SubscriptionCount {
        channel: String,
        subscription_count: usize,
    },
}

impl WebhookEvent {
    /// A `client_event` from the data the client sent: a JSON string is sent as that string,
    /// anything else (pusher-js sends objects) as its JSON text.
    pub fn client_event(
        channel: &str,
        event: &str,
        raw_data: &str,
        socket_id: &str,
        user_id: Option<String>,
    ) -> Self {
        let data = serde_json::from_str::<String>(raw_data).unwrap_or_else(|_| raw_data.to_owned());
        Self::ClientEvent {
            channel: channel.to_owned(),
            event: event.to_owned(),
            data,
            socket_id: socket_id.to_owned(),
            user_id,
        }
    }

    /// The `name` field, which endpoint filters match.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ChannelOccupied { .. } => "channel_occupied",
            Self::ChannelVacated { .. } => "channel_vacated",
            Self::MemberAdded { .. } => "member_added",
            Self::MemberRemoved { .. } => "member_removed",
            Self::ClientEvent { .. } => "client_event",
            Self::CacheMiss { .. } => "cache_miss",
            Self::SubscriptionCount { .. } => "subscription_count",
        }
    }

    pub fn channel(&self) -> &str {
        match self {
            Self::ChannelOccupied { channel }
            | Self::ChannelVacated { channel }
            | Self::MemberAdded { channel, .. }
            | Self::MemberRemoved { channel, .. }
            | Self::ClientEvent { channel, .. }
            | Self::CacheMiss { channel }
            | Self::SubscriptionCount { channel, .. } => channel,
        }
    }
}

/// Webhook settings of the server process.
#[derive(Debug, Clone, Copy)]
pub struct WebhookSettings {
    pub timing: Timing,
    pub sender: SenderSettings,
    /// Requests the worker runs in parallel, over every endpoint.
    pub workers: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timing: Timing {
                window: Duration::from_millis(100),
                removal_delay: Duration::from_secs(3),
            },
            // 1 s doubling to 60 s: eleven attempts span about five minutes, as Pusher's do.
            sender: SenderSettings {
                retry: RetryPolicy {
                    max_attempts: 11,
                    base_delay: Duration::from_secs(1),
                    max_delay: Duration::from_secs(60),
                },
                timeout: Duration::from_secs(10),
                per_endpoint: 4,
            },
            workers: 32,
        }
    }
}

/// The handle the hub notifies and operators use. Cloning shares it.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    settings: WebhookSettings,
    store: WebhookStore,
    queue: WebhookQueue,
    apps: AppRegistry,
    batchers: DashMap<String, mpsc::UnboundedSender<WebhookEvent>>,
    flushed: mpsc::UnboundedSender<batcher::Flushed>,
    dispatch: std::sync::Mutex<Option<mpsc::UnboundedReceiver<batcher::Flushed>>>,
    endpoints: DashMap<String, (Instant, Arc<Vec<Endpoint>>)>,
    /// Set in cluster mode: the batchers trust each reported transition and recheck removals.
    recheck: OnceLock<Arc<dyn Recheck>>,
}

impl Webhooks {
    pub fn new(
        store: WebhookStore,
        queue: WebhookQueue,
        apps: AppRegistry,
        settings: WebhookSettings,
    ) -> Self {
        let (flushed, dispatch) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                settings,
                store,
                queue,
                apps,
                batchers: DashMap::new(),
                flushed,
                dispatch: std::sync::Mutex::new(Some(dispatch)),
                endpoints: DashMap::new(),
                recheck: OnceLock::new(),
            }),
        }
    }

    /// Reports an event of `app_id`. Never waits. Must be called inside the Tokio runtime,
    /// which starts the app's batcher on its first event.
    pub fn notify(&self, app_id: &str, event: WebhookEvent) {
        if let Some(batcher) = self.inner.batchers.get(app_id) {
            let _ = batcher.send(event);
            return;
        }
        let batcher = self
            .inner
            .batchers
            .entry(app_id.to_owned())
            .or_insert_with(|| self.spawn_batcher(app_id))
            .clone();
        let _ = batcher.send(event);
    }

    fn spawn_batcher(&self, app_id: &str) -> mpsc::UnboundedSender<WebhookEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let out = self.inner.flushed.clone();
        let timing = self.inner.settings.timing;
        let recheck = self.inner.recheck.get().cloned();
        tokio::spawn(batcher::run(app_id.to_owned(), rx, out, timing, recheck));
        tx
    }

    /// Switches to cluster mode, before the first event: transitions are trusted as the
    /// cluster reports them, and a removal is sent only if the cluster still agrees when its
    /// delay ends.
    pub fn use_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.inner.recheck.set(Arc::new(ClusterRecheck(cluster)));
    }

    pub fn store(&self) -> &WebhookStore {
        &self.inner.store
    }

    /// Adds an endpoint; this process uses it from the next batch on.
    pub async fn add_endpoint(&self, new: NewEndpoint) -> Result<Endpoint, EndpointError> {
        let endpoint = self.inner.store.add_endpoint(new).await?;
        self.inner.endpoints.remove(&endpoint.app_id);
        Ok(endpoint)
    }

    /// Removes an endpoint; returns whether it existed.
    pub async fn remove_endpoint(&self, app_id: &str, id: &str) -> Result<bool, DbErr> {
        let removed = self.inner.store.remove_endpoint(app_id, id).await?;
        self.inner.endpoints.remove(app_id);
        Ok(removed)
    }

    /// Sends a dead batch again, with a fresh `time_ms` and a fresh set of attempts.
    pub async fn resend(&self, batch_id: &str) -> anyhow::Result<()> {
        resend(&self.inner.store, batch_id).await?;
        self.queue_resend(batch_id).await?;
        Ok(())
    }

    /// Queues a batch marked `resend`, unless another process took it first.
    async fn queue_resend(&self, batch_id: &str) -> anyhow::Result<()> {
        if self.inner.store.claim_resend(batch_id).await? {
            self.inner.queue.push(batch_id, None).await?;
        }
        Ok(())
    }

    /// Queues the batches marked `resend` (by the CLI, another process) every
    /// [`RESEND_SWEEP`] until `stop` turns true.
    async fn run_resend_sweeper(&self, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(RESEND_SWEEP);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = async {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = ticker.tick() => {}
                () = stopping => return,
            }
            let batches = match self.inner.store.awaiting_resend(100).await {
                Ok(batches) => batches,
                Err(error) => {
                    tracing::warn!(%error, "cannot look for webhook batches to re-send");
                    continue;
                }
            };
            for batch in batches {
                if let Err(error) = self.queue_resend(&batch.id).await {
                    tracing::warn!(batch_id = %batch.id, %error, "cannot queue a re-sent webhook batch");
                }
            }
        }
    }

    /// Starts the dispatcher and the sending worker; both stop when `stop` turns true.
    pub fn spawn(&self, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let taken = self
            .inner
            .dispatch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(dispatch) = taken else {
            tracing::error!("webhooks are already running");
            return Vec::new();
        };
        let sender = Sender::new(
            self.inner.store.clone(),
            self.inner.apps.clone(),
            self.inner.queue.clone(),
            self.inner.settings.sender,
        );
        let queue = self.inner.queue.clone();
        let workers = self.inner.settings.workers;
        let worker_stop = stop.clone();
        let worker =
            tokio::spawn(async move { queue.run_worker(sender, workers, worker_stop).await });
        let this = self.clone();
        let sweep_stop = stop.clone();
        let sweeper = tokio::spawn(async move { this.run_resend_sweeper(sweep_stop).await });
        let this = self.clone();
        let dispatcher = tokio::spawn(async move { this.run_dispatcher(dispatch, stop).await });
        vec![dispatcher, worker, sweeper]
    }

    async fn run_dispatcher(
        &self,
        mut flushed: mpsc::UnboundedReceiver<batcher::Flushed>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let stopping = async {
                let _ = stop.wait_for(|s| *s).await;
            };
            let next = tokio::select! {
                next = flushed.recv() => next,
                () = stopping => None,
            };
            match next {
                Some((app_id, events)) => self.dispatch(&app_id, &events).await,
                None => return,
            }
        }
    }

    /// Stores one batch per endpoint that wants any of `events`, holding only those, and
    /// queues it.
    async fn dispatch(&self, app_id: &str, events: &[WebhookEvent]) {
        let endpoints = match self.endpoints(app_id).await {
            Ok(endpoints) => endpoints,
            Err(error) => {
                let count = events.len();
                return tracing::error!(app_id, %error, count, "cannot read webhook endpoints; events lost");
            }
        };
        let time_ms = now_millis();
        for endpoint in endpoints.iter() {
            let wanted: Vec<&WebhookEvent> = events.iter().filter(|e| endpoint.wants(e)).collect();
            if wanted.is_empty() {
                continue;
            }
            let json = serde_json::to_string(&wanted).unwrap_or_else(|_| "[]".to_owned());
            let stored = self
                .inner
                .store
                .insert_batch(endpoint, time_ms, json, wanted.len())
                .await;
            let batch = match stored {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(app_id, endpoint_id = %endpoint.id, %error, "cannot store webhook batch; events lost");
                    continue;
                }
            };
            if let Err(error) = self.inner.queue.push(&batch.id, None).await {
                tracing::error!(batch_id = %batch.id, %error, "cannot queue webhook batch");
            }
        }
    }

    async fn endpoints(&self, app_id: &str) -> Result<Arc<Vec<Endpoint>>, DbErr> {
        if let Some(cached) = self.inner.endpoints.get(app_id)
            && cached.0.elapsed() < ENDPOINT_CACHE_TTL
        {
            return Ok(cached.1.clone());
        }
        let endpoints = Arc::new(self.inner.store.endpoints(app_id).await?);
        self.inner
            .endpoints
            .insert(app_id.to_owned(), (Instant::now(), endpoints.clone()));
        Ok(endpoints)
    }
}

/// Rechecks removals against the cluster's records.
struct ClusterRecheck(Arc<Cluster>);

impl Recheck for ClusterRecheck {
    fn still_removed(&self, app_id: String, event: WebhookEvent) -> BoxFuture<'static, bool> {
        let cluster = self.0.clone();
        Box::pin(async move {
            match &event {
                WebhookEvent::ChannelVacated { channel } => cluster
                    .channel_stats(&app_id, channel)
                    .await
                    .map_or(true, |stats| stats.subscription_count == 0),
                WebhookEvent::MemberRemoved { channel, user_id } => cluster
                    .member_ids(&app_id, channel)
                    .await
                    .map_or(true, |ids| !ids.contains(user_id)),
                _ => true,
            }
        })
    }
}

/// Marks a dead batch to be sent again; a running server queues it within [`RESEND_SWEEP`].
/// Works from any process, such as the CLI, since it only changes the stored batch.
pub async fn resend(store: &WebhookStore, batch_id: &str) -> anyhow::Result<()> {
    let Some(batch) = store.batch(batch_id).await? else {
        anyhow::bail!("webhook batch {batch_id} does not exist");
    };
    if !store.requeue(batch_id).await? {
        let status = batch.status.as_str();
        anyhow::bail!("webhook batch {batch_id} is {status}; only dead batches are re-sent");
    }
    Ok(())
}

/// Opens the webhook queue the way the server does: Redis when the delivery queue is on
/// Redis, else the database.
pub async fn open_queue(
    settings: &crate::config::Settings,
    db: &DatabaseConnection,
) -> anyhow::Result<WebhookQueue> {
    match (settings.queue, &settings.redis_url) {
        (crate::config::QueueKind::Redis, Some(url)) => {
            WebhookQueue::redis(url, &settings.redis_prefix).await
        }
        _ => WebhookQueue::in_database(db).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn events_serialize_as_pusher_sends_them() {
        let occupied = WebhookEvent::ChannelOccupied {
            channel: "a".to_owned(),
        };
        let text = serde_json::to_string(&occupied).unwrap();
        assert_eq!(text, r#"{"name":"channel_occupied","channel":"a"}"#);

        let object = WebhookEvent::client_event("private-a", "client-x", r#"{"k":1}"#, "1.2", None);
        let text = serde_json::to_string(&object).unwrap();
        assert_eq!(
            text,
            r#"{"name":"client_event","channel":"private-a","event":"client-x","data":"{\"k\":1}","socket_id":"1.2"}"#
        );
        let string = WebhookEvent::client_event(
            "presence-a",
            "client-x",
            r#""hi""#,
            "1.2",
            Some("u".to_owned()),
        );
        let value = serde_json::to_value(&string).unwrap();
        assert_eq!(value["data"], "hi");
        assert_eq!(value["user_id"], "u");

        let count = WebhookEvent::SubscriptionCount {
            channel: "a".to_owned(),
            subscription_count: 3,
        };
        assert_eq!(
            serde_json::to_value(&count).unwrap()["subscription_count"],
            3
        );
    }

    #[test]
    fn endpoint_filters_match_kind_and_prefix() {
        let endpoint = Endpoint {
            id: "e".to_owned(),
            app_id: "1".to_owned(),
            url: "http://127.0.0.1/".to_owned(),
            events: vec!["channel_occupied".to_owned()],
            channel_prefix: Some("private-".to_owned()),
            headers: Vec::new(),
            created_at: 0,
        };
        let occupied = |channel: &str| WebhookEvent::ChannelOccupied {
            channel: channel.to_owned(),
        };
        assert!(endpoint.wants(&occupied("private-a")));
        assert!(!endpoint.wants(&occupied("public-a")));
        let vacated = WebhookEvent::ChannelVacated {
            channel: "private-a".to_owned(),
        };
        assert!(!endpoint.wants(&vacated));
    }

    #[test]
    fn settings_and_the_default_endpoint_from_the_environment() {
        let settings = Settings::load(
            None,
            env(&[
                ("COMNESTOR_APP_ID", "1"),
                ("COMNESTOR_APP_KEY", "k"),
                ("COMNESTOR_APP_SECRET", "s"),
                ("COMNESTOR_APP_WEBHOOK_URL", "http://127.0.0.1:9/hooks"),
                (
                    "COMNESTOR_APP_WEBHOOK_EVENTS",
                    "channel_occupied, client_event",
                ),
                ("COMNESTOR_WEBHOOK_BATCH_MS", "5"),
                ("COMNESTOR_WEBHOOK_REMOVAL_DELAY_MS", "0"),
                ("COMNESTOR_WEBHOOK_MAX_ATTEMPTS", "2"),
            ]),
        )
        .unwrap();
        let app = settings.default_app.unwrap();
        assert_eq!(app.webhook_url.as_deref(), Some("http://127.0.0.1:9/hooks"));
        assert_eq!(app.webhook_events, ["channel_occupied", "client_event"]);
        assert_eq!(settings.webhooks.timing.window, Duration::from_millis(5));
        assert!(settings.webhooks.timing.removal_delay.is_zero());
        assert_eq!(settings.webhooks.sender.retry.max_attempts, 2);

        let error = Settings::load(
            None,
            env(&[
                ("COMNESTOR_APP_ID", "1"),
                ("COMNESTOR_APP_KEY", "k"),
                ("COMNESTOR_APP_SECRET", "s"),
                ("COMNESTOR_APP_WEBHOOK_URL", "ftp://x"),
                ("COMNESTOR_APP_WEBHOOK_EVENTS", "channel_opened"),
                ("COMNESTOR_WEBHOOK_MAX_ATTEMPTS", "0"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("COMNESTOR_APP_WEBHOOK_URL"), "{error}");
        assert!(error.contains("channel_opened"), "{error}");
        assert!(error.contains("COMNESTOR_WEBHOOK_MAX_ATTEMPTS"), "{error}");
    }
}
