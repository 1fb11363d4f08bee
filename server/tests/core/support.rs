//! A small Pusher client and a signed HTTP API client for the tests.
//!
//! Every wait is bounded by [`WAIT`]; a test that expects a frame fails with a message naming
//! it instead of hanging. To show that something is *not* delivered, trigger a marker event
//! and check that it is the next frame the client sees.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comnestor_protocol::auth;
use comnestor_protocol::signing;
use comnestor_server::apps::{App, AppSettings};
use comnestor_server::testing::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected frame or response may take.
pub const WAIT: Duration = Duration::from_secs(5);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server whose app has the default settings.
pub async fn server() -> TestServer {
    TestServer::start().await
}

/// A server whose app settings `configure` adjusts.
pub async fn server_with(configure: impl FnOnce(&mut AppSettings)) -> TestServer {
    TestServer::start_with(configure).await
}

/// One frame from the server, with `data` decoded once when it was a JSON string.
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: String,
    pub channel: Option<String>,
    /// `data` as sent: a string for double-encoded payloads, an object for `pusher:error`.
    pub raw_data: Option<Value>,
    /// `data` parsed once more when it was a string holding JSON.
    pub data: Value,
    pub user_id: Option<String>,
    pub text: String,
}

impl Frame {
    fn parse(text: &str) -> Self {
        let value: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("server sent invalid JSON ({e}): {text}"));
        let event = value["event"]
            .as_str()
            .unwrap_or_else(|| panic!("frame without event: {text}"))
            .to_owned();
        let raw_data = value.get("data").cloned();
        let data = match &raw_data {
            Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
            Some(other) => other.clone(),
            None => Value::Null,
        };
        Self {
            event,
            channel: value["channel"].as_str().map(str::to_owned),
            raw_data,
            data,
            user_id: value["user_id"].as_str().map(str::to_owned),
            text: text.to_owned(),
        }
    }

    /// The `code` of a `pusher:error`, `None` when it is null.
    pub fn error_code(&self) -> Option<u64> {
        assert_eq!(self.event, "pusher:error", "not an error: {}", self.text);
        self.data["code"].as_u64()
    }

    pub fn error_message(&self) -> &str {
        self.data["message"].as_str().unwrap_or_default()
    }
}

/// What came off the socket.
#[derive(Debug)]
pub enum Received {
    Frame(Frame),
    Close(Option<u16>),
    Other(Message),
}

/// A connected Pusher client.
pub struct Client {
    pub ws: Ws,
    pub socket_id: String,
    pub activity_timeout: u64,
}

impl Client {
    /// Connects to the test app with the query pusher-js sends and waits for the handshake.
    pub async fn connect(server: &TestServer) -> Self {
        Self::connect_to(&server.ws_url()).await
    }

    /// Connects to `url` and waits for `pusher:connection_established`.
    pub async fn connect_to(url: &str) -> Self {
        let ws = open(url).await;
        Self::established(ws).await
    }

    /// Waits for the handshake on an open socket.
    pub async fn established(ws: Ws) -> Self {
        let mut client = Self {
            ws,
            socket_id: String::new(),
            activity_timeout: 0,
        };
        let hello = client.expect("pusher:connection_established").await;
        assert!(
            matches!(hello.raw_data, Some(Value::String(_))),
            "connection_established data must be a JSON string: {}",
            hello.text
        );
        client.socket_id = hello.data["socket_id"].as_str().unwrap().to_owned();
        client.activity_timeout = hello.data["activity_timeout"].as_u64().unwrap();
        client
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send to server");
    }

    /// The next thing off the socket, within [`WAIT`].
    pub async fn receive(&mut self) -> Received {
        receive(&mut self.ws, WAIT).await
    }

