//! The task that owns the WebSocket: it reads frames, runs commands from the handles, keeps
//! the connection alive with pings, and reconnects and re-subscribes when it ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use comnestor_protocol::message::{self, Data, PresenceMember, ServerMessage, SubscribeData};
use comnestor_protocol::{ChannelKind, ChannelName, CloseCode};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::backoff::Next;
use super::{
    AuthRequest, Authorizer, ChannelEvent, ChannelShared, ConnectionState, Members, Options,
    SignIn, UserAuthenticator,
};
use crate::credentials::{ChannelAuth, UserAuth};
use crate::encryption::ChannelKey;
use crate::error::{BoxError, Error, ErrorKind, Result};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Timers are capped so that no configured or announced value overflows an `Instant`.
const MAX_TIMER: Duration = Duration::from_secs(24 * 60 * 60);

/// What the handles ask the task to do.
pub(crate) enum Command {
    Subscribe {
        channel: ChannelName,
        shared: Arc<ChannelShared>,
        ready: oneshot::Sender<Result<mpsc::Receiver<ChannelEvent>, ErrorKind>>,
    },
    Unsubscribe {
        channel: String,
        shared: Arc<ChannelShared>,
    },
    ClientEvent {
        channel: String,
        event: String,
        data: Value,
        done: oneshot::Sender<Result<(), ErrorKind>>,
    },
    Close,
}

/// An open connection after `pusher:connection_established`.
pub(crate) struct Connected {
    socket: Socket,
    socket_id: String,
    activity_timeout: Duration,
}

/// A connection attempt that failed, with the close code if the server sent one.
struct Failure {
    code: Option<u16>,
    kind: ErrorKind,
}

/// Why [`Task::serve`] returned.
enum Ended {
    Closed { code: Option<u16>, reason: String },
    Stopped,
}

/// Who signs what: channel subscriptions, and the user sign-in.
pub(crate) struct Auth {
    pub channels: Option<Arc<dyn Authorizer>>,
    pub user: Option<Arc<dyn UserAuthenticator>>,
    pub sign_in: watch::Sender<SignIn>,
}

/// The result of an authorizer or authenticator call, tagged with the connection it was made
/// for.
enum Authorized {
    Channel {
        channel: String,
        generation: u64,
        result: std::result::Result<ChannelAuth, BoxError>,
    },
    User {
        generation: u64,
        result: std::result::Result<UserAuth, BoxError>,
    },
}

type Ready = oneshot::Sender<Result<mpsc::Receiver<ChannelEvent>, ErrorKind>>;

/// One channel this subscriber wants, whether or not it is subscribed right now.
struct Entry {
    name: ChannelName,
    shared: Arc<ChannelShared>,
    events: mpsc::Sender<ChannelEvent>,
    /// Until the first confirmation: where to answer `subscribe`, and the stream to hand over.
    ready: Option<(Ready, mpsc::Receiver<ChannelEvent>)>,
    /// The key of an encrypted channel, from its authorization.
    key: Option<ChannelKey>,
    /// This subscriber's user id in a presence channel.
    me: Option<String>,
}

pub(crate) struct Task {
    url: String,
    auth: Auth,
    options: Options,
    state: watch::Sender<ConnectionState>,
    channels: HashMap<String, Entry>,
    /// Counts connections, so authorizations made for an old socket id are ignored.
    generation: u64,
    authorized: mpsc::UnboundedSender<Authorized>,
    authorized_rx: Option<mpsc::UnboundedReceiver<Authorized>>,
    /// The last `pusher:error` code, which explains a close that carries no code.
    last_error: Option<(u16, String)>,
    /// The user this connection is signed in as.
    signed_in: Option<String>,
    /// Whether a `pusher:signin` awaits its answer.
    signing_in: bool,
}

