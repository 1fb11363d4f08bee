//! A minimal Pusher client over a hand-rolled WebSocket (RFC 6455) framing.
//!
//! The receive path is the generator's hot loop, so it does as little as it can: one `read`
//! fills a buffer that usually holds many frames, each frame is handed to the caller as a
//! borrowed slice, and nothing is allocated or validated per message. Control frames (ping,
//! close) are answered here. Only what the generator needs is implemented: no extensions
//! (permessage-deflate is never offered), no TLS, no binary messages.

use std::collections::HashSet;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine;
use comnestor_protocol::message::{ServerMessage, SubscribeData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::target::Target;

/// Largest message accepted; a larger one ends the connection.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// How long a connection may take from its SYN to `pusher:connection_established`. Past it the
/// connection counts as failed, so a server that accepts and never answers cannot stall a run.
const ESTABLISH_WITHIN: Duration = Duration::from_secs(10);

/// Whether the connection is still open after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    /// Closed by the server, with the close code when it sent one.
    Closed(Option<u16>),
}

/// Frames waiting to be written, encoded and masked.
#[derive(Default)]
pub struct Outgoing {
    bytes: Vec<u8>,
    mask_state: u32,
}

impl Outgoing {
    /// Whether no frame waits to be written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The encoded frames, for a writer that sends them itself.
    pub fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Queues a text message.
    pub fn text(&mut self, text: &str) {
        self.frame(OP_TEXT, text.as_bytes());
    }

    fn frame(&mut self, opcode: u8, payload: &[u8]) {
        self.bytes.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            self.bytes.push(0x80 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            self.bytes.push(0x80 | 126);
            self.bytes.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.bytes.push(0x80 | 127);
            self.bytes.extend_from_slice(&(len as u64).to_be_bytes());
        }
        // Clients must mask; servers do not check how unpredictable the key is.
        self.mask_state = self
            .mask_state
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        let mask = self.mask_state.to_be_bytes();
        self.bytes.extend_from_slice(&mask);
        self.bytes
            .extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }
}

/// Everything of a connection but its socket: bytes read and not yet handled, and frames
/// waiting to be written. A [`crate::reader`] thread carries it while it polls the socket.
pub struct Frames {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A fragmented message being reassembled.
    partial: Vec<u8>,
    pub out: Outgoing,
}

/// One connection to the server.
pub struct Ws {
    stream: TcpStream,
    frames: Frames,
    /// From `pusher:connection_established`.
    pub socket_id: String,
    /// Messages read during setup after the one it waited for.
    backlog: Vec<Vec<u8>>,
}

/// What the setup path wants after a message.
enum Flow {
    Continue,
    Done,
    Fail(String),
}

/// A `pusher:error` with a close code (4000 to 4299) ends the connection; one without a code
/// (a refused command) does not.
fn is_fatal(message: &ServerMessage) -> bool {
    let code = message.decoded_data().get("code").and_then(|c| c.as_u64());
    code.is_some_and(|c| (4000..4300).contains(&c))
}

impl Ws {
    /// Opens the TCP connection from `source`, upgrades it, and waits for
    /// `pusher:connection_established`. `buffer` is the read buffer's starting size.
    pub async fn connect(target: &Target, source: IpAddr, buffer: usize) -> anyhow::Result<Self> {
        Self::connect_within(target, source, buffer, ESTABLISH_WITHIN).await
    }

    async fn connect_within(
        target: &Target,
        source: IpAddr,
        buffer: usize,
        within: Duration,
    ) -> anyhow::Result<Self> {
        tokio::time::timeout(within, Self::open(target, source, buffer))
            .await
            .with_context(|| format!("no pusher:connection_established within {within:?}"))?
    }