    /// The next text frame; panics on a close or a timeout.
    pub async fn next(&mut self) -> Frame {
        match self.receive().await {
            Received::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame, which must be `event`.
    pub async fn expect(&mut self, event: &str) -> Frame {
        let frame = self.next().await;
        assert_eq!(frame.event, event, "unexpected frame: {}", frame.text);
        frame
    }

    /// The next frame, which must be `event` on `channel`.
    pub async fn expect_on(&mut self, event: &str, channel: &str) -> Frame {
        let frame = self.expect(event).await;
        assert_eq!(
            frame.channel.as_deref(),
            Some(channel),
            "wrong channel: {}",
            frame.text
        );
        frame
    }

    /// The next frame, which must be a `pusher:error`.
    pub async fn expect_error(&mut self) -> Frame {
        self.expect("pusher:error").await
    }

    /// A refused subscription: `pusher:error`, then `pusher:subscription_error` on `channel`.
    pub async fn expect_refused(&mut self, channel: &str, status: u64) -> Frame {
        let error = self.expect_error().await;
        assert_eq!(error.error_code(), None, "{}", error.text);
        let refused = self.expect("pusher:subscription_error").await;
        assert_eq!(
            refused.channel.as_deref(),
            Some(channel),
            "{}",
            refused.text
        );
        assert_eq!(refused.data["status"], status, "{}", refused.text);
        error
    }

    /// The server's close frame with `code`, after at most a `pusher:error` with the same code.
    pub async fn expect_close(&mut self, code: u16) {
        expect_close(&mut self.ws, code).await;
    }

    /// `pusher:ping` answered with `pusher:pong`: the connection is open and in order.
    pub async fn assert_alive(&mut self) {
        self.send(json!({"event": "pusher:ping", "data": {}})).await;
        self.expect("pusher:pong").await;
    }

    pub async fn subscribe_public(&mut self, channel: &str) -> Frame {
        let subscribe =
            json!({"event": "pusher:subscribe", "data": {"auth": "", "channel": channel}});
        self.send(subscribe).await;
        self.expect_on("pusher_internal:subscription_succeeded", channel)
            .await
    }

    /// Sends a subscribe signed with the test app's credentials (without waiting).
    pub async fn send_subscribe(&mut self, app: &App, channel: &str, channel_data: Option<&str>) {
        let auth = auth::authorize_channel(
            &app.key,
            &app.secret,
            &self.socket_id,
            channel,
            channel_data,
        );
        let mut data = json!({"auth": auth, "channel": channel});
        if let Some(channel_data) = channel_data {
            data["channel_data"] = json!(channel_data);
        }
        self.send(json!({"event": "pusher:subscribe", "data": data}))
            .await;
    }

    /// Subscribes to a private or encrypted channel.
    pub async fn subscribe_private(&mut self, app: &App, channel: &str) -> Frame {
        self.send_subscribe(app, channel, None).await;
        self.expect_on("pusher_internal:subscription_succeeded", channel)
            .await
    }

    /// Subscribes to a presence channel with `channel_data`; returns the member list frame.
    pub async fn subscribe_presence(
        &mut self,
        app: &App,
        channel: &str,
        channel_data: &str,
    ) -> Frame {
        self.send_subscribe(app, channel, Some(channel_data)).await;
        self.expect_on("pusher_internal:subscription_succeeded", channel)
            .await
    }

    /// Sends `pusher:signin` for `user_data`, signed with the app's credentials.
    pub async fn send_signin(&mut self, app: &App, user_data: &str) {
        let auth = auth::authenticate_user(&app.key, &app.secret, &self.socket_id, user_data);
        let signin =
            json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}});
        self.send(signin).await;
    }

    /// Signs in and waits for `pusher:signin_success`.
    pub async fn signin(&mut self, app: &App, user_data: &str) -> Frame {
        self.send_signin(app, user_data).await;
        let success = self.expect("pusher:signin_success").await;
        assert_eq!(success.data["user_data"], user_data, "{}", success.text);
        success
    }

    /// Writes raw bytes to the TCP stream under the WebSocket, such as half a frame.
    pub async fn send_raw_bytes(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        if let MaybeTlsStream::Plain(tcp) = self.ws.get_mut() {
            tcp.write_all(bytes).await.expect("raw write");
        }
    }

    pub async fn client_event(&mut self, channel: &str, event: &str, data: Value) {
        self.send(json!({"event": event, "channel": channel, "data": data}))
            .await;
    }
}

/// Opens a WebSocket without waiting for anything.
pub async fn open(url: &str) -> Ws {
    open_with_origin(url, None).await
}

/// Opens a WebSocket, sending `origin` as the `Origin` header.
pub async fn open_with_origin(url: &str, origin: Option<&str>) -> Ws {
    let mut request = url.into_client_request().expect("valid URL");
    if let Some(origin) = origin {
        let value = HeaderValue::from_str(origin).expect("valid origin");
        request.headers_mut().insert("origin", value);
    }
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("WebSocket handshake in time")
        .expect("WebSocket handshake");
    ws
}

