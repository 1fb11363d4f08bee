//! Stage 5, delivery: sign the event exactly as the Pusher server SDKs do and POST it to a
//! Pusher-compatible `/apps/{id}/events` — this server's own by default, or an external one
//! (Reverb, soketi, Pusher) configured per app.
//!
//! Failed attempts are recorded and retried with exponential backoff and jitter; after the
//! configured number of attempts the event is marked dead.
//!
//! A job queued by the intake carries the event, so its first attempt reads nothing from the
//! log; retries, and jobs the sweeper queues again, carry only the id and read the event, and
//! whether it still needs delivering, from the log. Attempts are recorded in groups
//! ([`crate::batch`]), one transaction for all that finished while the previous group was
//! written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use comnestor_protocol::api::TriggerRequest;
use comnestor_protocol::signing::sign_request;
use rand::Rng;

use crate::apps::{App, AppRegistry, now_millis};
use crate::batch::Batcher;
use crate::eventlog::{AttemptOutcome, AttemptRecordNew, EventLog, EventStatus, LoggedEvent};
use crate::queue::{Delivery, FreshEvent, Queue};

/// Most attempts recorded in one transaction.
const RECORD_BATCH: usize = 64;

/// How long attempt records gather before they are written. A delivered or dead event's record
/// is awaited by nobody, a failed one's only by its retry, which is minutes away at worst; and
/// on SQLite each write is a turn on the connection the intake waits for. The times recorded
/// are the attempt's own, so the log shows the event `delivered` up to this much later but with
/// the right times.
const RECORD_LINGER: Duration = Duration::from_millis(20);

/// An event on its way out, as its job or the log gives it.
#[derive(Debug, Clone)]
struct Outgoing {
    id: String,
    app_id: String,
    channels: Vec<String>,
    name: String,
    data: String,
    socket_id: Option<String>,
    /// Attempts already made.
    attempts: i32,
}

impl Outgoing {
    fn fresh(id: String, event: FreshEvent) -> Self {
        Self {
            id,
            app_id: event.app_id,
            channels: event.channels,
            name: event.name,
            data: event.data,
            socket_id: event.socket_id,
            attempts: 0,
        }
    }

    fn logged(event: LoggedEvent) -> Self {
        Self {
            id: event.id,
            app_id: event.app_id,
            channels: event.channels,
            name: event.event,
            data: event.data,
            socket_id: event.socket_id,
            attempts: event.attempts,
        }
    }
}

/// How deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before an event is marked dead.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles with each further one.
    pub base_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The delay after attempt `attempt` failed: exponential, capped, with ±50% jitter.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let delay = self
            .base_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        delay.mul_f64(rand::rng().random_range(0.5..1.5))
    }
}

/// A Pusher-compatible server to deliver to, with the credentials it knows the app by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Scheme, host and port, such as `http://127.0.0.1:6001`.
    pub base_url: String,
    pub app_id: String,
    pub key: String,
    pub secret: String,
}

impl Target {
    /// The app's configured external target, or this server with the app's own credentials.
    pub fn for_app(app: &App, own_base_url: &str) -> Self {
        let settings = &app.settings;
        Self {
            base_url: settings
                .delivery_url
                .clone()
                .unwrap_or_else(|| own_base_url.to_owned()),
            app_id: settings
                .delivery_app_id
                .clone()
                .unwrap_or_else(|| app.id.clone()),
            key: settings
                .delivery_key
                .clone()
                .unwrap_or_else(|| app.key.clone()),
            secret: settings
                .delivery_secret
                .clone()
                .unwrap_or_else(|| app.secret.clone()),
        }
    }
}

/// Runs delivery attempts.
pub struct Deliverer {
    log: EventLog,
    recorder: Batcher<AttemptRecordNew, Result<(), String>>,
    apps: AppRegistry,
    queue: Queue,
    http: reqwest::Client,
    own_base_url: String,
    retry: RetryPolicy,
}

impl Deliverer {
    pub fn new(
        log: EventLog,
        apps: AppRegistry,
        queue: Queue,
        own_base_url: String,
        retry: RetryPolicy,
    ) -> Arc<Self> {
        // reqwest is built without a TLS provider; `main` installs ring, and embedders
        // (tests) may not have, so make sure one is there. A second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Keep-alive connections are pooled per target host.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(32)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(30))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a reqwest client with the ring TLS provider builds");
        let recorder = {
            let log = log.clone();
            Batcher::spawn_lingering(
                RECORD_BATCH,
                RECORD_LINGER,
                move |records: Vec<AttemptRecordNew>| {
                    let log = log.clone();
                    async move {
                        let result = log.record_attempts(&records).await;
                        let result = result.map_err(|e| e.to_string());
                        if let Err(error) = &result {
                            let ids: Vec<&str> =
                                records.iter().map(|r| r.event_id.as_str()).collect();
                            tracing::error!(event_ids = ?ids, %error, "cannot record delivery attempts");
                        }
                        vec![result; records.len()]
                    }
                },
            )
        };
        Arc::new(Self {
            log,
            recorder,
            apps,
            queue,
            http,
            own_base_url,
            retry,
        })
    }