impl Task {
    pub(crate) fn new(
        url: String,
        auth: Auth,
        options: Options,
        state: watch::Sender<ConnectionState>,
    ) -> Self {
        let (authorized, authorized_rx) = mpsc::unbounded_channel();
        Self {
            url,
            auth,
            options,
            state,
            channels: HashMap::new(),
            generation: 0,
            authorized,
            authorized_rx: Some(authorized_rx),
            last_error: None,
            signed_in: None,
            signing_in: false,
        }
    }

    pub(crate) async fn first_connection(&self) -> Result<Connected> {
        let connected = self
            .open()
            .await
            .map_err(|failure| Error::new("Subscriber::connect", failure.kind))?;
        self.state.send_replace(ConnectionState::Connected {
            socket_id: connected.socket_id.clone(),
        });
        Ok(connected)
    }

    /// Opens a connection and waits for `pusher:connection_established`.
    async fn open(&self) -> std::result::Result<Connected, Failure> {
        let attempt = async {
            let (mut socket, _) = connect_async(self.url.as_str())
                .await
                .map_err(|e| Failure {
                    code: None,
                    kind: e.into(),
                })?;
            handshake(&mut socket)
                .await
                .map(|(socket_id, activity)| Connected {
                    socket,
                    socket_id,
                    activity_timeout: activity,
                })
        };
        match timeout(self.options.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Failure {
                code: None,
                kind: ErrorKind::Timeout("no pusher:connection_established in time"),
            }),
        }
    }

    /// Serves connections until the server refuses to reconnect or the handles are gone.
    pub(crate) async fn run(
        mut self,
        first: Connected,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let Some(mut authorized) = self.authorized_rx.take() else {
            return;
        };
        let mut next = Some(first);
        while let Some(connected) = next.take() {
            let ended = self.serve(connected, &mut commands, &mut authorized).await;
            let Ended::Closed { code, reason } = ended else {
                self.finish(None, "closed by the application".into());
                return;
            };
            next = self.reconnect(code, reason, &mut commands).await;
        }
    }

    /// Waits and retries until a connection opens; `None` when it is time to stop.
    async fn reconnect(
        &mut self,
        mut code: Option<u16>,
        mut reason: String,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Option<Connected> {
        let mut failures = 0;
        loop {
            let delay = match self.options.backoff.next(code, failures) {
                Next::GiveUp => {
                    self.finish(code, reason);
                    return None;
                }
                Next::Reconnect(delay) => delay,
            };
            failures += 1;
            let state = ConnectionState::Reconnecting {
                attempt: failures,
                delay,
                code,
            };
            self.state.send_replace(state);
            if !self.wait_disconnected(delay, commands).await {
                self.finish(None, "closed by the application".into());
                return None;
            }
            match self.open().await {
                Ok(connected) => return Some(connected),
                Err(failure) => {
                    code = failure.code;
                    reason = failure.kind.to_string();
                }
            }
        }
    }

    /// Runs commands until `delay` has passed; `false` when the subscriber was closed.
    async fn wait_disconnected(
        &mut self,
        delay: Duration,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> bool {
        let until = sleep(delay);
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => return true,
                command = commands.recv() => match command {
                    None | Some(Command::Close) => return false,
                    Some(command) => self.on_command(None, "", command).await,
                },
            }
        }
    }

    /// Serves one connection until it ends.
    async fn serve(
        &mut self,
        connected: Connected,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        authorized: &mut mpsc::UnboundedReceiver<Authorized>,
    ) -> Ended {
        let Connected {
            mut socket,
            socket_id,
            activity_timeout,
        } = connected;
        self.generation += 1;
        self.last_error = None;
        self.signed_in = None;
        self.state.send_replace(ConnectionState::Connected {
            socket_id: socket_id.clone(),
        });
        self.start_sign_in(&socket_id);
        let names: Vec<ChannelName> = self.channels.values().map(|e| e.name.clone()).collect();
        for name in names {
            self.start_subscribe(&mut socket, &socket_id, name).await;
        }

        let idle = activity_timeout
            .min(self.options.activity_timeout)
            .min(MAX_TIMER);
        let pong_timeout = self.options.pong_timeout.min(MAX_TIMER);
        let mut deadline = Instant::now() + idle;
        let mut awaiting_pong = false;
        loop {
            tokio::select! {
                frame = socket.next() => {
                    deadline = Instant::now() + idle;
                    awaiting_pong = false;
                    if let Some(ended) = self.on_frame(&mut socket, frame).await {
                        return ended;
                    }
                }
                command = commands.recv() => match command {
                    None | Some(Command::Close) => {
                        let _ = socket.close(None).await;
                        return Ended::Stopped;
                    }
                    Some(command) => self.on_command(Some(&mut socket), &socket_id, command).await,
                },
                Some(result) = authorized.recv() => self.on_authorized(&mut socket, result).await,
                () = sleep_until(deadline) => {
                    if awaiting_pong {
                        let code = CloseCode::PongNotReceived;
                        return Ended::Closed { code: Some(code.code()), reason: code.message().into() };
                    }
                    let ping = message::encode("pusher:ping", None, Data::Json("{}"), None);
                    let _ = send(&mut socket, ping).await;
                    awaiting_pong = true;
                    deadline = Instant::now() + pong_timeout;
                }
            }
        }
    }

    /// Handles one read from the socket; `Some` when the connection is over.
    async fn on_frame(
        &mut self,
        socket: &mut Socket,
        frame: Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<Ended> {
        let last_code = self.last_error.as_ref().map(|(code, _)| *code);
        match frame {
            Some(Ok(Message::Text(text))) => {
                self.on_text(socket, text.as_str()).await;
                None
            }
            Some(Ok(Message::Close(frame))) => {
                let code = frame.as_ref().map(|f| u16::from(f.code)).or(last_code);
                let reason = frame.map_or_else(String::new, |f| f.reason.to_string());
                Some(Ended::Closed { code, reason })
            }
            Some(Ok(_)) => None,
            Some(Err(error)) => Some(Ended::Closed {
                code: last_code,
                reason: error.to_string(),
            }),
            None => Some(Ended::Closed {
                code: last_code,
                reason: "the connection ended".into(),
            }),
        }
    }

    async fn on_text(&mut self, socket: &mut Socket, text: &str) {
        // A frame that is not a Pusher message is ignored rather than ending the connection.
        let Ok(message) = ServerMessage::parse(text) else {
            return;
        };
        let channel = message.channel.clone().unwrap_or_default();
        match message.event.as_str() {
            "pusher:ping" => {
                let pong = message::encode("pusher:pong", None, Data::Json("{}"), None);
                let _ = send(socket, pong).await;
            }
            "pusher:pong" => {}
            "pusher:error" => self.on_error(&message),
            "pusher:signin_success" => self.on_signed_in(socket, &message).await,
            "pusher_internal:subscription_succeeded" => self.on_subscribed(socket, &message).await,
            "pusher_internal:member_added" => self.on_member_added(&message),
            "pusher_internal:member_removed" => self.on_member_removed(&message),
            "pusher_internal:subscription_count" => {
                self.deliver(
                    &channel,
                    "pusher:subscription_count",
                    message.decoded_data(),
                    None,
                );
            }
            "pusher:subscription_error" => self.on_rejected(&message),
            _ => self.on_event(message),
        }
    }

    fn on_error(&mut self, message: &ServerMessage) {
        let data = message.decoded_data();
        let text = data["message"].as_str().unwrap_or_default().to_owned();
        if self.signing_in && message.channel.is_none() {
            // The server answers a refused sign-in with a connection-level error.
            self.signing_in = false;
            let failed = SignIn::Failed {
                reason: text.clone(),
            };
            self.auth.sign_in.send_replace(failed);
        }
        if let Some(code) = data["code"].as_u64().and_then(|c| u16::try_from(c).ok()) {
            self.last_error = Some((code, text));
        }
        if let Some(channel) = &message.channel {
            self.deliver(channel, "pusher:error", data, None);
        }
    }

    async fn on_subscribed(&mut self, socket: &mut Socket, message: &ServerMessage) {
        let channel = message.channel.clone().unwrap_or_default();
        let Some(entry) = self.channels.get_mut(&channel) else {
            return;
        };
        let mut data = message.decoded_data();
        if entry.name.kind() == ChannelKind::Presence {
            let hash = data
                .get_mut("presence")
                .and_then(|p| p.get_mut("hash"))
                .map_or(Value::Null, Value::take);
            let members = hash
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            entry.shared.set_members(Members {
                me: entry.me.clone(),
                members,
            });
            data = hash;
        }
        if let Some((ready, events)) = entry.ready.take()
            && ready.send(Ok(events)).is_err()
        {
            // The `subscribe` call was cancelled: nobody wants this channel any more.
            self.channels.remove(&channel);
            let _ = send(socket, unsubscribe_frame(&channel)).await;
            return;
        }
        self.deliver(&channel, "pusher:subscription_succeeded", data, None);
    }

    fn on_member_added(&mut self, message: &ServerMessage) {
        let channel = message.channel.clone().unwrap_or_default();
        let data = message.decoded_data();
        let Ok(member) = PresenceMember::from_channel_data(&data.to_string()) else {
            return;
        };
        if let Some(entry) = self.channels.get(&channel) {
            entry.shared.update_members(|m| {
                m.members
                    .insert(member.user_id.clone(), member.user_info.clone());
            });
        }
        self.deliver(&channel, "pusher:member_added", data, None);
    }

    fn on_member_removed(&mut self, message: &ServerMessage) {
        let channel = message.channel.clone().unwrap_or_default();
        let mut data = message.decoded_data();
        let user_id = match &data["user_id"] {
            Value::String(id) => id.clone(),
            Value::Number(id) => id.to_string(),
            _ => return,
        };
        if let Some(entry) = self.channels.get(&channel) {
            let mut info = Value::Null;
            entry.shared.update_members(|m| {
                info = m.members.remove(&user_id).unwrap_or(Value::Null);
            });
            data["user_info"] = info;
        }
        self.deliver(&channel, "pusher:member_removed", data, None);
    }

    fn on_rejected(&mut self, message: &ServerMessage) {
        let channel = message.channel.clone().unwrap_or_default();
        let data = message.decoded_data();
        let text = data["error"]
            .as_str()
            .map_or_else(|| data.to_string(), str::to_owned);
        self.fail(&channel, ErrorKind::SubscriptionRejected(text), data);
    }

    /// A subscription failed: the first `subscribe` call gets the error; a re-subscription
    /// after a reconnect reports it on the stream as `pusher:subscription_error`.
    fn fail(&mut self, channel: &str, kind: ErrorKind, data: Value) {
        let Some(entry) = self.channels.get_mut(channel) else {
            return;
        };
        if let Some((ready, _)) = entry.ready.take() {
            let _ = ready.send(Err(kind));
            self.channels.remove(channel);
            return;
        }
        self.deliver(channel, "pusher:subscription_error", data, None);
    }

    fn on_event(&mut self, message: ServerMessage) {
        let Some(channel) = message.channel.clone() else {
            return;
        };
        let Some(entry) = self.channels.get(&channel) else {
            return;
        };
        let internal = message.event.starts_with("pusher");
        let (event, data) = match (&entry.key, internal) {
            (Some(key), false) => decrypt(key, &message),
            _ => (message.event.clone(), message.decoded_data()),
        };
        self.deliver(&channel, &event, data, message.user_id);
    }

    /// Queues an event on its subscription without ever waiting for the reader.
    fn deliver(&mut self, channel: &str, event: &str, data: Value, user_id: Option<String>) {
        let Some(entry) = self.channels.get(channel) else {
            return;
        };
        let event = ChannelEvent {
            channel: channel.to_owned(),
            event: event.to_owned(),
            data,
            user_id,
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = entry.events.try_send(event) {
            entry.shared.count_dropped();
        }
    }

    /// Authorizes (in a separate task, so frames keep flowing) or directly subscribes.
    async fn start_subscribe(&mut self, socket: &mut Socket, socket_id: &str, name: ChannelName) {
        if name.kind() == ChannelKind::ServerToUser && self.signed_in.is_none() {
            // Subscribed once `pusher:signin_success` arrives on this connection.
            return;
        }
        if !name.kind().requires_auth() {
            let data = SubscribeData {
                channel: name.as_str().to_owned(),
                auth: None,
                channel_data: None,
            };
            let _ = send(socket, subscribe_frame(&data)).await;
            return;
        }
        let Some(authorizer) = self.auth.channels.clone() else {
            let kind = ErrorKind::InvalidArgument(format!("{name} needs an authorizer"));
            self.fail(name.as_str(), kind, json!({"type": "AuthError"}));
            return;
        };
        let request = AuthRequest {
            socket_id: socket_id.to_owned(),
            channel: name.as_str().to_owned(),
        };
        let generation = self.generation;
        let results = self.authorized.clone();
        tokio::spawn(async move {
            let channel = request.channel.clone();
            let result = authorizer.authorize(request).await;
            let _ = results.send(Authorized::Channel {
                channel,
                generation,
                result,
            });
        });
    }

    /// Asks the user authenticator, if there is one, to sign this connection in.
    fn start_sign_in(&mut self, socket_id: &str) {
        let Some(authenticator) = self.auth.user.clone() else {
            return;
        };
        self.signing_in = true;
        self.auth.sign_in.send_replace(SignIn::Pending);
        let (socket_id, generation) = (socket_id.to_owned(), self.generation);
        let results = self.authorized.clone();
        tokio::spawn(async move {
            let result = authenticator.authenticate(socket_id).await;
            let _ = results.send(Authorized::User { generation, result });
        });
    }

    async fn on_user_auth(
        &mut self,
        socket: &mut Socket,
        result: std::result::Result<UserAuth, BoxError>,
    ) {
        match result {
            Ok(auth) => {
                let data = serde_json::to_string(&message::SigninData {
                    auth: auth.auth,
                    user_data: auth.user_data,
                })
                .unwrap_or_default();
                let frame = message::encode("pusher:signin", None, Data::Json(&data), None);
                let _ = send(socket, frame).await;
            }
            Err(error) => {
                self.signing_in = false;
                let failed = SignIn::Failed {
                    reason: error.to_string(),
                };
                self.auth.sign_in.send_replace(failed);
            }
        }
    }

    async fn on_signed_in(&mut self, socket: &mut Socket, message: &ServerMessage) {
        let data = message.decoded_data();
        let user_data = data["user_data"].as_str().unwrap_or_default();
        let Ok(user) = message::SignedInUser::from_user_data(user_data) else {
            return;
        };
        self.signing_in = false;
        self.signed_in = Some(user.id.clone());
        self.auth
            .sign_in
            .send_replace(SignIn::SignedIn { user_id: user.id });
        let socket_id = match &*self.state.borrow() {
            ConnectionState::Connected { socket_id } => socket_id.clone(),
            _ => return,
        };
        let waiting: Vec<ChannelName> = self
            .channels
            .values()
            .filter(|e| e.name.kind() == ChannelKind::ServerToUser)
            .map(|e| e.name.clone())
            .collect();
        for name in waiting {
            self.start_subscribe(socket, &socket_id, name).await;
        }
    }

    async fn on_authorized(&mut self, socket: &mut Socket, authorized: Authorized) {
        let (channel, result) = match authorized {
            Authorized::Channel {
                generation,
                channel,
                result,
            } if generation == self.generation => (channel, result),
            Authorized::User { generation, result } if generation == self.generation => {
                return self.on_user_auth(socket, result).await;
            }
            _ => return,
        };
        let auth = match result {
            Ok(auth) => auth,
            Err(error) => {
                let data = json!({"type": "AuthError", "error": error.to_string()});
                self.fail(&channel, ErrorKind::Authorizer(error), data);
                return;
            }
        };
        match self.accept_auth(&channel, &auth) {
            Ok(()) => {
                let data = SubscribeData {
                    channel,
                    auth: Some(auth.auth),
                    channel_data: auth.channel_data,
                };
                let _ = send(socket, subscribe_frame(&data)).await;
            }
            Err(kind) => {
                let data = json!({"type": "AuthError", "error": kind.to_string()});
                self.fail(&channel, kind, data);
            }
        }
    }

    /// Keeps what an authorization says about the channel: its key, the member's id.
    fn accept_auth(&mut self, channel: &str, auth: &ChannelAuth) -> Result<(), ErrorKind> {
        let Some(entry) = self.channels.get_mut(channel) else {
            return Ok(());
        };
        match entry.name.kind() {
            ChannelKind::PrivateEncrypted => {
                let secret = auth.shared_secret.as_deref().ok_or(ErrorKind::Decrypt(
                    "the authorization of an encrypted channel has no shared_secret",
                ))?;
                entry.key = Some(ChannelKey::from_shared_secret(secret)?);
            }
            ChannelKind::Presence => {
                entry.me = auth
                    .channel_data
                    .as_deref()
                    .and_then(|d| PresenceMember::from_channel_data(d).ok())
                    .map(|m| m.user_id);
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_command(&mut self, socket: Option<&mut Socket>, socket_id: &str, command: Command) {
        match command {
            Command::Subscribe {
                channel,
                shared,
                ready,
            } => {
                self.add_channel(socket, socket_id, channel, shared, ready)
                    .await
            }
            Command::Unsubscribe { channel, shared } => {
                let ours = self
                    .channels
                    .get(&channel)
                    .is_some_and(|e| Arc::ptr_eq(&e.shared, &shared));
                if ours {
                    self.channels.remove(&channel);
                    if let Some(socket) = socket {
                        let _ = send(socket, unsubscribe_frame(&channel)).await;
                    }
                }
            }
            Command::ClientEvent {
                channel,
                event,
                data,
                done,
            } => {
                let result = self.client_event(socket, &channel, &event, &data).await;
                let _ = done.send(result);
            }
            Command::Close => {}
        }
    }

    async fn add_channel(
        &mut self,
        socket: Option<&mut Socket>,
        socket_id: &str,
        name: ChannelName,
        shared: Arc<ChannelShared>,
        ready: Ready,
    ) {
        if self.channels.contains_key(name.as_str()) {
            let message = format!("{name} is already subscribed by this subscriber");
            let _ = ready.send(Err(ErrorKind::InvalidArgument(message)));
            return;
        }
        let (events, receiver) = mpsc::channel(self.options.buffer);
        let entry = Entry {
            name: name.clone(),
            shared,
            events,
            ready: Some((ready, receiver)),
            key: None,
            me: None,
        };
        self.channels.insert(name.as_str().to_owned(), entry);
        if let Some(socket) = socket {
            self.start_subscribe(socket, socket_id, name).await;
        }
    }

    async fn client_event(
        &mut self,
        socket: Option<&mut Socket>,
        channel: &str,
        event: &str,
        data: &Value,
    ) -> Result<(), ErrorKind> {
        let invalid = |message: String| Err(ErrorKind::InvalidArgument(message));
        if !event.starts_with("client-") {
            return invalid(format!(
                "client event names start with client-, not {event}"
            ));
        }
        let Some(entry) = self.channels.get(channel) else {
            return invalid(format!("{channel} is not subscribed"));
        };
        if !entry.name.kind().allows_client_events() {
            return invalid(format!("client events are not allowed on {channel}"));
        }
        let Some(socket) = socket else {
            return Err(ErrorKind::NotConnected);
        };
        let frame = message::encode(event, Some(channel), Data::Json(&data.to_string()), None);
        send(socket, frame).await
    }

    /// Ends for good: the state becomes `Closed` and every stream ends.
    fn finish(&mut self, code: Option<u16>, reason: String) {
        for (_, entry) in self.channels.drain() {
            if let Some((ready, _)) = entry.ready {
                let kind = match code {
                    Some(code) => ErrorKind::Refused {
                        code,
                        reason: reason.clone(),
                    },
                    None => ErrorKind::SubscriberClosed,
                };
                let _ = ready.send(Err(kind));
            }
        }
        self.state
            .send_replace(ConnectionState::Closed { code, reason });
    }
}

/// Reads frames until `pusher:connection_established`; returns the socket id and the
/// server's activity timeout.
async fn handshake(socket: &mut Socket) -> std::result::Result<(String, Duration), Failure> {
    let mut last_error: Option<(u16, String)> = None;
    loop {
        let frame = socket.next().await;
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let code = frame.as_ref().map(|f| u16::from(f.code));
                let reason = frame.map_or_else(String::new, |f| f.reason.to_string());
                return Err(refusal(code, reason, last_error));
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                return Err(Failure {
                    code: last_error.map(|(code, _)| code),
                    kind: error.into(),
                });
            }
            None => return Err(refusal(None, "the connection ended".into(), last_error)),
        };
        let Ok(message) = ServerMessage::parse(text.as_str()) else {
            continue;
        };
        let data = message.decoded_data();
        match message.event.as_str() {
            "pusher:connection_established" => {
                let socket_id = data["socket_id"].as_str().unwrap_or_default().to_owned();
                if !comnestor_protocol::is_valid_socket_id(&socket_id) {
                    let reason = format!("socket_id {socket_id:?} in the handshake");
                    return Err(Failure {
                        code: None,
                        kind: ErrorKind::Protocol(reason),
                    });
                }
                let seconds = data["activity_timeout"].as_u64().filter(|s| *s > 0);
                let activity = Duration::from_secs(seconds.unwrap_or(120));
                return Ok((socket_id, activity));
            }
            "pusher:error" => {
                let code = data["code"].as_u64().and_then(|c| u16::try_from(c).ok());
                let text = data["message"].as_str().unwrap_or_default().to_owned();
                last_error = code.map(|code| (code, text));
            }
            _ => {}
        }
    }
}

/// The failure of a handshake that ended: a Pusher code (from the close frame, or else from
/// a `pusher:error` before it) makes it a refusal.
fn refusal(code: Option<u16>, reason: String, last_error: Option<(u16, String)>) -> Failure {
    let (code, reason) = match (code, last_error) {
        (Some(code), _) if code >= 4000 => (Some(code), reason),
        (_, Some((code, text))) => (Some(code), text),
        (code, None) => (code, reason),
    };
    let kind = match code {
        Some(code) if code >= 4000 => ErrorKind::Refused { code, reason },
        _ => ErrorKind::Protocol(format!(
            "the connection closed before pusher:connection_established ({reason})"
        )),
    };
    Failure { code, kind }
}

/// Opens an encrypted event; a failure becomes a `pusher:decryption_error` event.
fn decrypt(key: &ChannelKey, message: &ServerMessage) -> (String, Value) {
    let raw = match &message.data {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    match key.decrypt(&raw) {
        Ok(plaintext) => {
            let text = String::from_utf8_lossy(&plaintext).into_owned();
            let data = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (message.event.clone(), data)
        }
        Err(kind) => {
            let data = json!({"event": message.event, "error": kind.to_string()});
            ("pusher:decryption_error".to_owned(), data)
        }
    }
}

fn subscribe_frame(data: &SubscribeData) -> String {
    let json = serde_json::to_string(data).unwrap_or_default();
    message::encode("pusher:subscribe", None, Data::Json(&json), None)
}

fn unsubscribe_frame(channel: &str) -> String {
    let json = json!({ "channel": channel }).to_string();
    message::encode("pusher:unsubscribe", None, Data::Json(&json), None)
}

async fn send(socket: &mut Socket, frame: String) -> Result<(), ErrorKind> {
    socket
        .send(Message::Text(frame.into()))
        .await
        .map_err(ErrorKind::from)
}