    async fn open(target: &Target, source: IpAddr, buffer: usize) -> anyhow::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket
            .bind((source, 0).into())
            .with_context(|| format!("binding {source}"))?;
        let stream = socket.connect(target.ws_addr).await?;
        stream.set_nodelay(true)?;
        let mut ws = Self {
            stream,
            frames: Frames::new(buffer),
            socket_id: String::new(),
            backlog: Vec::new(),
        };
        ws.handshake(target).await?;
        ws.established().await?;
        Ok(ws)
    }

    async fn handshake(&mut self, target: &Target) -> anyhow::Result<()> {
        let key =
            base64::engine::general_purpose::STANDARD.encode(rand_seed().to_be_bytes().repeat(4));
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            target.ws_path(),
            target.ws_host
        );
        self.stream.write_all(request.as_bytes()).await?;
        let frames = &mut self.frames;
        loop {
            if let Some(end) = find(&frames.buf[..frames.end], b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&frames.buf[..end]);
                let status = head.lines().next().unwrap_or_default();
                if !status.starts_with("HTTP/1.1 101") {
                    bail!("upgrade refused: {status}");
                }
                frames.start = end + 4;
                return Ok(());
            }
            if frames.end == frames.buf.len() {
                bail!("upgrade response too long");
            }
            let n = self.stream.read(&mut frames.buf[frames.end..]).await?;
            if n == 0 {
                bail!("connection closed during the upgrade");
            }
            frames.end += n;
        }
    }

    async fn established(&mut self) -> anyhow::Result<()> {
        let mut socket_id = None;
        self.read_messages(|message| {
            if message.event != "pusher:connection_established" {
                return Flow::Continue;
            }
            let data = message.decoded_data();
            socket_id = data
                .get("socket_id")
                .and_then(|s| s.as_str())
                .map(str::to_owned);
            Flow::Done
        })
        .await?;
        self.socket_id = socket_id.context("connection_established without socket_id")?;
        Ok(())
    }

    /// Queues `pusher:subscribe`; `auth` and `channel_data` for private and presence channels.
    pub fn queue_subscribe(
        &mut self,
        channel: &str,
        auth: Option<String>,
        channel_data: Option<String>,
    ) {
        let data = SubscribeData {
            channel: channel.to_owned(),
            auth,
            channel_data,
        };
        let frame = serde_json::json!({ "event": "pusher:subscribe", "data": data });
        self.frames.out.text(&frame.to_string());
    }

    pub fn queue_unsubscribe(&mut self, channel: &str) {
        let frame =
            serde_json::json!({ "event": "pusher:unsubscribe", "data": { "channel": channel } });
        self.frames.out.text(&frame.to_string());
    }

    /// Writes what is queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        let out = &mut self.frames.out.bytes;
        if !out.is_empty() {
            self.stream.write_all(out).await?;
            out.clear();
        }
        Ok(())
    }

    /// Waits for `pusher_internal:subscription_succeeded` on each of `channels`, in any order.
    pub async fn await_subscribed(&mut self, channels: &[&str]) -> anyhow::Result<()> {
        let mut pending: HashSet<&str> = channels.iter().copied().collect();
        self.read_messages(|message| match message.event.as_str() {
            "pusher_internal:subscription_succeeded" => {
                pending.remove(message.channel.as_deref().unwrap_or_default());
                if pending.is_empty() {
                    Flow::Done
                } else {
                    Flow::Continue
                }
            }
            "pusher:subscription_error" | "pusher:error" => {
                Flow::Fail(format!("subscription refused: {}", message.decoded_data()))
            }
            _ => Flow::Continue,
        })
        .await
    }

    /// Parses messages one by one until `handle` is done with them; the messages after that
    /// stay queued for the next [`Ws::read_some`]. Slow path, for setup only.
    async fn read_messages(
        &mut self,
        mut handle: impl FnMut(ServerMessage) -> Flow,
    ) -> anyhow::Result<()> {
        let mut outcome = Flow::Continue;
        loop {
            let mut later = Vec::new();
            let status = self
                .read_some(|text, _| {
                    if !matches!(outcome, Flow::Continue) {
                        later.push(text.to_vec());
                        return;
                    }
                    let parsed = std::str::from_utf8(text).ok().map(ServerMessage::parse);
                    match parsed {
                        Some(Ok(message))
                            if message.event == "pusher:error" && is_fatal(&message) =>
                        {
                            outcome =
                                Flow::Fail(format!("pusher:error {}", message.decoded_data()));
                        }
                        Some(Ok(message)) => outcome = handle(message),
                        _ => {}
                    }
                })
                .await?;
            self.backlog.extend(later);
            match outcome {
                Flow::Done => return Ok(()),
                Flow::Fail(why) => bail!(why),
                Flow::Continue => {}
            }
            if let Status::Closed(code) = status {
                bail!("closed by the server ({code:?})");
            }
        }
    }

    /// Waits for data, then hands every complete text message to `on_text`, answers pings
    /// and writes whatever was queued. Cancel safe while it waits for data.
    pub async fn read_some<F>(&mut self, mut on_text: F) -> anyhow::Result<Status>
    where
        F: FnMut(&[u8], &mut Outgoing),
    {
        // Messages held back by the setup path, then frames left in the buffer, come first.
        let held = self.hand_backlog(&mut on_text);
        let (mut status, mut delivered) = self.frames.parse(&mut on_text)?;
        delivered += held;
        if status == Status::Open && delivered == 0 && self.frames.out.is_empty() {
            let n = self.stream.read(self.frames.space()).await?;
            if n == 0 {
                return Ok(Status::Closed(None));
            }
            self.frames.filled(n);
            status = self.frames.parse(&mut on_text)?.0;
        }
        self.flush().await?;
        Ok(status)
    }

    /// Takes the connection apart for a [`crate::reader`] thread, handing the messages held
    /// back by the setup path to `on_text` first.
    pub fn into_parts(
        mut self,
        mut on_text: impl FnMut(&[u8], &mut Outgoing),
    ) -> io::Result<(std::net::TcpStream, Frames)> {
        self.hand_backlog(&mut on_text);
        Ok((self.stream.into_std()?, self.frames))
    }

    /// Hands the messages held back by the setup path to `on_text`; returns how many.
    fn hand_backlog(&mut self, on_text: &mut impl FnMut(&[u8], &mut Outgoing)) -> usize {
        let held = std::mem::take(&mut self.backlog);
        for message in &held {
            on_text(message, &mut self.frames.out);
        }
        held.len()
    }

    /// Puts a connection taken apart by [`Ws::into_parts`] together again, on the current
    /// runtime.
    pub fn from_parts(stream: std::net::TcpStream, frames: Frames) -> io::Result<Self> {
        Ok(Self {
            stream: TcpStream::from_std(stream)?,
            frames,
            socket_id: String::new(),
            backlog: Vec::new(),
        })
    }

    /// Closes politely (close frame, then waits briefly for the server to end the stream).
    pub async fn close(mut self) {
        self.frames.out.frame(OP_CLOSE, &1000u16.to_be_bytes());
        if self.flush().await.is_err() {
            return;
        }
        let _ = self.stream.shutdown().await;
        let drain = async {
            let mut sink = [0u8; 4096];
            while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }
}

