//! One connection's task: reads client frames, writes queued frames, pings when idle.
//!
//! A single task owns the WebSocket and `select!`s between its inbox (queued frames or a
//! requested close), the client and the activity timer, so an idle connection costs one task
//! and small buffers. Broadcasts write to the socket beside it while it is idle (see
//! [`crate::hub::Outbox::offer`]); the task tells the outbox when what it took is written.
//!
//! A write waits at most the app's activity timeout for the client to take it. A client that
//! takes nothing for that long (a frozen tab, a peer that stopped reading) is dropped without
//! the close handshake, which it could not read anyway, rather than holding its task, its
//! subscriptions and its presence in channels forever.

use std::collections::HashSet;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use comnestor_protocol::auth::{verify_channel_auth, verify_user_auth};
use comnestor_protocol::channel::validate_event_name;
use comnestor_protocol::message::{
    self, ClientMessage, Data, PresenceMember, SignedInUser, SigninData, SubscribeData,
    UnsubscribeData,
};
use comnestor_protocol::{ChannelKind, ChannelName, CloseCode};
use futures_util::SinkExt;
use poem::Upgraded;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::Instrument;

use super::reads::Reads;
use super::{close_frame, refuse};
use crate::Context;
use crate::apps::App;
use crate::hub::{AppHub, DIRECT_GAP, Frame, Inbox, Outbox, SubscribeError, Wake};
use crate::rate::TokenBucket;
use crate::webhooks::WebhookEvent;

/// How long the server waits for any reply after it pinged an idle client.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(30);

/// Most frames written before a flush, so one busy connection cannot starve its own reads.
const WRITE_BATCH: usize = 64;

/// A connection woken for frames less than this long after its previous write is streaming:
/// it lets the other runnable tasks go first, once, and then writes whatever was queued in the
/// meantime in the same `send`. On a loaded server that merges writes the way Nagle's algorithm
/// did before `TCP_NODELAY` (see [`crate::listener`]), but the wait is one pass of the
/// scheduler rather than a client's delayed acknowledgement, and on an idle server that pass is
/// microseconds. A connection that gets a frame now and then (one event to many subscribers)
/// is written by the broadcast itself; the same gap decides that.
const STREAMING_GAP: Duration = DIRECT_GAP;

/// Longest channel name echoed back in a refused subscription. Names up to this length come
/// back whole, so that the refusal reaches the channel the client subscribed to even when the
/// name is over the naming limit; longer ones are cut, so a client cannot make the server
/// repeat megabytes.
const MAX_ECHOED_CHANNEL_NAME: usize = 1024;

/// Largest watchlist accepted; the rest is dropped with a 4302 error.
const MAX_WATCHLIST: usize = 100;

type Socket = WebSocketStream<Upgraded>;

/// What the connection knows about itself.
struct Session {
    app: Arc<AppHub>,
    outbox: Outbox,
    channels: HashSet<String>,
    user: Option<SignedInUser>,
    client_events: TokenBucket,
}

/// Runs an admitted connection until it closes.
pub async fn run(
    ctx: Arc<Context>,
    app: Arc<App>,
    mut socket: Socket,
    wire: Option<Arc<crate::listener::Wire>>,
) {
    let _live = ctx.hub.track();
    let hub = ctx.hub.app(&app);
    let (conn, socket_id) = ctx.hub.next_connection();
    let (outbox, inbox) = Outbox::new(conn, socket_id.clone());
    if let Some(wire) = wire {
        outbox.attach(wire);
    }
    let activity = Duration::from_secs(u64::from(app.settings.activity_timeout));
    if let Err(code) = hub.connect(&outbox) {
        let _ = timeout(activity, refuse(&mut socket, code)).await;
        return;
    }
    let span = tracing::debug_span!("connection", app_id = %app.id, %socket_id);
    let session = Session {
        client_events: TokenBucket::new(app.settings.client_event_rate),
        app: hub.clone(),
        outbox: outbox.clone(),
        channels: HashSet::new(),
        user: None,
    };
    outbox.send(message::connection_established(&socket_id, app.settings.activity_timeout).into());
    let mut session = session;
    let code = drive(&mut socket, &mut session, inbox, activity)
        .instrument(span.clone())
        .await;
    if let Some(code) = code {
        span.in_scope(|| tracing::debug!(code = code.code(), "closing connection"));
        let _ = timeout(activity, refuse(&mut socket, code)).await;
    }
    hub.disconnect(
        &outbox,
        session.channels.drain(),
        session.user.as_ref().map(|u| u.id.as_str()),
    )
    .await;
}

