//! A small Pusher WebSocket client for the cases: connect, send events, wait for a frame that
//! matches, assert that none arrives, and observe the close code.
//!
//! Frames that arrive while a case waits for something else are kept in a backlog, so the
//! order in which a server interleaves unrelated frames (a `subscription_count` before a
//! `subscription_succeeded`, say) never fails a case.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Message;

/// One decoded server frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: String,
    pub channel: Option<String>,
    /// `data` as it appeared on the wire: usually a JSON string, sometimes an object.
    pub data: Option<Value>,
    pub user_id: Option<Value>,
    pub raw: String,
}

impl Frame {
    fn parse(raw: String) -> Option<Self> {
        let value: Value = serde_json::from_str(&raw).ok()?;
        let object = value.as_object()?;
        let event = object.get("event")?.as_str()?.to_owned();
        Some(Self {
            event,
            channel: object
                .get("channel")
                .and_then(Value::as_str)
                .map(str::to_owned),
            data: object.get("data").cloned(),
            user_id: object.get("user_id").cloned(),
            raw,
        })
    }

    /// `data` decoded the way pusher-js decodes it: a string is parsed as JSON when it can be,
    /// an object is taken as is, a missing field is `null`.
    pub fn data_value(&self) -> Value {
        match &self.data {
            Some(Value::String(text)) => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
            }
            Some(other) => other.clone(),
            None => Value::Null,
        }
    }

    /// `data` when the server sent it as a JSON string (the double encoding of §1.2).
    pub fn data_str(&self) -> Option<&str> {
        self.data.as_ref().and_then(Value::as_str)
    }

    pub fn is(&self, event: &str, channel: Option<&str>) -> bool {
        self.event == event && (channel.is_none() || self.channel.as_deref() == channel)
    }

    /// The numeric `code` of a `pusher:error`, if any.
    pub fn error_code(&self) -> Option<i64> {
        self.data_value().get("code").and_then(Value::as_i64)
    }
}

enum Incoming {
    Frame(Frame),
    Invalid(String),
    Pong(Vec<u8>),
    Ping,
    Closed(Option<u16>),
}

/// A connection to the server under test. Dropping it stops its tasks and the socket.
pub struct Client {
    out: mpsc::UnboundedSender<Message>,
    inbox: mpsc::UnboundedReceiver<Incoming>,
    backlog: VecDeque<Frame>,
    pongs: VecDeque<Vec<u8>>,
    closed: Option<Option<u16>>,
    seen: VecDeque<String>,
    auto_pong: Arc<AtomicBool>,
    ws_pings: usize,
    wait: Duration,
    tasks: [JoinHandle<()>; 2],
    pub socket_id: String,
    pub established: Option<Frame>,
}

impl Drop for Client {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Client {
    /// Opens the socket without waiting for any frame. `wait` is the default time each
    /// expectation waits.
    pub async fn open(url: &str, wait: Duration) -> Result<Self> {
        let (stream, _) = tokio::time::timeout(wait, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| anyhow!("WebSocket handshake with {url} timed out"))?
            .with_context(|| format!("WebSocket handshake with {url} failed"))?;
        let (mut sink, mut stream) = stream.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
        let (incoming, inbox) = mpsc::unbounded_channel();
        let auto_pong = Arc::new(AtomicBool::new(true));

        let writer = tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let pong_out = out.clone();
        let pong_flag = auto_pong.clone();
        let reader = tokio::spawn(async move {
            let code = loop {
                let Some(message) = stream.next().await else {
                    break None;
                };
                let item = match message {
                    Ok(Message::Text(text)) => match Frame::parse(text.to_string()) {
                        Some(frame) => {
                            if frame.event == "pusher:ping" && pong_flag.load(Ordering::Relaxed) {
                                let pong = json!({"event": "pusher:pong", "data": {}});
                                let _ = pong_out.send(Message::text(pong.to_string()));
                            }
                            Incoming::Frame(frame)
                        }
                        None => Incoming::Invalid(format!("not a Pusher event: {text}")),
                    },
                    Ok(Message::Binary(_)) => Incoming::Invalid("a binary frame".to_owned()),
                    Ok(Message::Pong(payload)) => Incoming::Pong(payload.to_vec()),
                    Ok(Message::Ping(_)) => Incoming::Ping,
                    Ok(Message::Frame(_)) => continue,
                    Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
                    Err(_) => break None,
                };
                if incoming.send(item).is_err() {
                    return;
                }
            };
            let _ = incoming.send(Incoming::Closed(code));
        });

        Ok(Self {
            out,
            inbox,
            backlog: VecDeque::new(),
            pongs: VecDeque::new(),
            closed: None,
            seen: VecDeque::new(),
            auto_pong,
            ws_pings: 0,
            wait,
            tasks: [writer, reader],
            socket_id: String::new(),
            established: None,
        })
    }

