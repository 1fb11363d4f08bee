//! Cluster nodes in one process, a small Pusher client and a signed HTTP API client.
//!
//! Every node of a test shares one Redis key prefix, unique to that test run, so tests run
//! concurrently against one Redis. Waits are bounded by [`WAIT`]; nothing sleeps to let
//! time pass. To show that a frame is *not* delivered, a test publishes a marker and checks
//! that the marker is the next frame.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comnestor_protocol::{auth, signing};
use comnestor_server::apps::AppSettings;
use comnestor_server::hub::Cluster;
use comnestor_server::testing::{APP_ID, APP_KEY, APP_SECRET, TestServer};
use deadpool_redis::redis;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any expected frame or condition may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// The lease of test nodes: short, so that a halted node is reaped quickly.
pub const NODE_TTL: Duration = Duration::from_millis(900);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The Redis the tests use; a missing variable fails the test rather than skipping it.
pub fn redis_url() -> String {
    std::env::var("COMNESTOR_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "COMNESTOR_TEST_REDIS_URL is not set. The cluster tests need a real Redis: run \
             `cd /work/main && source .ci/services.sh && start_redis` (it installs and starts \
             redis-server on 127.0.0.1:6379 and exports COMNESTOR_TEST_REDIS_URL), or set \
             COMNESTOR_TEST_REDIS_URL=redis://127.0.0.1:6379 for a Redis you run yourself"
        )
    })
}

/// A key prefix no other test run uses.
pub fn unique_prefix(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test:{test}:{}:{now}:{n}:", std::process::id())
}

/// The nodes of one test's cluster.
pub struct Nodes {
    pub nodes: Vec<TestServer>,
    prefix: String,
}

impl Nodes {
    /// Starts `count` nodes on one Redis prefix, each app configured by `configure`.
    pub async fn start(test: &str, count: usize, configure: fn(&mut AppSettings)) -> Self {
        let url = redis_url();
        let prefix = unique_prefix(test);
        let mut nodes = Vec::new();
        for _ in 0..count {
            let url = url.clone();
            let prefix = prefix.clone();
            let node = TestServer::start_configured(configure, move |settings| {
                settings.redis_url = Some(url);
                settings.cluster = true;
                settings.redis_prefix = prefix;
                settings.cluster_node_ttl = NODE_TTL;
                settings.delivery_workers = 0;
            })
            .await;
            nodes.push(node);
        }
        Self { nodes, prefix }
    }

    pub fn node(&self, i: usize) -> &TestServer {
        &self.nodes[i]
    }

    /// Shuts every node down gracefully, then deletes the test's keys from Redis.
    pub async fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
        let client = redis::Client::open(redis_url()).expect("a Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .expect("DEL");
        }
    }
}

/// The node's cluster handle.
pub fn cluster(node: &TestServer) -> &Cluster {
    node.context().hub.cluster().expect("a cluster node")
}

/// One frame from the server, with `data` decoded once when it was a JSON string.
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: String,
    pub channel: Option<String>,
    pub data: Value,
    pub text: String,
}

impl Frame {
    fn parse(text: &str) -> Self {
        let value: Value = serde_json::from_str(text).expect("server sends JSON");
        let data = match value.get("data") {
            Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
            Some(other) => other.clone(),
            None => Value::Null,
        };
        Self {
            event: value["event"].as_str().unwrap_or_default().to_owned(),
            channel: value["channel"].as_str().map(str::to_owned),
            data,
            text: text.to_owned(),
        }
    }
}

/// A connected Pusher client.
pub struct Client {
    ws: Ws,
    pub socket_id: String,
}

