//! Sending batches: a queue of webhook jobs on apalis, next to the intake's delivery jobs,
//! and the worker that signs and POSTs each batch and records the attempt.
//!
//! The queue is an instance of [`crate::queue::JobQueue`]: the same backends and wake-on-push
//! as the delivery queue, with its own job type so webhooks and event deliveries never wait
//! behind each other. The retry policy and the attempt record are the intake's
//! ([`RetryPolicy`], [`AttemptOutcome`]).
//!
//! Isolation: each request has a timeout, and each endpoint may have only
//! [`SenderSettings::per_endpoint`] requests in flight. A job for an endpoint at that limit is
//! put back for a moment instead of holding a worker slot, so a slow endpoint can occupy at
//! most that many of the worker's slots and never delays other endpoints or other apps.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use comnestor_protocol::auth::webhook_signature;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};

use super::endpoints::{Batch, BatchStatus, Endpoint, WebhookStore};
use crate::apps::{AppRegistry, now_millis};
use crate::delivery::RetryPolicy;
use crate::eventlog::AttemptOutcome;
use crate::queue::{JobHandler, JobQueue, POLL_INTERVAL, QueueError, QueueJob, QueueSettings};

/// How long a job for a busy endpoint waits before it is tried again, per job already
/// waiting for that endpoint: a hanging endpoint with many batches costs a bounded number
/// of queue writes, not one per batch every few milliseconds.
const BUSY_DELAY: Duration = Duration::from_millis(200);

/// The longest a busy endpoint's job waits before it is tried again.
const MAX_BUSY_DELAY: Duration = Duration::from_secs(10);

/// A webhook job: send the stored batch with this id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookJob {
    pub batch_id: String,
    /// Put back because its endpoint was busy, rather than queued or retried.
    #[serde(default)]
    pub parked: bool,
}

impl QueueJob for WebhookJob {
    const QUEUE: QueueSettings = QueueSettings {
        job: "webhook",
        queue: "webhook queue",
        redis_queue: "webhooks",
        worker: "webhooks",
        sql_heartbeat: None,
        recheck_wakes: false,
    };
}

/// Where webhook jobs wait.
pub type WebhookQueue = JobQueue<WebhookJob>;

/// Failure to queue a webhook job.
pub type WebhookQueueError = QueueError;

impl JobQueue<WebhookJob> {
    /// Queues a batch, to be sent after `delay` when one is given.
    pub async fn push(
        &self,
        batch_id: &str,
        delay: Option<Duration>,
    ) -> Result<(), WebhookQueueError> {
        self.push_job(batch_id, delay, false).await
    }

    /// Puts back a job whose endpoint was busy.
    async fn push_parked(&self, batch_id: &str, delay: Duration) -> Result<(), WebhookQueueError> {
        self.push_job(batch_id, Some(delay), true).await
    }

    async fn push_job(
        &self,
        batch_id: &str,
        delay: Option<Duration>,
        parked: bool,
    ) -> Result<(), WebhookQueueError> {
        let job = WebhookJob {
            batch_id: batch_id.to_owned(),
            parked,
        };
        self.enqueue(job, delay).await
    }

    /// Runs the worker with `concurrency` parallel requests until `stop` turns true.
    pub async fn run_worker(
        &self,
        sender: Arc<Sender>,
        concurrency: usize,
        stop: watch::Receiver<bool>,
    ) {
        self.work(sender, concurrency, POLL_INTERVAL, stop).await;
    }
}

/// The job handler. Failures are recorded and retried by the sender, so the job completes.
impl JobHandler<WebhookJob> for Sender {
    async fn handle(&self, job: WebhookJob) {
        self.send_job(&job.batch_id, job.parked).await;
    }
}

/// How batches are sent.
#[derive(Debug, Clone, Copy)]
pub struct SenderSettings {
    pub retry: RetryPolicy,
    /// Longest wait for one endpoint's answer.
    pub timeout: Duration,
    /// Requests one endpoint may have in flight.
    pub per_endpoint: usize,
}

/// Signs, sends and records batches.
pub struct Sender {
    store: WebhookStore,
    apps: AppRegistry,
    queue: WebhookQueue,
    http: reqwest::Client,
    settings: SenderSettings,
    in_flight: DashMap<String, Arc<EndpointLoad>>,
}

/// What one endpoint has in flight, and how many of its jobs were put back.
struct EndpointLoad {
    permits: Arc<Semaphore>,
    parked: AtomicUsize,
}

/// Why an attempt failed: the status, if the endpoint answered, and what went wrong.
type Failure = (Option<u16>, String);

