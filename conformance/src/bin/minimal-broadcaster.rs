//! The least a Pusher-compatible server can do, as a yardstick for the machine it runs on.
//!
//! `comnestor-bench` measures a server together with the machine: on two shared cores the
//! kernel's loopback path is most of what a delivery costs, and it differs from one VM to the
//! next. This broadcaster speaks just enough of the protocol for the load generator's idle,
//! fan-out and many-channel scenarios: `pusher:connection_established`, public
//! `pusher:subscribe`, `pusher:ping`, and `POST /apps/{id}/events` or `/batch_events` (any path,
//! no signature check). It keeps no log, checks nothing, and gives each connection a task and an
//! unbounded queue, written through tokio-tungstenite with small buffers, whatever queued up
//! meanwhile in one flush. Run in the same sitting as a real server, it says how much of a
//! result is the machine (BENCHMARKS.md):
//!
//! ```sh
//! target/release/minimal-broadcaster --port 6003 &
//! COMNESTOR_URL=http://127.0.0.1:6003 target/release/comnestor-bench --label minimal \
//!   fanout --subscribers 10000 --rate 10 --duration 10
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Largest HTTP request head and body accepted.
const MAX_REQUEST: usize = 1 << 20;

/// A subscribed connection: its id and its queue.
type Subscriber = (u64, UnboundedSender<Utf8Bytes>);

/// Subscribers by channel.
#[derive(Default)]
struct Channels(Mutex<HashMap<String, Vec<Subscriber>>>);

impl Channels {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Subscriber>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let mut port = 6003u16;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().map(|v| v.parse())) {
            ("--port", Some(Ok(value))) => port = value,
            _ => {
                eprintln!(
                    "usage: minimal-broadcaster [--port PORT]   (default 6003, on 127.0.0.1)"
                );
                return std::process::ExitCode::from(2);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(serve(port)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("minimal-broadcaster: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("minimal-broadcaster listening on 127.0.0.1:{port}");
    let channels = Arc::new(Channels::default());
    let mut next_id = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                eprintln!("accept: {error}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let (channels, id) = (channels.clone(), next_id);
        tokio::spawn(async move {
            let mut start = [0u8; 5];
            match stream.peek(&mut start).await {
                Ok(5) if &start == b"GET /" => websocket(stream, &channels, id).await,
                Ok(_) => http(stream, &channels).await,
                Err(_) => {}
            }
        });
    }
}

async fn websocket(stream: TcpStream, channels: &Channels, id: u64) {
    // tungstenite's default read buffer is 128 KiB, held by every connection for its life.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(16 * 1024);
    let Ok(socket) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut source) = socket.split();
    let (queue, mut queued) = unbounded_channel::<Utf8Bytes>();
    let data = serde_json::json!({ "socket_id": format!("{id}.{id}"), "activity_timeout": 120 });
    let established = serde_json::json!({
        "event": "pusher:connection_established",
        "data": data.to_string(),
    });
    let _ = queue.send(established.to_string().into());
    // What queued up while the last write went out leaves in one flush, as any server that
    // keeps up with 1,000 subscribers at hundreds of events per second must do.
    let writer = tokio::spawn(async move {
        while let Some(frame) = queued.recv().await {
            let mut fed = sink.feed(Message::Text(frame)).await;
            while let (Ok(()), Ok(frame)) = (&fed, queued.try_recv()) {
                fed = sink.feed(Message::Text(frame)).await;
            }
            if fed.is_err() || sink.flush().await.is_err() {
                break;
            }
        }
    });
    let mut joined = Vec::new();
    while let Some(Ok(message)) = source.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        match message["event"].as_str() {
            Some("pusher:subscribe") => {
                let Some(channel) = message["data"]["channel"].as_str() else {
                    continue;
                };
                channels
                    .lock()
                    .entry(channel.to_owned())
                    .or_default()
                    .push((id, queue.clone()));
                joined.push(channel.to_owned());
                let succeeded = serde_json::json!({
                    "event": "pusher_internal:subscription_succeeded",
                    "channel": channel,
                    "data": "{}",
                });
                let _ = queue.send(succeeded.to_string().into());
            }
            Some("pusher:ping") => {
                let _ = queue.send(r#"{"event":"pusher:pong","data":"{}"}"#.into());
            }
            _ => {}
        }
    }
    writer.abort();
    let mut channels = channels.lock();
    for channel in joined {
        if let Some(subscribers) = channels.get_mut(&channel) {
            subscribers.retain(|(other, _)| *other != id);
        }
    }
}

/// Serves requests on one keep-alive connection: every JSON body is published, every request
/// is answered `200 {}`, or `400` when its body is not JSON.
async fn http(mut stream: TcpStream, channels: &Channels) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() > MAX_REQUEST || !read_more(&mut stream, &mut buf).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]);
        let length = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if length > MAX_REQUEST {
            let _ = stream
                .write_all(&response(
                    "413 Payload Too Large",
                    r#"{"error":"body too large"}"#,
                ))
                .await;
            return;
        }
        while buf.len() < head_end + length {
            if !read_more(&mut stream, &mut buf).await {
                return;
            }
        }
        let published = publish(channels, &buf[head_end..head_end + length]);
        buf.drain(..head_end + length);
        let answer = match published {
            true => response("200 OK", "{}"),
            false => response(
                "400 Bad Request",
                r#"{"error":"the body is not a JSON event"}"#,
            ),
        };
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Queues each event of `body` (one event, or `{"batch": [...]}`) for its channels'
/// subscribers. Returns whether the body was JSON.
fn publish(channels: &Channels, body: &[u8]) -> bool {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let events: Vec<&serde_json::Value> = match body.get("batch").and_then(|b| b.as_array()) {
        Some(batch) => batch.iter().collect(),
        None => vec![&body],
    };
    for event in events {
        let mut names: Vec<&str> = event["channels"]
            .as_array()
            .map(|list| list.iter().filter_map(|c| c.as_str()).collect())
            .unwrap_or_default();
        names.extend(event["channel"].as_str());
        for name in names {
            let frame = serde_json::json!({
                "event": event["name"],
                "channel": name,
                "data": event["data"],
            });
            let frame = Utf8Bytes::from(frame.to_string());
            if let Some(subscribers) = channels.lock().get(name) {
                for (_, queue) in subscribers {
                    let _ = queue.send(frame.clone());
                }
            }
        }
    }
    true
}

/// A JSON response; `status` is the code and its reason, `200 OK`.
fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
