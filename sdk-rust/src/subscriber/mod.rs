//! A WebSocket subscriber: connects to `/app/{key}`, subscribes to channels of every kind and
//! hands their events out as [`Stream`]s.
//!
//! One background task owns the connection. It answers pings, pings the server after
//! silence, and reconnects when the connection ends, as the close code advises: never after
//! 4000–4099, after a backoff of at least a second after 41xx, at once after 42xx, and after
//! the configured [`Backoff`] otherwise. After each reconnect it authorizes and subscribes
//! every channel again, under the new socket id.
//!
//! The [`Subscriber`] handle and every [`Subscription`] keep the task alive; when the last of
//! them is dropped, the task closes the connection.
//!
//! With a [`UserAuthenticator`] ([`SubscriberBuilder::sign_in`]) the connection signs in as a
//! user after each connect, and [`Subscriber::subscribe_user`] receives what the backend sends
//! with [`Client::send_to_user`](crate::Client::send_to_user).
//!
//! Known shortcomings: a 4000 close ("use TLS") is treated as final instead of retrying over
//! `wss://`, and watchlist events are not surfaced.

mod authorizer;
mod backoff;
mod connection;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use comnestor_protocol::{ChannelKind, ChannelName};
use futures_util::Stream;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

pub use authorizer::{
    AuthFuture, AuthRequest, Authorizer, HttpAuthorizer, LocalAuthorizer, UserAuthFuture,
    UserAuthenticator,
};
pub use backoff::Backoff;

use crate::error::{Error, ErrorKind, Result};
use connection::Command;

/// An event received on a channel.
///
/// Besides the channel's own events, the stream carries what pusher-js reports on a channel:
/// `pusher:subscription_succeeded` (after the first subscription and after each
/// re-subscription; for presence channels `data` is the member hash),
/// `pusher:member_added` and `pusher:member_removed` (`data` is `{"user_id", "user_info"}`),
/// `pusher:subscription_count`, `pusher:cache_miss`, `pusher:subscription_error` and
/// `pusher:error`. On encrypted channels, an event whose data cannot be decrypted arrives as
/// `pusher:decryption_error` with `{"event": <name>, "error": <why>}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelEvent {
    pub channel: String,
    pub event: String,
    /// The data, decoded: JSON when it parses as JSON, otherwise the string as sent.
    pub data: Value,
    /// On presence channels, the member that sent a client event.
    pub user_id: Option<String>,
}

/// Where the connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    Connected {
        socket_id: String,
    },
    /// The connection ended; the next attempt starts after `delay`.
    Reconnecting {
        attempt: u32,
        delay: Duration,
        /// The close code of the connection that ended, if it sent one.
        code: Option<u16>,
    },
    /// Final: the server refused the connection (4000–4099), or the subscriber was closed.
    Closed {
        code: Option<u16>,
        reason: String,
    },
}

/// Whether the connection is signed in as a user (`pusher:signin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    /// No user authenticator, or signing in on the current connection is under way.
    Pending,
    SignedIn {
        user_id: String,
    },
    /// The authenticator or the server refused; retried after the next reconnect.
    Failed {
        reason: String,
    },
}

/// The members of a presence channel, as the server reported them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Members {
    /// This subscriber's own user id in the channel.
    pub me: Option<String>,
    /// `user_id` → `user_info` (`null` when the member has none).
    pub members: BTreeMap<String, Value>,
}

/// Settings of a [`Subscriber`].
#[derive(Clone)]
pub struct SubscriberBuilder {
    url: String,
    key: String,
    authorizer: Option<Arc<dyn Authorizer>>,
    user_authenticator: Option<Arc<dyn UserAuthenticator>>,
    options: Options,
}

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub backoff: Backoff,
    pub activity_timeout: Duration,
    pub pong_timeout: Duration,
    pub connect_timeout: Duration,
    pub buffer: usize,
}