    /// Opens the socket and waits for `pusher:connection_established`, which must be the
    /// first frame.
    pub async fn connect(url: &str, wait: Duration) -> Result<Self> {
        let mut client = Self::open(url, wait).await?;
        let first = client.next_frame(wait).await.context("no first frame")?;
        if first.event != "pusher:connection_established" {
            bail!(
                "the first frame is not pusher:connection_established: {}",
                first.raw
            );
        }
        let socket_id = first
            .data_value()
            .get("socket_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("connection_established without socket_id: {}", first.raw))?;
        client.socket_id = socket_id;
        client.established = Some(first);
        Ok(client)
    }

    /// Whether the client answers the server's `pusher:ping` with `pusher:pong` (default on,
    /// as pusher-js does).
    pub fn set_auto_pong(&self, on: bool) {
        self.auto_pong.store(on, Ordering::Relaxed);
    }

    pub fn send(&self, event: Value) {
        let _ = self.out.send(Message::text(event.to_string()));
    }

    pub fn send_raw(&self, message: Message) {
        let _ = self.out.send(message);
    }

    /// Sends `pusher:subscribe` with the fields that are given.
    pub fn subscribe(&self, channel: &str, auth: Option<&str>, channel_data: Option<&str>) {
        let mut data = json!({ "channel": channel });
        if let Some(auth) = auth {
            data["auth"] = json!(auth);
        }
        if let Some(channel_data) = channel_data {
            data["channel_data"] = json!(channel_data);
        }
        self.send(json!({"event": "pusher:subscribe", "data": data}));
    }

    pub fn unsubscribe(&self, channel: &str) {
        self.send(json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}));
    }

    /// Sends a `client-` (or any) event on a channel.
    pub fn trigger(&self, channel: &str, event: &str, data: Value) {
        self.send(json!({"event": event, "channel": channel, "data": data}));
    }

