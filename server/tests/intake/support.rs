//! A server on `127.0.0.1:0` with one freshly made app, an HTTP client for `/api`, and a
//! WebSocket subscriber, for the intake tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use comnestor_protocol::signing::sign_request;
use comnestor_server::apps::{App, AppSettings, AppStore, NewApp};
use comnestor_server::config::{QueueKind, Settings};
use comnestor_server::intake::Intake;
use comnestor_server::server::{self, RunningServer};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Where a test server keeps its log and queue.
pub struct Options {
    pub database_url: String,
    pub redis_url: Option<String>,
    /// Put before every Redis key and channel; unique per server unless a test shares it.
    pub redis_prefix: String,
    pub queue: QueueKind,
    pub delivery_workers: usize,
    pub max_attempts: u32,
    pub backoff: Duration,
    pub queue_poll: Duration,
    pub app: AppSettings,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            database_url: "sqlite::memory:".to_owned(),
            redis_url: None,
            redis_prefix: format!("intake-test-{}:", unique_id()),
            queue: QueueKind::Database,
            delivery_workers: 4,
            max_attempts: 5,
            backoff: Duration::from_millis(20),
            queue_poll: comnestor_server::queue::POLL_INTERVAL,
            app: AppSettings::default(),
        }
    }
}

/// A numeric id no other test, and no earlier run against the same database, has used.
pub fn unique_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "{}{:05}{n:03}",
        now % 10_000_000,
        std::process::id() % 100_000
    )
}