/// The connection loop. Returns the code to close with, or `None` when the client left or
/// stopped taking frames. Every write waits at most `activity` (see the module's doc).
async fn drive(
    socket: &mut Socket,
    session: &mut Session,
    mut inbox: Inbox,
    activity: Duration,
) -> Option<CloseCode> {
    // One timer for the connection's life, moved only when the client is heard from: a new
    // timer per loop would be registered and cancelled around every frame written.
    let idle = sleep_until(Instant::now() + activity);
    tokio::pin!(idle);
    let mut pinged = false;
    let mut last_write: Option<Instant> = None;
    let mut reads = Reads::new();
    loop {
        tokio::select! {
            biased;
            wake = poll_fn(|cx| inbox.poll_wake(cx)) => match wake {
                Wake::Close(code) => {
                    // Deliver what was queued before the close (a final error, for instance).
                    // A client that took none of it within `activity` gets no close frame either.
                    return match timeout(activity, write_all(socket, &mut inbox)).await {
                        Ok(_) => Some(code),
                        Err(_) => None,
                    };
                }
                Wake::Frames => {
                    let now = Instant::now();
                    if last_write.is_some_and(|at| now - at < STREAMING_GAP) {
                        tokio::task::yield_now().await;
                        inbox.take_queued();
                    }
                    last_write = Some(now);
                    let written = timeout(activity, write_batch(socket, &mut inbox)).await;
                    if !matches!(written, Ok(Ok(()))) {
                        return None;
                    }
                    inbox.written();
                }
            },
            incoming = poll_fn(|cx| reads.poll_next(socket, cx)) => {
                idle.as_mut().reset(Instant::now() + activity);
                pinged = false;
                match incoming {
                    Some(Ok(Message::Text(text))) => handle_text(session, &text).await,
                    Some(Ok(Message::Binary(_))) => {
                        session.error(None, "Binary frames are not supported; send JSON text frames");
                    }
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite queued the answer (RFC 6455 §5.5.1); without it browsers
                        // report an unclean close. It must be the socket's last frame, so no
                        // broadcast may write directly after it: the inbox is sealed first.
                        inbox.seal();
                        // `SinkExt::close` flushes it (a close of our own would be refused).
                        let _ = timeout(activity, SinkExt::close(socket)).await;
                        return None;
                    }
                    None => return None,
                    Some(Ok(_)) => {}
                    Some(Err(tungstenite::Error::Capacity(error))) => {
                        tracing::debug!(%error, "frame too large");
                        let reason = "Message too large";
                        inbox.seal();
                        let close = socket.close(Some(close_frame(1009, reason)));
                        let _ = timeout(activity, close).await;
                        return None;
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, "connection failed");
                        return None;
                    }
                }
            }
            () = &mut idle => {
                if pinged {
                    return Some(CloseCode::PongNotReceived);
                }
                session.outbox.send(message::ping().into());
                pinged = true;
                idle.as_mut().reset(Instant::now() + PONG_TIMEOUT);
            }
        }
    }
}

/// Writes up to [`WRITE_BATCH`] of the frames taken from the outbox, then flushes them in as
/// few `send` calls as the write buffer allows.
async fn write_batch(socket: &mut Socket, inbox: &mut Inbox) -> Result<(), tungstenite::Error> {
    for _ in 0..WRITE_BATCH {
        match inbox.pop() {
            Some(frame) => socket.feed(Message::Text(frame)).await?,
            None => break,
        }
    }
    socket.flush().await
}

async fn write_all(socket: &mut Socket, inbox: &mut Inbox) -> Result<(), tungstenite::Error> {
    while let Some(frame) = inbox.pop() {
        socket.feed(Message::Text(frame)).await?;
    }
    socket.flush().await
}