impl SubscriberBuilder {
    /// Authorizes private, presence and encrypted channels. Without one, subscribing to them
    /// fails.
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.authorizer = Some(Arc::new(authorizer));
        self
    }

    /// Signs every connection in as the user `authenticator` vouches for.
    pub fn sign_in(mut self, authenticator: impl UserAuthenticator) -> Self {
        self.user_authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Backoff between reconnect attempts (default 1 s doubling to 30 s).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.options.backoff = backoff;
        self
    }

    /// Silence after which the subscriber pings the server (default 120 s; the server's own
    /// `activity_timeout` wins when it is shorter).
    pub fn activity_timeout(mut self, timeout: Duration) -> Self {
        self.options.activity_timeout = timeout;
        self
    }

    /// How long to wait for a pong before reconnecting (default 30 s).
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.options.pong_timeout = timeout;
        self
    }

    /// How long one connection attempt may take, up to `pusher:connection_established`
    /// (default 15 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// Events buffered per subscription (default 1024). When a subscription's buffer is full,
    /// further events for it are dropped and counted by [`Subscription::dropped`]; the
    /// connection itself never waits for a slow reader.
    pub fn buffer(mut self, events: usize) -> Self {
        self.options.buffer = events.max(1);
        self
    }

    /// Connects, and returns once the server has sent `pusher:connection_established`.
    ///
    /// A failure of this first attempt is returned, not retried.
    ///
    /// Cancel safety: dropping the future abandons the attempt; nothing is left running.
    pub async fn connect(self) -> Result<Subscriber> {
        let url = socket_url(&self.url, &self.key)?;
        crate::tls::ensure_crypto_provider();
        let (commands, receiver) = mpsc::unbounded_channel();
        let (state, states) = watch::channel(ConnectionState::Closed {
            code: None,
            reason: "not connected yet".into(),
        });
        let (sign_in, sign_ins) = watch::channel(SignIn::Pending);
        let can_sign_in = self.user_authenticator.is_some();
        let auth = connection::Auth {
            channels: self.authorizer.clone(),
            user: self.user_authenticator,
            sign_in,
        };
        let task = connection::Task::new(url, auth, self.options, state);
        let connected = task.first_connection().await?;
        tokio::spawn(task.run(connected, receiver));
        Ok(Subscriber {
            shared: Arc::new(Shared {
                commands,
                states,
                has_authorizer: self.authorizer.is_some(),
                can_sign_in,
                sign_ins,
            }),
        })
    }
}

impl crate::Client {
    /// A subscriber builder for this client's server and app that signs its own
    /// subscriptions with the client's credentials ([`LocalAuthorizer`]): for backends that
    /// listen to channels. Presence channels need [`SubscriberBuilder::authorizer`] with a
    /// [`LocalAuthorizer::presence_user`].
    pub fn subscriber(&self) -> SubscriberBuilder {
        Subscriber::builder(self.base_url(), self.credentials().key())
            .authorizer(LocalAuthorizer::new(self.credentials().clone()))
    }
}

/// `ws(s)://host/app/{key}?protocol=7&client=rust&version=…` from an `http(s)` or `ws(s)` base.
fn socket_url(base: &str, key: &str) -> Result<String> {
    let call = "Subscriber::connect";
    let config = |message: String| Error::new(call, ErrorKind::Config(message));
    let mut url = url::Url::parse(base).map_err(|e| config(format!("URL {base:?}: {e}")))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => return Err(config(format!("unsupported URL scheme {other}"))),
    };
    url.set_scheme(scheme)
        .map_err(|()| config("cannot set the URL scheme".into()))?;
    let prefix = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{prefix}/app/{key}"));
    let version = env!("CARGO_PKG_VERSION");
    url.set_query(Some(&format!(
        "protocol={}&client=rust&version={version}",
        comnestor_protocol::PROTOCOL_VERSION
    )));
    Ok(url.into())
}

/// A connection to a server, shared by clones. See the [module docs](self).
#[derive(Clone)]
pub struct Subscriber {
    shared: Arc<Shared>,
}

struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    states: watch::Receiver<ConnectionState>,
    has_authorizer: bool,
    can_sign_in: bool,
    sign_ins: watch::Receiver<SignIn>,
}