/// A running server with one app.
pub struct Server {
    pub addr: SocketAddr,
    pub app: App,
    pub http: reqwest::Client,
    running: RunningServer,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let db = server::connect_database(&options.database_url)
            .await
            .expect("database opens");
        let id = unique_id();
        let new = NewApp {
            id: Some(id.clone()),
            key: Some(format!("key-{id}")),
            secret: Some(format!("secret-{id}")),
            name: Some("intake test".to_owned()),
            enabled: true,
            settings: options.app,
        };
        let app = AppStore::new(db.clone())
            .create(new)
            .await
            .expect("test app");
        let settings = Settings {
            host: [127, 0, 0, 1].into(),
            port: 0,
            database_url: options.database_url,
            redis_url: options.redis_url,
            redis_prefix: options.redis_prefix,
            queue: options.queue,
            delivery_workers: options.delivery_workers,
            delivery_max_attempts: options.max_attempts,
            delivery_backoff: options.backoff,
            queue_poll: options.queue_poll,
            app_refresh: Duration::from_millis(50),
            shutdown_grace: Duration::from_secs(2),
            ..Settings::default()
        };
        let running = server::start(&settings, db).await.expect("server starts");
        Self {
            addr: running.addr,
            app,
            http: http_client(),
            running,
        }
    }

    pub fn store(&self) -> &AppStore {
        self.running.ctx.apps.store()
    }

    pub fn intake(&self) -> &Intake {
        &self.running.ctx.intake
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /api/events` with HTTP Basic.
    pub async fn publish(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/events"))
            .basic_auth(&self.app.key, Some(&self.app.secret))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Publishes and expects 202; returns the event id.
    pub async fn publish_ok(&self, body: &Value) -> String {
        let response = self.publish(body).await;
        let (status, answer) = read(response).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        answer["id"].as_str().expect("event id").to_owned()
    }

    /// Publishes `n` events to `channel` at once, with data 0 to n − 1; their ids, in order.
    pub async fn publish_burst(&self, channel: &str, event: &str, n: usize) -> Vec<String> {
        let publishes = (0..n).map(|data| {
            let body = serde_json::json!({"channel": channel, "event": event, "data": data});
            async move { self.publish_ok(&body).await }
        });
        futures_util::future::join_all(publishes).await
    }

    /// A request signed the way the Pusher server SDKs sign, with this app's credentials.
    pub fn signed(&self, method: &str, path: &str, body: Option<&[u8]>) -> reqwest::RequestBuilder {
        let query = sign_request(
            &self.app.key,
            &self.app.secret,
            method,
            path,
            &[],
            body,
            now_secs(),
        );
        let url = format!("{}?{query}", self.url(path));
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let request = self.http.request(method, url);
        match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(body.to_vec()),
            None => request,
        }
    }

    /// `GET path` with HTTP Basic.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .basic_auth(&self.app.key, Some(&self.app.secret))
            .send()
            .await
            .expect("request sent");
        read(response).await
    }

    /// `POST path` (no body) with HTTP Basic.
    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .basic_auth(&self.app.key, Some(&self.app.secret))
            .send()
            .await
            .expect("request sent");
        read(response).await
    }

    /// The event record, as `GET /api/events/{id}` answers.
    pub async fn event(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/api/events/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Waits until the event has `status`; fails the test with the record otherwise.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let event = self.event(id).await;
            if event["status"] == status {
                return event;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "event {id} never became {status}: {event:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn subscribe(&self, channel: &str) -> Subscriber {
        Subscriber::connect(self.addr, &self.app.key, channel).await
    }

    pub async fn shutdown(self) {
        self.running.shutdown().await.expect("clean shutdown");
    }
}

/// An HTTP client; installs the TLS provider `main` would have installed.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The status and JSON body of a response (`null` when the body is not JSON).
pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("response body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts a problem+json error with `status` whose detail contains `needle`.
pub async fn assert_problem(response: reqwest::Response, status: u16, needle: &str) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (got, body) = read(response).await;
    assert_eq!(got.as_u16(), status, "{body}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "content type {content_type} for {body}"
    );
    assert_eq!(body["status"], status, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(needle),
        "detail {detail:?} lacks {needle:?}"
    );
    body
}

/// A pusher-js-like WebSocket connection subscribed to one channel.
pub struct Subscriber {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: String,
}

impl Subscriber {
    pub async fn connect(addr: SocketAddr, key: &str, channel: &str) -> Self {
        let url = format!("ws://{addr}/app/{key}?protocol=7&client=js&version=8.4.0&flash=false");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        let mut subscriber = Self {
            ws,
            socket_id: String::new(),
        };
        let established = subscriber.next("pusher:connection_established").await;
        let data: Value = serde_json::from_str(established["data"].as_str().unwrap_or("{}"))
            .expect("connection data");
        subscriber.socket_id = data["socket_id"].as_str().expect("socket id").to_owned();
        let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": channel}});
        subscriber
            .ws
            .send(Message::text(subscribe.to_string()))
            .await
            .expect("subscribe sent");
        subscriber
            .next("pusher_internal:subscription_succeeded")
            .await;
        subscriber
    }

    /// The next message named `event`, skipping others.
    pub async fn next(&mut self, event: &str) -> Value {
        self.next_of(&[event]).await
    }

    /// The next message named any of `events`, skipping others.
    pub async fn next_of(&mut self, events: &[&str]) -> Value {
        let wait = async {
            loop {
                let message = self
                    .ws
                    .next()
                    .await
                    .expect("connection open")
                    .expect("frame");
                let Message::Text(text) = message else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).expect("JSON message");
                if events.iter().any(|e| value["event"] == *e) {
                    return value;
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("no {events:?} within {PATIENCE:?}"))
    }
}

/// Reads the environment variable a service test needs, failing with how to provide it.
pub fn service_url(variable: &str, service: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!(
            "{variable} is not set, so the {service} test cannot run. Start the services with \
             `bash -c 'source .ci/services.sh; start_redis; start_postgres; start_mysql; env | grep COMNESTOR_TEST'` \
             from the repository root and export the variables it prints (or run .ci/test)."
        )
    })
}

/// Serializes the tests that share one Postgres database, so one server's worker never takes
/// another's delivery job. (Redis needs no lock: each server has its own key prefix.)
pub static SHARED_SERVICES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Unix milliseconds, as the event log records them.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