impl Client {
    pub async fn connect(node: &TestServer) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(node.ws_url())
            .await
            .expect("WebSocket connects");
        let mut client = Self {
            ws,
            socket_id: String::new(),
        };
        let hello = client.expect("pusher:connection_established").await;
        client.socket_id = hello.data["socket_id"].as_str().unwrap().to_owned();
        client
    }

    pub async fn send(&mut self, value: Value) {
        let text = value.to_string();
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next text frame, skipping pings; panics on a close or after [`WAIT`].
    pub async fn next(&mut self) -> Frame {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
                .expect("the connection is open")
                .expect("a readable frame");
            if let Message::Text(text) = message {
                return Frame::parse(&text);
            }
        }
    }

    /// The next frame, which must be `event`.
    pub async fn expect(&mut self, event: &str) -> Frame {
        let frame = self.next().await;
        assert_eq!(frame.event, event, "unexpected frame: {}", frame.text);
        frame
    }

    /// The close code the server ends the connection with (after any frames).
    pub async fn closed_with(&mut self) -> u16 {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("the close within the wait");
            match message {
                Some(Ok(Message::Close(frame))) => return frame.map_or(0, |f| f.code.into()),
                Some(Ok(_)) => continue,
                _ => return 0,
            }
        }
    }

    /// Subscribes to a public channel and waits for its `subscription_succeeded`.
    pub async fn subscribe(&mut self, channel: &str) -> Frame {
        self.send(json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": ""}}))
            .await;
        self.expect_succeeded(channel).await
    }

    /// Subscribes to a private channel with a valid signature.
    pub async fn subscribe_private(&mut self, channel: &str) -> Frame {
        let auth = auth::authorize_channel(APP_KEY, APP_SECRET, &self.socket_id, channel, None);
        self.send(json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}))
            .await;
        self.expect_succeeded(channel).await
    }

    /// Asks to join a presence channel as `user_id`; the reply is left to the caller.
    pub async fn request_presence(&mut self, channel: &str, user_id: &str) {
        let channel_data = json!({"user_id": user_id, "user_info": {"name": user_id}}).to_string();
        let auth = auth::authorize_channel(
            APP_KEY,
            APP_SECRET,
            &self.socket_id,
            channel,
            Some(&channel_data),
        );
        self.send(json!({"event": "pusher:subscribe", "data": {
            "channel": channel, "auth": auth, "channel_data": channel_data
        }}))
        .await;
    }

    /// Joins a presence channel and returns the `presence` part of its member list.
    pub async fn join_presence(&mut self, channel: &str, user_id: &str) -> Value {
        self.request_presence(channel, user_id).await;
        let succeeded = self.expect_succeeded(channel).await;
        succeeded.data["presence"].clone()
    }

    /// Waits for `subscription_succeeded`, skipping `subscription_count` events of channels
    /// subscribed before.
    async fn expect_succeeded(&mut self, channel: &str) -> Frame {
        let mut frame = self.next().await;
        while frame.event == "pusher_internal:subscription_count" {
            frame = self.next().await;
        }
        assert_eq!(
            frame.event, "pusher_internal:subscription_succeeded",
            "unexpected frame: {}",
            frame.text
        );
        assert_eq!(frame.channel.as_deref(), Some(channel), "{}", frame.text);
        frame
    }

    /// Signs in as `user_id`, watching `watchlist`, and waits for `signin_success`.
    pub async fn signin(&mut self, user_id: &str, watchlist: &[&str]) {
        let user_data = json!({"id": user_id, "watchlist": watchlist}).to_string();
        let auth = auth::authenticate_user(APP_KEY, APP_SECRET, &self.socket_id, &user_data);
        self.send(
            json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
        )
        .await;
        self.expect("pusher:signin_success").await;
    }

    /// Closes the connection from the client side and waits until the server answers.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.ws.next()).await {}
    }

    /// Frames up to and including the event `marker`, which must arrive within the wait.
    pub async fn until(&mut self, marker: &str) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            if frame.event == marker {
                return frames;
            }
            frames.push(frame);
        }
    }
}

/// The signed Pusher HTTP API of one node.
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn of(node: &TestServer) -> Self {
        Self {
            base: node.http_url(),
            http: reqwest::Client::new(),
        }
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let path = format!("/apps/{APP_ID}{path}");
        let body = body.map(|b| b.to_string());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let bytes = body.as_deref().map(str::as_bytes);
        let query = signing::sign_request(APP_KEY, APP_SECRET, method, &path, params, bytes, now);
        let url = format!("{}{path}?{query}", self.base);
        let request = match method {
            "POST" => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or_default()),
            _ => self.http.get(url),
        };
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let value = response.json().await.unwrap_or(Value::Null);
        (status, value)
    }

    /// Triggers `event` on `channel`, excluding `socket_id`; asserts success.
    pub async fn trigger(&self, channel: &str, event: &str, data: Value, socket_id: Option<&str>) {
        let mut body = json!({"name": event, "channels": [channel], "data": data.to_string()});
        if let Some(socket_id) = socket_id {
            body["socket_id"] = json!(socket_id);
        }
        let (status, answer) = self.request("POST", "/events", &[], Some(body)).await;
        assert_eq!(status, 200, "trigger failed: {answer}");
    }

    /// `GET /channels/{channel}` with `info`.
    pub async fn channel(&self, channel: &str, info: &str) -> Value {
        let (status, answer) = self
            .request(
                "GET",
                &format!("/channels/{channel}"),
                &[("info", info)],
                None,
            )
            .await;
        assert_eq!(status, 200, "channel query failed: {answer}");
        answer
    }

    /// `GET /channels` with a prefix filter and `info`.
    pub async fn channels(&self, prefix: &str, info: &str) -> Value {
        let mut params = vec![("filter_by_prefix", prefix)];
        if !info.is_empty() {
            params.push(("info", info));
        }
        let (status, answer) = self.request("GET", "/channels", &params, None).await;
        assert_eq!(status, 200, "channels query failed: {answer}");
        answer
    }

    /// The sorted member ids of a presence channel.
    pub async fn users(&self, channel: &str) -> Vec<String> {
        let (status, answer) = self
            .request("GET", &format!("/channels/{channel}/users"), &[], None)
            .await;
        assert_eq!(status, 200, "users query failed: {answer}");
        let mut ids: Vec<String> = answer["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    pub async fn terminate(&self, user_id: &str) {
        let path = format!("/users/{user_id}/terminate_connections");
        let (status, answer) = self.request("POST", &path, &[], Some(json!({}))).await;
        assert_eq!(status, 200, "terminate failed: {answer}");
    }

    /// Waits until `GET /channels/{channel}?info=...` satisfies `done`.
    pub async fn wait_channel(
        &self,
        channel: &str,
        info: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let answer = self.channel(channel, info).await;
            if done(&answer) {
                return answer;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{channel} never reached the expected state; last answer {answer}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