/// Handles one client message. On a single node nothing here waits; in a cluster,
/// subscribing, unsubscribing, signing in and client events wait for Redis, and the
/// connection's next message is read only after that, which keeps its messages in order.
/// Queued frames are not written meanwhile either; a connection that gets more than
/// [`crate::hub::OUTBOX_CAPACITY`] frames while Redis is slow to answer (at most
/// [`crate::hub::cluster::OP_TIMEOUT`]) is closed as a slow client.
async fn handle_text(session: &mut Session, text: &str) {
    let limit = session.app.app().settings.max_message_size as usize;
    if text.len() > limit {
        let reason = format!(
            "Message of {} bytes exceeds this app's limit of {limit} bytes",
            text.len()
        );
        return session.error(None, &reason);
    }
    let Ok(msg) = ClientMessage::parse(text) else {
        tracing::debug!("invalid JSON from client");
        return session.error(None, "Received invalid JSON");
    };
    match msg.event.as_str() {
        "pusher:ping" => session.outbox.send(message::pong().into()),
        "pusher:pong" => {}
        "pusher:subscribe" => session.subscribe(&msg).await,
        "pusher:unsubscribe" => session.unsubscribe(&msg).await,
        "pusher:signin" => session.signin(&msg).await,
        event if event.starts_with("client-") => session.client_event(&msg).await,
        event => {
            tracing::debug!(event, "unknown event");
            session.error(None, &format!("Unknown event `{}`", truncate(event, 64)));
        }
    }
}

impl Session {
    fn error(&self, code: Option<u16>, text: &str) {
        self.outbox.send(message::error(code, text).into());
    }

    /// Refuses a subscription: a `pusher:error` as hosted Pusher sends it, then a
    /// `pusher:subscription_error` on the channel so Laravel Echo's `.error()` fires.
    fn refuse_subscription(&self, channel: &str, kind: &str, status: u16, text: &str) {
        tracing::debug!(
            channel = truncate(channel, 64),
            reason = text,
            "subscription refused"
        );
        self.error(None, text);
        self.outbox
            .send(message::subscription_error(channel, kind, text, status).into());
    }

    async fn subscribe(&mut self, msg: &ClientMessage) {
        let Ok(data) = msg.data_as::<SubscribeData>() else {
            return self.error(None, "pusher:subscribe needs data with a channel name");
        };
        let channel = match ChannelName::parse(&data.channel) {
            Ok(channel) => channel,
            Err(error) => {
                let text = format!("Invalid channel name: {error}");
                return self.refuse_subscription(
                    truncate(&data.channel, MAX_ECHOED_CHANNEL_NAME),
                    "InvalidChannel",
                    400,
                    &text,
                );
            }
        };
        if self.channels.contains(channel.as_str()) {
            return self.error(None, &format!("Existing subscription to channel {channel}"));
        }
        let member = match self.authorize(&channel, &data) {
            Ok(member) => member,
            Err(text) => {
                return self.refuse_subscription(channel.as_str(), "AuthError", 401, &text);
            }
        };
        match self.app.subscribe(&self.outbox, &channel, member).await {
            Ok(()) => {
                self.channels.insert(channel.into_string());
            }
            Err(SubscribeError::AlreadySubscribed) => {
                self.error(None, &format!("Existing subscription to channel {channel}"));
            }
            Err(SubscribeError::PresenceFull(max)) => {
                let text = format!("Presence channel {channel} is full ({max} members)");
                self.refuse_subscription(channel.as_str(), "LimitReached", 4100, &text);
            }
            Err(SubscribeError::Unavailable) => {
                let text = format!("Subscription to {channel} cannot be recorded right now; retry");
                self.refuse_subscription(channel.as_str(), "Unavailable", 503, &text);
            }
        }
    }

    /// Checks the subscription's signature and, for presence, returns the member it joins as.
    fn authorize(
        &self,
        channel: &ChannelName,
        data: &SubscribeData,
    ) -> Result<Option<(String, serde_json::Value)>, String> {
        let app = self.app.app();
        match channel.kind() {
            ChannelKind::Public => return Ok(None),
            ChannelKind::ServerToUser => {
                let signed_in = self.user.as_ref().map(|u| u.id.as_str());
                return if signed_in.is_some() && signed_in == channel.server_to_user_id() {
                    Ok(None)
                } else {
                    Err(format!(
                        "Only a connection signed in as that user may subscribe to {channel}"
                    ))
                };
            }
            ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence => {}
        }
        let auth = data.auth.as_deref().unwrap_or_default();
        let channel_data = data.channel_data.as_deref();
        verify_channel_auth(
            &app.key,
            &app.secret,
            self.outbox.socket_id(),
            channel.as_str(),
            channel_data,
            auth,
        )
        .map_err(|e| e.to_string())?;
        if channel.kind() != ChannelKind::Presence {
            return Ok(None);
        }
        let member = match (channel_data, &self.user) {
            (Some(channel_data), _) => {
                let member = PresenceMember::from_channel_data(channel_data)?;
                (member.user_id, member.user_info)
            }
            (None, Some(user)) => (user.id.clone(), user.user_info.clone()),
            (None, None) => {
                return Err("Presence channels need channel_data or a signed-in user".to_owned());
            }
        };
        if member.0.len() > 128 {
            return Err("Presence user_id is longer than 128 characters".to_owned());
        }
        let info_size = member.1.to_string().len();
        if info_size > app.settings.max_presence_member_size as usize {
            let limit = app.settings.max_presence_member_size;
            return Err(format!(
                "Presence user_info is {info_size} bytes, the limit is {limit}"
            ));
        }
        Ok(Some(member))
    }