impl Subscriber {
    /// Starts configuring a subscriber for app `key` at `url`, which is the server's base URL
    /// (`http://host:port` or `ws://host:port`; `https`/`wss` for TLS).
    pub fn builder(url: impl Into<String>, key: impl Into<String>) -> SubscriberBuilder {
        SubscriberBuilder {
            url: url.into(),
            key: key.into(),
            authorizer: None,
            user_authenticator: None,
            options: Options {
                backoff: Backoff::default(),
                activity_timeout: Duration::from_secs(120),
                pong_timeout: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(15),
                buffer: 1024,
            },
        }
    }

    pub fn state(&self) -> ConnectionState {
        self.shared.states.borrow().clone()
    }

    /// A receiver of state changes, to wait for a reconnect, say.
    pub fn states(&self) -> watch::Receiver<ConnectionState> {
        self.shared.states.clone()
    }

    /// The current socket id, while connected.
    pub fn socket_id(&self) -> Option<String> {
        match &*self.shared.states.borrow() {
            ConnectionState::Connected { socket_id } => Some(socket_id.clone()),
            _ => None,
        }
    }

    /// Subscribes to `channel` and returns once the server confirmed the subscription.
    ///
    /// While disconnected, the subscription waits for the next connection. It is refused when
    /// the authorizer fails or the server rejects it, and when the channel is already
    /// subscribed by this subscriber.
    ///
    /// Cancel safety: if the future is dropped before it completes, the subscription is
    /// abandoned; the task unsubscribes as soon as the server confirms it.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription> {
        let call = "subscribe";
        let invalid = |message: String| Error::new(call, ErrorKind::InvalidArgument(message));
        let name =
            ChannelName::parse(channel).map_err(|e| invalid(format!("channel {channel}: {e}")))?;
        if name.kind() == ChannelKind::ServerToUser && !self.shared.can_sign_in {
            return Err(invalid(format!(
                "{channel} needs SubscriberBuilder::sign_in"
            )));
        }
        if name.kind().requires_auth() && !self.shared.has_authorizer {
            return Err(invalid(format!("{channel} needs an authorizer")));
        }
        self.register(call, name).await
    }

    async fn register(&self, call: &'static str, name: ChannelName) -> Result<Subscription> {
        let (ready, confirmed) = oneshot::channel();
        let shared = Arc::new(ChannelShared::default());
        let channel = name.as_str().to_owned();
        let command = Command::Subscribe {
            channel: name,
            shared: shared.clone(),
            ready,
        };
        self.send(call, command)?;
        let receiver = confirmed
            .await
            .map_err(|_| Error::new(call, ErrorKind::SubscriberClosed))?
            .map_err(|kind| Error::new(call, kind))?;
        Ok(Subscription {
            channel,
            events: receiver,
            shared,
            subscriber: self.clone(),
        })
    }

    fn send(&self, call: &'static str, command: Command) -> Result<()> {
        self.shared
            .commands
            .send(command)
            .map_err(|_| Error::new(call, ErrorKind::SubscriberClosed))
    }

    /// Where signing in stands on the current connection.
    pub fn sign_in_state(&self) -> SignIn {
        self.shared.sign_ins.borrow().clone()
    }

    /// Waits until the connection is signed in, then subscribes to the user's
    /// `#server-to-user-` channel, which carries [`Client::send_to_user`](crate::Client::send_to_user)
    /// events. Re-subscribed after each reconnect, once signed in again.
    ///
    /// Cancel safety: as [`Subscriber::subscribe`]; dropping it while it waits for the sign-in
    /// leaves nothing behind.
    pub async fn subscribe_user(&self) -> Result<Subscription> {
        let call = "subscribe_user";
        if !self.shared.can_sign_in {
            let message = "subscribe_user needs SubscriberBuilder::sign_in".to_owned();
            return Err(Error::new(call, ErrorKind::InvalidArgument(message)));
        }
        let mut sign_ins = self.shared.sign_ins.clone();
        let state = sign_ins
            .wait_for(|s| !matches!(s, SignIn::Pending))
            .await
            .map_err(|_| Error::new(call, ErrorKind::SubscriberClosed))?
            .clone();
        let user_id = match state {
            SignIn::SignedIn { user_id } => user_id,
            SignIn::Failed { reason } => {
                return Err(Error::new(call, ErrorKind::SignInFailed(reason)));
            }
            SignIn::Pending => {
                let reason = "not signed in".to_owned();
                return Err(Error::new(call, ErrorKind::SignInFailed(reason)));
            }
        };
        let channel = format!(
            "{}{user_id}",
            comnestor_protocol::channel::SERVER_TO_USER_PREFIX
        );
        let name = ChannelName::parse(&channel).map_err(|e| {
            let message = format!("user id {user_id:?} makes no channel name: {e}");
            Error::new(call, ErrorKind::InvalidArgument(message))
        })?;
        self.register(call, name).await
    }

    /// Sends a client event (`client-…`) on a subscribed private or presence channel. Returns
    /// once the frame is written to the connection; the server relays it to the other
    /// subscribers, not back to this one.
    ///
    /// Cancel safety: dropping the future after the call was handed to the connection task
    /// does not stop the frame from being sent.
    pub async fn send_client_event(&self, channel: &str, event: &str, data: Value) -> Result<()> {
        let call = "send_client_event";
        let (done, result) = oneshot::channel();
        let command = Command::ClientEvent {
            channel: channel.to_owned(),
            event: event.to_owned(),
            data,
            done,
        };
        self.send(call, command)?;
        result
            .await
            .map_err(|_| Error::new(call, ErrorKind::SubscriberClosed))?
            .map_err(|kind| Error::new(call, kind))
    }

    /// Closes the connection and ends every subscription's stream. Other clones of this
    /// subscriber see [`ConnectionState::Closed`].
    pub fn close(&self) {
        let _ = self.shared.commands.send(Command::Close);
    }
}