    /// Runs one delivery job: the event it carries, or the logged event it names.
    pub async fn deliver_job(&self, job: Delivery) {
        match job.event {
            Some(event) => self.attempt(Outgoing::fresh(job.event_id, event)).await,
            None => self.deliver(&job.event_id).await,
        }
    }

    /// Delivers one logged event, recording the attempt and scheduling a retry on failure.
    /// An event already delivered or dead is left alone, so a duplicate job is harmless.
    pub async fn deliver(&self, event_id: &str) {
        let event = match self.log.find(event_id).await {
            Ok(Some(event)) => event,
            Ok(None) => return tracing::warn!(event_id, "delivery job for an unknown event"),
            Err(error) => return self.retry_later(event_id, 1, &error.to_string()).await,
        };
        if matches!(event.status, EventStatus::Delivered | EventStatus::Dead) {
            return;
        }
        self.attempt(Outgoing::logged(event)).await;
    }

    async fn attempt(&self, event: Outgoing) {
        let attempt = event.attempts + 1;
        let started_at = now_millis();
        let clock = Instant::now();
        let result = match self.apps.by_id(&event.app_id) {
            Some(app) => {
                self.send(&Target::for_app(&app, &self.own_base_url), &event)
                    .await
            }
            None => Err((None, format!("app {} no longer exists", event.app_id))),
        };
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
        self.finish(&event.id, outcome).await;
    }

    async fn finish(&self, event_id: &str, outcome: AttemptOutcome) {
        let attempt = outcome.attempt as u32;
        let status = match (&outcome.error, attempt >= self.retry.max_attempts) {
            (None, _) => EventStatus::Delivered,
            (Some(_), true) => EventStatus::Dead,
            (Some(_), false) => EventStatus::Retrying,
        };
        if let Some(error) = &outcome.error {
            tracing::warn!(event_id, attempt, error = %error, status = status.as_str(), "delivery attempt failed");
        }
        let record = AttemptRecordNew {
            event_id: event_id.to_owned(),
            outcome,
            status,
        };
        if status != EventStatus::Retrying {
            // Delivered or dead: nothing follows the record, so the job need not wait for it
            // (the recorder logs a failure). Should the process die before the record is
            // written, the event stays `queued` and the sweeper delivers it again: at least
            // once.
            if !self.recorder.send(record).await {
                tracing::error!(event_id, "cannot record delivery attempt: recorder stopped");
            }
            return;
        }
        // The retry is scheduled only once the log says `retrying`, so that the two agree.
        if self.recorder.submit(record).await.is_none() {
            tracing::error!(event_id, "cannot record delivery attempt: recorder stopped");
        }
        self.schedule(event_id, attempt).await;
    }

    async fn retry_later(&self, event_id: &str, attempt: u32, error: &str) {
        tracing::warn!(
            event_id,
            error,
            "event log unavailable during delivery; retrying later"
        );
        self.schedule(event_id, attempt).await;
    }

    async fn schedule(&self, event_id: &str, attempt: u32) {
        let delay = self.retry.delay_after(attempt);
        if let Err(error) = self.queue.push(event_id, Some(delay)).await {
            // The event stays `retrying`; the sweeper queues it again.
            tracing::error!(event_id, %error, "cannot schedule delivery retry");
        }
    }

    /// POSTs the signed trigger. Returns the status on a 2xx answer.
    async fn send(&self, target: &Target, event: &Outgoing) -> Result<u16, (Option<u16>, String)> {
        let body = TriggerRequest {
            name: event.name.clone(),
            data: event.data.clone(),
            channels: Some(event.channels.clone()),
            channel: None,
            socket_id: event.socket_id.clone(),
            info: None,
        };
        let body = serde_json::to_vec(&body).map_err(|e| (None, e.to_string()))?;
        let path = format!("/apps/{}/events", target.app_id);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let query = sign_request(
            &target.key,
            &target.secret,
            "POST",
            &path,
            &[],
            Some(&body),
            now,
        );
        let url = format!("{}{path}?{query}", target.base_url.trim_end_matches('/'));
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| (None, format!("request failed: {e}")))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(status);
        }
        let text = response.text().await.unwrap_or_default();
        Err((
            Some(status),
            format!(
                "target answered {status}: {}",
                text.chars().take(300).collect::<String>()
            ),
        ))
    }
}