/// The next thing off `ws`, within `wait`.
pub async fn receive(ws: &mut Ws, wait: Duration) -> Received {
    let next = tokio::time::timeout(wait, ws.next())
        .await
        .expect("the server answered in time");
    match next {
        Some(Ok(Message::Text(text))) => Received::Frame(Frame::parse(&text)),
        Some(Ok(Message::Close(frame))) => Received::Close(frame.map(|f| u16::from(f.code))),
        Some(Ok(other)) => Received::Other(other),
        None => Received::Close(None),
        Some(Err(error)) => panic!("connection failed instead of closing cleanly: {error}"),
    }
}

/// Waits for a close frame with `code`. A `pusher:error` before it must carry the same code.
pub async fn expect_close(ws: &mut Ws, code: u16) {
    loop {
        match receive(ws, WAIT).await {
            Received::Frame(frame) if frame.event == "pusher:error" => {
                assert_eq!(frame.error_code(), Some(u64::from(code)), "{}", frame.text);
            }
            Received::Close(got) => {
                assert_eq!(got, Some(code), "wrong close code");
                return;
            }
            other => panic!("expected close {code}, got {other:?}"),
        }
    }
}

/// Unix time in seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A response of the HTTP API: status and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// Asserts a 200 and returns the body.
    pub fn ok(self) -> Value {
        assert_eq!(self.status, 200, "{:?}", self.body);
        self.body
    }

    /// Asserts `status` with a JSON `{"error": "..."}` body.
    pub fn refused(self, status: u16) -> String {
        assert_eq!(self.status, status, "{:?}", self.body);
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("error body without `error`: {:?}", self.body))
            .to_owned()
    }
}

/// A client of the signed HTTP API for one app.
pub struct Api {
    http: reqwest::Client,
    pub base: String,
    pub app_id: String,
    pub key: String,
    pub secret: String,
}

impl Api {
    pub fn new(server: &TestServer) -> Self {
        Self::for_app(server, &server.app)
    }

    pub fn for_app(server: &TestServer, app: &App) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.http_url(),
            app_id: app.id.clone(),
            key: app.key.clone(),
            secret: app.secret.clone(),
        }
    }

    /// `/apps/{id}` followed by `rest`.
    pub fn path(&self, rest: &str) -> String {
        format!("/apps/{}{rest}", self.app_id)
    }

    /// A signed POST of `body` (as JSON text) to `/apps/{id}{rest}`.
    pub async fn post(&self, rest: &str, body: &Value) -> Reply {
        self.post_path(&self.path(rest), body.to_string().as_bytes())
            .await
    }

    /// A signed POST of raw `body` to `path`.
    pub async fn post_path(&self, path: &str, body: &[u8]) -> Reply {
        let query = signing::sign_request(
            &self.key,
            &self.secret,
            "POST",
            path,
            &[],
            Some(body),
            now(),
        );
        self.raw("POST", path, &query, body.to_vec()).await
    }

    /// A signed GET of `/apps/{id}{rest}` with `params`, without `body_md5`.
    pub async fn get(&self, rest: &str, params: &[(&str, &str)]) -> Reply {
        let path = self.path(rest);
        let query =
            signing::sign_request(&self.key, &self.secret, "GET", &path, params, None, now());
        self.raw("GET", &path, &query, Vec::new()).await
    }

    /// Sends a request exactly as given: `query` is appended to `path` verbatim.
    pub async fn raw(&self, method: &str, path: &str, query: &str, body: Vec<u8>) -> Reply {
        let url = format!("{}{path}?{query}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, url);
        if !body.is_empty() {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .expect("the API answered in time")
            .expect("HTTP request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.expect("response body");
        assert!(
            content_type.starts_with("application/json"),
            "{status} answered with {content_type}: {text}"
        );
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status} answered with invalid JSON ({e}): {text}"));
        Reply { status, body }
    }

    /// Triggers `event` with `data` on one channel and expects 200 `{}`.
    pub async fn trigger(&self, channel: &str, event: &str, data: &str) {
        let body = json!({"name": event, "channel": channel, "data": data});
        let reply = self.post("/events", &body).await.ok();
        assert_eq!(reply, json!({}));
    }
}

/// A presence `channel_data` for `user_id` with a name.
pub fn member(user_id: &str, name: &str) -> String {
    json!({"user_id": user_id, "user_info": {"name": name}}).to_string()
}