/// State one subscription shares with the connection task.
#[derive(Default)]
pub(crate) struct ChannelShared {
    members: Mutex<Members>,
    dropped: AtomicU64,
}

impl ChannelShared {
    pub(crate) fn set_members(&self, members: Members) {
        *self.members.lock().unwrap_or_else(|e| e.into_inner()) = members;
    }

    pub(crate) fn update_members(&self, update: impl FnOnce(&mut Members)) {
        update(&mut self.members.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// A subscribed channel: a [`Stream`] of its [`ChannelEvent`]s. Dropping it unsubscribes.
///
/// The stream ends when the subscriber is closed or the server refuses to reconnect.
pub struct Subscription {
    channel: String,
    events: mpsc::Receiver<ChannelEvent>,
    shared: Arc<ChannelShared>,
    subscriber: Subscriber,
}

impl Subscription {
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The members of a presence channel, as of the last event the connection processed.
    pub fn members(&self) -> Members {
        self.shared
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Events dropped because this subscription's buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The next event; `None` once the stream has ended.
    ///
    /// Cancel safety: cancel safe; an event is never lost by dropping this future.
    pub async fn next_event(&mut self) -> Option<ChannelEvent> {
        self.events.recv().await
    }

    /// Sends a client event on this channel; see [`Subscriber::send_client_event`].
    ///
    /// Cancel safety: as [`Subscriber::send_client_event`].
    pub async fn trigger(&self, event: &str, data: Value) -> Result<()> {
        self.subscriber
            .send_client_event(&self.channel, event, data)
            .await
    }

    /// The subscriber this subscription belongs to.
    pub fn subscriber(&self) -> &Subscriber {
        &self.subscriber
    }
}

impl Stream for Subscription {
    type Item = ChannelEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChannelEvent>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let command = Command::Unsubscribe {
            channel: self.channel.clone(),
            shared: self.shared.clone(),
        };
        let _ = self.subscriber.shared.commands.send(command);
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls() {
        let url = socket_url("http://127.0.0.1:6001", "k").unwrap();
        assert!(url.starts_with("ws://127.0.0.1:6001/app/k?protocol=7&client=rust"));
        let url = socket_url("https://example.com/realtime/", "k").unwrap();
        assert!(url.starts_with("wss://example.com/realtime/app/k?"));
        assert!(socket_url("ftp://x", "k").is_err());
    }
}