    /// Closes the socket from the client side.
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }

    async fn receive(&mut self, deadline: Instant) -> Result<Option<Incoming>> {
        if self.closed.is_some() {
            return Ok(None);
        }
        match timeout_at(deadline, self.inbox.recv()).await {
            Err(_) => Ok(None),
            Ok(None) => {
                self.closed = Some(None);
                Ok(None)
            }
            Ok(Some(Incoming::Closed(code))) => {
                self.closed = Some(code);
                Ok(None)
            }
            Ok(Some(Incoming::Invalid(what))) => bail!("the server sent {what}"),
            Ok(Some(Incoming::Ping)) => {
                self.ws_pings += 1;
                Ok(Some(Incoming::Ping))
            }
            Ok(Some(item)) => Ok(Some(item)),
        }
    }

    fn remember(&mut self, frame: &Frame) {
        self.seen.push_back(frame.raw.chars().take(300).collect());
        if self.seen.len() > 8 {
            self.seen.pop_front();
        }
    }

    async fn next_frame(&mut self, wait: Duration) -> Result<Frame> {
        self.expect_within("any frame", wait, |_| true).await
    }

    /// Waits `self.wait` for a frame matching `matches`. Other frames go to the backlog.
    pub async fn expect(&mut self, what: &str, matches: impl Fn(&Frame) -> bool) -> Result<Frame> {
        self.expect_within(what, self.wait, matches).await
    }

    pub async fn expect_within(
        &mut self,
        what: &str,
        wait: Duration,
        matches: impl Fn(&Frame) -> bool,
    ) -> Result<Frame> {
        if let Some(index) = self.backlog.iter().position(&matches) {
            return Ok(self.backlog.remove(index).expect("index is in range"));
        }
        let deadline = Instant::now() + wait;
        loop {
            match self.receive(deadline).await? {
                Some(Incoming::Frame(frame)) => {
                    self.remember(&frame);
                    if matches(&frame) {
                        return Ok(frame);
                    }
                    self.backlog.push_back(frame);
                }
                Some(Incoming::Pong(payload)) => self.pongs.push_back(payload),
                Some(_) => {}
                None => break,
            }
        }
        let recent: Vec<&String> = self.seen.iter().collect();
        match self.closed {
            Some(code) => bail!(
                "the connection closed (code {}) before {what}; last frames: {recent:?}",
                code.map_or("none".to_owned(), |c| c.to_string())
            ),
            None => bail!(
                "timed out after {} ms waiting for {what}; last frames: {recent:?}",
                wait.as_millis()
            ),
        }
    }

    /// Waits for `event` (on `channel`, when given).
    pub async fn expect_event(&mut self, event: &str, channel: Option<&str>) -> Result<Frame> {
        let what = match channel {
            Some(channel) => format!("{event} on {channel}"),
            None => event.to_owned(),
        };
        self.expect(&what, |f| f.is(event, channel)).await
    }

    /// Fails if a frame matching `matches` arrives within `wait` (or is already waiting).
    pub async fn expect_none(
        &mut self,
        what: &str,
        wait: Duration,
        matches: impl Fn(&Frame) -> bool,
    ) -> Result<()> {
        if let Some(frame) = self.backlog.iter().find(|f| matches(f)) {
            bail!("unexpected {what}: {}", frame.raw);
        }
        let deadline = Instant::now() + wait;
        loop {
            match self.receive(deadline).await? {
                Some(Incoming::Frame(frame)) => {
                    self.remember(&frame);
                    if matches(&frame) {
                        bail!("unexpected {what}: {}", frame.raw);
                    }
                    self.backlog.push_back(frame);
                }
                Some(Incoming::Pong(payload)) => self.pongs.push_back(payload),
                Some(_) => {}
                None => return Ok(()),
            }
        }
    }

    /// Waits for the server to close the socket and returns the close frame's code, if any.
    pub async fn expect_close(&mut self, wait: Duration) -> Result<Option<u16>> {
        let deadline = Instant::now() + wait;
        while self.closed.is_none() {
            match self.receive(deadline).await? {
                Some(Incoming::Frame(frame)) => {
                    self.remember(&frame);
                    self.backlog.push_back(frame);
                }
                Some(Incoming::Pong(payload)) => self.pongs.push_back(payload),
                Some(_) => {}
                None if self.closed.is_none() => {
                    bail!("the server did not close the connection within {wait:?}")
                }
                None => {}
            }
        }
        Ok(self.closed.flatten())
    }

    /// Frames received so far and not yet consumed by an expectation.
    pub fn backlog(&self) -> impl Iterator<Item = &Frame> {
        self.backlog.iter()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Waits for a WebSocket pong control frame.
    pub async fn expect_ws_pong(&mut self) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.wait;
        loop {
            if let Some(payload) = self.pongs.pop_front() {
                return Ok(payload);
            }
            match self.receive(deadline).await? {
                Some(Incoming::Frame(frame)) => self.backlog.push_back(frame),
                Some(Incoming::Pong(payload)) => return Ok(payload),
                Some(_) => {}
                None => bail!("no WebSocket pong within {:?}", self.wait),
            }
        }
    }

    /// Waits for the server to ping: a `pusher:ping` event or a WebSocket ping.
    pub async fn expect_server_ping(&mut self, wait: Duration) -> Result<()> {
        let before = self.ws_pings;
        let deadline = Instant::now() + wait;
        loop {
            if self.ws_pings > before {
                return Ok(());
            }
            match self.receive(deadline).await? {
                Some(Incoming::Frame(frame)) if frame.event == "pusher:ping" => return Ok(()),
                Some(Incoming::Frame(frame)) => self.backlog.push_back(frame),
                Some(Incoming::Pong(payload)) => self.pongs.push_back(payload),
                Some(_) => {}
                None if self.closed.is_some() => bail!(
                    "the connection closed (code {:?}) before the server pinged",
                    self.closed.flatten()
                ),
                None => bail!("the server did not ping within {wait:?}"),
            }
        }
    }

    /// Proves the connection is open and responsive: `pusher:ping` must get a `pusher:pong`.
    pub async fn assert_open(&mut self) -> Result<()> {
        self.send(json!({"event": "pusher:ping", "data": {}}));
        self.expect("pusher:pong (the connection should stay open)", |f| {
            f.event == "pusher:pong"
        })
        .await
        .map(|_| ())
    }
}
