//! The suite's own webhook receiver (§4): it records every POST and checks its headers and
//! signature exactly as pusher-http-node and pusher-http-php verify them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use poem::listener::{Acceptor, TcpAcceptor};
use poem::{Body, EndpointExt, Request, Response, Route, handler, post};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

/// One webhook request as received.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub body: String,
    /// The events of the body, empty if it did not parse.
    pub events: Vec<Value>,
    /// Everything wrong with the request; empty for a valid webhook.
    pub problems: Vec<String>,
}

#[derive(Default)]
struct Inbox {
    received: Mutex<Vec<Webhook>>,
    arrived: Notify,
}

/// A running receiver. It stops when dropped.
pub struct Receiver {
    /// The URL to configure in the server under test.
    pub url: String,
    inbox: Arc<Inbox>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Listens on `listen` and checks webhooks against `key` and `secret`.
    pub async fn start(listen: SocketAddr, key: &str, secret: &str) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("the webhook receiver cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let acceptor = TcpAcceptor::from_tokio(listener)?;
        debug_assert!(!acceptor.local_addr().is_empty());
        let inbox = Arc::new(Inbox::default());
        let state = Arc::new((key.to_owned(), secret.to_owned(), inbox.clone()));
        let app = Route::new().at("/*path", post(receive)).data(state);
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        Ok(Self {
            url: format!("http://{addr}/webhooks"),
            inbox,
            task,
        })
    }

    /// Waits up to `wait` for a webhook event matching `matches`, and returns it with its
    /// request. Events already received count.
    pub async fn wait_for(
        &self,
        what: &str,
        wait: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<(Value, Webhook)> {
        let deadline = Instant::now() + wait;
        loop {
            let arrived = self.inbox.arrived.notified();
            if let Some(found) = self.find(&matches) {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                bail!("no {what} webhook within {wait:?}");
            }
        }
    }

    fn find(&self, matches: &impl Fn(&Value) -> bool) -> Option<(Value, Webhook)> {
        let received = self.inbox.received.lock().expect("webhook inbox lock");
        received.iter().find_map(|webhook| {
            let event = webhook.events.iter().find(|e| matches(e))?;
            Some((event.clone(), webhook.clone()))
        })
    }

    /// Every webhook received so far.
    pub fn received(&self) -> Vec<Webhook> {
        self.inbox
            .received
            .lock()
            .expect("webhook inbox lock")
            .clone()
    }
}

type State = Arc<(String, String, Arc<Inbox>)>;

#[handler]
async fn receive(request: &Request, body: Body, state: poem::web::Data<&State>) -> Response {
    let (key, secret, inbox) = state.0.as_ref();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let body = body.into_bytes().await.unwrap_or_default();
    let webhook = check(
        key,
        secret,
        header("x-pusher-key"),
        header("x-pusher-signature"),
        header("content-type"),
        &body,
    );
    inbox
        .received
        .lock()
        .expect("webhook inbox lock")
        .push(webhook);
    inbox.arrived.notify_waiters();
    Response::builder()
        .status(poem::http::StatusCode::OK)
        .finish()
}

/// Checks one webhook request (§4).
fn check(
    key: &str,
    secret: &str,
    got_key: Option<String>,
    signature: Option<String>,
    content_type: Option<String>,
    body: &[u8],
) -> Webhook {
    let mut problems = Vec::new();
    if got_key.as_deref() != Some(key) {
        problems.push(format!("X-Pusher-Key is {got_key:?}, expected {key:?}"));
    }
    let expected = comnestor_protocol::auth::webhook_signature(secret, body);
    if signature.as_deref() != Some(expected.as_str()) {
        problems.push(format!(
            "X-Pusher-Signature is {signature:?}, expected HMAC-SHA256 of the body {expected:?}"
        ));
    }
    if content_type.as_deref() != Some("application/json") {
        problems.push(format!(
            "Content-Type is {content_type:?}, expected exactly \"application/json\""
        ));
    }
    let text = String::from_utf8_lossy(body).into_owned();
    let mut events = Vec::new();
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            if !value.get("time_ms").is_some_and(Value::is_u64) {
                problems.push("the body has no integer time_ms".into());
            }
            match value.get("events").and_then(Value::as_array) {
                Some(list) => events.clone_from(list),
                None => problems.push("the body has no events array".into()),
            }
        }
        Err(error) => problems.push(format!("the body is not JSON: {error}")),
    }
    Webhook {
        body: text,
        events,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receiver_validates_a_signed_webhook() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let receiver = Receiver::start(([127, 0, 0, 1], 0).into(), "123456789", "tofu")
            .await
            .unwrap();
        // §7 V10.
        let body = r#"{"time_ms":1403175510755,"events":[{"channel":"test_channel","name":"channel_vacated"}]}"#;
        let client = reqwest::Client::new();
        for content_type in ["application/json", "application/json; charset=utf-8"] {
            client
                .post(&receiver.url)
                .header("X-Pusher-Key", "123456789")
                .header(
                    "X-Pusher-Signature",
                    "c17257e92037cd7de407ebc1ed174ceb7b2e518db127f44411b9ffc4f5b28cc5",
                )
                .header("Content-Type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
        }
        let (event, webhook) = receiver
            .wait_for("channel_vacated", Duration::from_secs(2), |e| {
                e["name"] == "channel_vacated"
            })
            .await
            .unwrap();
        assert_eq!(event["channel"], "test_channel");
        assert!(webhook.problems.is_empty(), "{:?}", webhook.problems);
        let received = receiver.received();
        assert_eq!(received.len(), 2);
        assert_eq!(received[1].problems.len(), 1, "{:?}", received[1].problems);
    }
}
