//! A local webhook receiver that records every request and answers as told.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use comnestor_server::testing::{APP_KEY, APP_SECRET};
use hmac::{Hmac, KeyInit, Mac};
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Request, Route, Server, handler, post};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::{Mutex, Notify, mpsc};

/// How long a test waits for one webhook.
pub const WAIT: Duration = Duration::from_secs(10);

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Hook {
    pub content_type: Option<String>,
    pub key: Option<String>,
    pub signature: Option<String>,
    pub headers: poem::http::HeaderMap,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub status: u16,
    /// The credentials the receiver checks against.
    app: (String, String),
}

impl Hook {
    /// Checks the request as pusher-http-node's `WebHook#isValid` does, and the body's shape;
    /// returns the body.
    pub fn validate(&self) -> Value {
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/json"),
            "Content-Type must be exactly application/json"
        );
        let (key, secret) = &self.app;
        assert_eq!(self.key.as_deref(), Some(key.as_str()), "X-Pusher-Key");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.body);
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            self.signature.as_deref(),
            Some(expected.as_str()),
            "X-Pusher-Signature over the raw body"
        );
        let body: Value = serde_json::from_slice(&self.body).expect("the body is JSON");
        assert!(
            body["time_ms"].as_u64().is_some(),
            "time_ms is a number: {body}"
        );
        let events = body["events"].as_array().expect("events is an array");
        assert!(!events.is_empty(), "a webhook carries at least one event");
        body
    }

    pub fn events(&self) -> Vec<Value> {
        self.validate()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

struct State {
    hooks: mpsc::UnboundedSender<Hook>,
    /// Requests still to answer with 500.
    failures: AtomicUsize,
    /// Whether requests wait for `release` before answering.
    hang: AtomicBool,
    release: Notify,
    released: AtomicBool,
    app: (String, String),
}

/// A receiver on `127.0.0.1:0`.
pub struct Receiver {
    pub url: String,
    hooks: Mutex<mpsc::UnboundedReceiver<Hook>>,
    state: Arc<State>,
}

#[handler]
async fn receive(req: &Request, body: Vec<u8>, state: Data<&Arc<State>>) -> StatusCode {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if state.hang.load(Ordering::Acquire) {
        let released = state.release.notified();
        if !state.released.load(Ordering::Acquire) {
            // Recorded on arrival, so the test sees that the request is being held.
            let _ = state.hooks.send(Hook {
                content_type: header("content-type"),
                key: header("x-pusher-key"),
                signature: header("x-pusher-signature"),
                headers: req.headers().clone(),
                body: body.clone(),
                status: 0,
                app: state.app.clone(),
            });
            released.await;
        }
    }
    let failing = state
        .failures
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok();
    let status = if failing { 500 } else { 200 };
    let _ = state.hooks.send(Hook {
        content_type: header("content-type"),
        key: header("x-pusher-key"),
        signature: header("x-pusher-signature"),
        headers: req.headers().clone(),
        body,
        status,
        app: state.app.clone(),
    });
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    /// A receiver that answers 200.
    pub async fn start() -> Self {
        Self::failing(0).await
    }

    /// A receiver whose first `failures` requests get 500.
    pub async fn failing(failures: usize) -> Self {
        Self::for_app(APP_KEY, APP_SECRET, failures).await
    }

    /// A receiver checking webhooks of the app `key`/`secret`; its first `failures`
    /// requests get 500.
    pub async fn for_app(key: &str, secret: &str, failures: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            hooks: tx,
            failures: AtomicUsize::new(failures),
            hang: AtomicBool::new(false),
            release: Notify::new(),
            released: AtomicBool::new(false),
            app: (key.to_owned(), secret.to_owned()),
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
        let app = Route::new()
            .at("/webhooks", post(receive))
            .data(state.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self {
            url: format!("http://{addr}/webhooks"),
            hooks: Mutex::new(rx),
            state,
        }
    }

    /// A receiver that holds every request open until [`Receiver::release`].
    pub async fn hanging() -> Self {
        let receiver = Self::start().await;
        receiver.state.hang.store(true, Ordering::Release);
        receiver
    }

    /// Answers the held requests, and every later one at once.
    pub fn release(&self) {
        self.state.released.store(true, Ordering::Release);
        self.state.release.notify_waiters();
    }

    /// The next request.
    pub async fn next(&self) -> Hook {
        let mut hooks = self.hooks.lock().await;
        tokio::time::timeout(WAIT, hooks.recv())
            .await
            .expect("a webhook arrived in time")
            .expect("the receiver runs")
    }

    /// Events of answered requests until one matches `last`; every request is validated.
    pub async fn events_until(&self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let hook = self.next().await;
            let events = hook.events();
            if hook.status != 200 {
                continue;
            }
            let done = events.iter().any(&last);
            seen.extend(events);
            if done {
                return seen;
            }
        }
    }
}

/// An event as it must appear in a body.
pub fn event(name: &str, channel: &str) -> Value {
    serde_json::json!({"name": name, "channel": channel})
}

/// Whether `value` is the `name` event on `channel`.
pub fn is(name: &str, channel: &str) -> impl Fn(&Value) -> bool {
    let (name, channel) = (name.to_owned(), channel.to_owned());
    move |v| v["name"] == name.as_str() && v["channel"] == channel.as_str()
}