impl Frames {
    /// Empty, with a read buffer of `buffer` bytes (at least 512) to start with.
    pub fn new(buffer: usize) -> Self {
        Self {
            buf: vec![0; buffer.max(512)],
            start: 0,
            end: 0,
            partial: Vec::new(),
            out: Outgoing {
                bytes: Vec::new(),
                mask_state: rand_seed(),
            },
        }
    }

    /// The free end of the buffer, made room for first.
    pub fn space(&mut self) -> &mut [u8] {
        self.make_room();
        &mut self.buf[self.end..]
    }

    /// Counts `n` bytes just read into [`Frames::space`].
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        } else {
            let larger = self.buf.len() * 2;
            self.buf.resize(larger, 0);
        }
    }

    /// Handles every complete frame in the buffer; returns the status and how many messages
    /// went to `on_text`.
    pub fn parse<F>(&mut self, on_text: &mut F) -> anyhow::Result<(Status, usize)>
    where
        F: FnMut(&[u8], &mut Outgoing),
    {
        let mut delivered = 0;
        loop {
            let available = &mut self.buf[self.start..self.end];
            let Some((header, len)) = frame_header(available)? else {
                return Ok((Status::Open, delivered));
            };
            let total = header.len + len;
            if available.len() < total {
                if total > self.buf.len() {
                    // Room for a frame bigger than the buffer.
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                    self.buf.resize(total, 0);
                }
                return Ok((Status::Open, delivered));
            }
            let payload = &mut available[header.len..total];
            if let Some(mask) = header.mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            self.start += total;
            match header.opcode {
                OP_TEXT if header.fin => {
                    delivered += 1;
                    on_text(payload, &mut self.out);
                }
                OP_TEXT => self.partial = payload.to_vec(),
                OP_CONTINUATION => {
                    self.partial.extend_from_slice(payload);
                    if self.partial.len() > MAX_MESSAGE {
                        bail!("message over {MAX_MESSAGE} bytes");
                    }
                    if header.fin {
                        let message = std::mem::take(&mut self.partial);
                        delivered += 1;
                        on_text(&message, &mut self.out);
                    }
                }
                OP_PING => {
                    let payload = payload.to_vec();
                    self.out.frame(OP_PONG, &payload);
                }
                OP_CLOSE => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    self.out
                        .frame(OP_CLOSE, &code.unwrap_or(1000).to_be_bytes());
                    return Ok((Status::Closed(code), delivered));
                }
                _ => {}
            }
        }
    }
}

struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Bytes of header, including the mask.
    len: usize,
}

fn frame_header(buf: &[u8]) -> anyhow::Result<Option<(Header, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let masked = b1 & 0x80 != 0;
    let (len, mut header_len) = match b1 & 0x7f {
        126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&buf[2..10]);
            (
                usize::try_from(u64::from_be_bytes(bytes)).unwrap_or(usize::MAX),
                10,
            )
        }
        126 | 127 => return Ok(None),
        n => (usize::from(n), 2),
    };
    if len > MAX_MESSAGE {
        bail!("frame of {len} bytes");
    }
    let mask = if masked {
        if buf.len() < header_len + 4 {
            return Ok(None);
        }
        let mask = [
            buf[header_len],
            buf[header_len + 1],
            buf[header_len + 2],
            buf[header_len + 3],
        ];
        header_len += 4;
        Some(mask)
    } else {
        None
    };
    let header = Header {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        mask,
        len: header_len,
    };
    Ok(Some((header, len)))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rand_seed() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(crate::payload::now_us()) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_accepts_and_never_answers_fails_the_connection() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = Target::new(&url, None, "1".into(), "k".into(), "s".into(), 1, 1).unwrap();
        let source = target.source(0);
        let silent = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let outcome = tokio::time::timeout(
            Duration::from_secs(30),
            Ws::connect_within(&target, source, 512, Duration::from_millis(200)),
        )
        .await
        .expect("the connection gives up by itself");
        let error = outcome.err().expect("no connection to a silent server");
        assert!(
            error.to_string().contains("connection_established within"),
            "{error:#}"
        );
        silent.abort();
    }

    #[test]
    fn parses_unmasked_frames_of_each_length_form() {
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let mut frame = vec![0x81];
            if len < 126 {
                frame.push(len as u8);
            } else if len <= 65_535 {
                frame.push(126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                frame.push(127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
            let header_len = frame.len();
            frame.resize(header_len + len, b'a');
            let (header, payload) = frame_header(&frame).unwrap().unwrap();
            assert_eq!((header.len, payload), (header_len, len));
            assert!(header.fin && header.opcode == OP_TEXT && header.mask.is_none());
            assert!(frame_header(&frame[..header_len - 1]).unwrap().is_none());
        }
    }

    #[test]
    fn client_frames_are_masked() {
        let mut out = Outgoing::default();
        out.text("hello");
        let (header, len) = frame_header(&out.bytes).unwrap().unwrap();
        let mask = header.mask.expect("masked");
        let payload: Vec<u8> = out.bytes[header.len..header.len + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(payload, b"hello");
    }
}