impl Sender {
    pub fn new(
        store: WebhookStore,
        apps: AppRegistry,
        queue: WebhookQueue,
        settings: SenderSettings,
    ) -> Arc<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A redirect is a failure to retry, not a POST turned into a GET elsewhere.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(8)
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .build()
            .expect("a reqwest client with the ring TLS provider builds");
        Arc::new(Self {
            store,
            apps,
            queue,
            http,
            settings,
            in_flight: DashMap::new(),
        })
    }

    /// Sends one batch: one attempt, recorded, with a retry scheduled on failure. A batch
    /// already delivered or dead is left alone, so a duplicate job is harmless.
    pub async fn send(&self, batch_id: &str) {
        self.send_job(batch_id, false).await;
    }

    async fn send_job(&self, batch_id: &str, parked: bool) {
        let batch = match self.store.batch(batch_id).await {
            Ok(Some(batch)) => batch,
            Ok(None) => return tracing::warn!(batch_id, "webhook job for an unknown batch"),
            Err(error) => return self.retry_later(batch_id, 1, &error.to_string()).await,
        };
        if parked {
            let waiting = &self.load(&batch.endpoint_id).parked;
            let _ = waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
        let settled = [
            BatchStatus::Delivered,
            BatchStatus::Dead,
            BatchStatus::Resend,
        ];
        if settled.contains(&batch.status) {
            return;
        }
        let endpoint = match self.store.endpoint(&batch.endpoint_id).await {
            Ok(Some(endpoint)) => endpoint,
            Ok(None) => {
                return self
                    .give_up(&batch, "the webhook endpoint was removed")
                    .await;
            }
            Err(error) => return self.retry_later(batch_id, 1, &error.to_string()).await,
        };
        let Some(app) = self.apps.by_id(&batch.app_id) else {
            return self.give_up(&batch, "the app no longer exists").await;
        };
        let load = self.load(&endpoint.id);
        let Ok(_permit) = load.permits.clone().try_acquire_owned() else {
            let waiting = load.parked.fetch_add(1, Ordering::AcqRel) + 1;
            return self.requeue_busy(batch_id, waiting).await;
        };
        let attempt = match self.store.mark_sending(&batch).await {
            Ok(attempt) => attempt,
            Err(error) => {
                let next = batch.attempts as u32 + 1;
                return self.retry_later(batch_id, next, &error.to_string()).await;
            }
        };
        let started_at = now_millis();
        let clock = Instant::now();
        let result = self.post(&endpoint, &app.key, &app.secret, &batch).await;
        let (status_code, error) = match result {
            Ok(status) => (Some(i32::from(status)), None),
            Err((status, error)) => (status.map(i32::from), Some(error)),
        };
        let outcome = AttemptOutcome {
            attempt,
            started_at,
            duration_ms: clock.elapsed().as_millis() as i64,
            status_code,
            error,
        };
        self.finish(&batch, outcome).await;
    }

    fn load(&self, endpoint_id: &str) -> Arc<EndpointLoad> {
        let limit = self.settings.per_endpoint.max(1);
        self.in_flight
            .entry(endpoint_id.to_owned())
            .or_insert_with(|| {
                Arc::new(EndpointLoad {
                    permits: Arc::new(Semaphore::new(limit)),
                    parked: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    async fn finish(&self, batch: &Batch, outcome: AttemptOutcome) {
        let attempt = outcome.attempt as u32;
        let status = match (&outcome.error, attempt >= self.settings.retry.max_attempts) {
            (None, _) => BatchStatus::Delivered,
            (Some(_), true) => BatchStatus::Dead,
            (Some(_), false) => BatchStatus::Retrying,
        };
        if let Some(error) = &outcome.error {
            tracing::warn!(batch_id = %batch.id, app_id = %batch.app_id, attempt, error = %error, status = status.as_str(), "webhook attempt failed");
        }
        if let Err(error) = self.store.record_attempt(&batch.id, outcome, status).await {
            tracing::error!(batch_id = %batch.id, %error, "cannot record webhook attempt");
        }
        if status == BatchStatus::Retrying {
            self.schedule(&batch.id, attempt).await;
        }
    }

    async fn give_up(&self, batch: &Batch, reason: &str) {
        tracing::warn!(batch_id = %batch.id, app_id = %batch.app_id, reason, "webhook batch dropped");
        if let Err(error) = self.store.mark_dead(&batch.id, reason).await {
            tracing::error!(batch_id = %batch.id, %error, "cannot mark webhook batch dead");
        }
    }

    async fn retry_later(&self, batch_id: &str, attempt: u32, error: &str) {
        tracing::warn!(batch_id, error, "webhook store unavailable; retrying later");
        self.schedule(batch_id, attempt).await;
    }

    async fn requeue_busy(&self, batch_id: &str, waiting: usize) {
        tracing::debug!(batch_id, waiting, "webhook endpoint busy; job put back");
        let delay = BUSY_DELAY
            .saturating_mul(waiting.min(u32::MAX as usize) as u32)
            .min(MAX_BUSY_DELAY);
        if let Err(error) = self.queue.push_parked(batch_id, delay).await {
            tracing::error!(batch_id, %error, "cannot put back a webhook job");
        }
    }

    async fn schedule(&self, batch_id: &str, attempt: u32) {
        let delay = self.settings.retry.delay_after(attempt);
        if let Err(error) = self.queue.push(batch_id, Some(delay)).await {
            tracing::error!(batch_id, %error, "cannot schedule webhook retry");
        }
    }

    /// POSTs the signed body. Returns the status on a 2xx answer.
    async fn post(
        &self,
        endpoint: &Endpoint,
        key: &str,
        secret: &str,
        batch: &Batch,
    ) -> Result<u16, Failure> {
        let body = batch.body();
        let signature = webhook_signature(secret, body.as_bytes());
        let mut request = self.http.post(&endpoint.url);
        for (name, value) in &endpoint.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request
            .header("X-Pusher-Key", key)
            .header("X-Pusher-Signature", signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| (None, format!("request failed: {}", error_chain(&e))))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(status);
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        Err((Some(status), format!("endpoint answered {status}: {text}")))
    }
}

/// An error with its sources, since reqwest's own message leaves out why a connect failed.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