    async fn unsubscribe(&mut self, msg: &ClientMessage) {
        let Ok(data) = msg.data_as::<UnsubscribeData>() else {
            return self.error(None, "pusher:unsubscribe needs data with a channel name");
        };
        if self.channels.remove(&data.channel) {
            self.app.unsubscribe(&self.outbox, &data.channel).await;
        }
    }

    async fn signin(&mut self, msg: &ClientMessage) {
        let app = self.app.app();
        if !app.settings.user_authentication {
            return self.error(None, "User authentication is disabled for this app");
        }
        let Ok(data) = msg.data_as::<SigninData>() else {
            return self.error(None, "pusher:signin needs data with auth and user_data");
        };
        let socket_id = self.outbox.socket_id();
        if let Err(error) = verify_user_auth(
            &app.key,
            &app.secret,
            socket_id,
            &data.user_data,
            &data.auth,
        ) {
            return self.error(None, &error.to_string());
        }
        let mut user = match SignedInUser::from_user_data(&data.user_data) {
            Ok(user) => user,
            Err(text) => return self.error(None, text),
        };
        match &self.user {
            Some(current) if current.id != user.id => {
                return self.error(None, "This connection is already signed in as another user");
            }
            Some(_) => {
                return self
                    .outbox
                    .send(message::signin_success(&data.user_data).into());
            }
            None => {}
        }
        let over_limit = user.watchlist.len() > MAX_WATCHLIST;
        user.watchlist.truncate(MAX_WATCHLIST);
        let mut replies: Vec<Frame> = vec![message::signin_success(&data.user_data).into()];
        if over_limit {
            let code = CloseCode::WatchlistLimit;
            replies.push(message::error(Some(code.code()), code.message()).into());
        }
        let signed_in = self
            .app
            .signin(&self.outbox, &user.id, &user.watchlist, replies)
            .await;
        match signed_in {
            Ok(()) => self.user = Some(user),
            Err(_) => self.error(None, "Sign-in cannot be recorded right now; retry"),
        }
    }

    async fn client_event(&mut self, msg: &ClientMessage) {
        let app = self.app.app();
        if !app.settings.client_events {
            return self.error(None, "Client events are disabled for this app");
        }
        let Some(name) = msg.channel.as_deref() else {
            return self.error(None, "Client event has no channel");
        };
        let Some(channel) = self
            .app
            .channel(name)
            .filter(|_| self.channels.contains(name))
        else {
            return self.error(
                None,
                &format!(
                    "Client event rejected: not subscribed to {}",
                    truncate(name, 200)
                ),
            );
        };
        if !channel.name().kind().allows_client_events() {
            return self.error(
                None,
                "Client event rejected - only supported on private and presence channels",
            );
        }
        if let Err(text) = validate_event_name(&msg.event) {
            return self.error(None, text);
        }
        let data = msg.raw_data();
        if data.len() > app.settings.max_event_size as usize {
            return self.error(
                None,
                &format!(
                    "Client event data exceeds {} bytes",
                    app.settings.max_event_size
                ),
            );
        }
        if !self.client_events.try_take(app.settings.client_event_rate) {
            let code = CloseCode::ClientEventRateLimit;
            return self.error(Some(code.code()), code.message());
        }
        let user_id = channel.user_id_of(self.outbox.id());
        let frame = message::encode(&msg.event, Some(name), Data::Json(data), user_id.as_deref());
        let sent = self
            .app
            .client_event(&channel, frame.into(), &self.outbox)
            .await;
        if sent.is_err() {
            self.error(None, "Client event reached this server's subscribers only");
        }
        let socket_id = self.outbox.socket_id();
        let event = WebhookEvent::client_event(name, &msg.event, data, socket_id, user_id);
        self.app.notify_webhook(event);
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
