//! Live state: which connections each app has, which channels they joined, who is signed in.
//!
//! Nothing here takes a global lock. Channels, connections and users sit in sharded maps; a
//! broadcast takes only the read lock of its own channel's subscriber list.
//!
//! This state is local to one process. Several nodes behind a load balancer do not share it
//! yet: each node counts, lists and delivers to its own connections only, until the Redis
//! adapter lands.

mod channel;
mod outbox;
mod users;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use comnestor_protocol::{ChannelKind, ChannelName, CloseCode, message};
use dashmap::DashMap;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use channel::{Channel, JoinError};
pub use outbox::{ConnId, Control, Frame, OUTBOX_CAPACITY, Outbox};
pub use users::SigninOutcome;

use crate::apps::App;

/// How long a cache channel keeps its last event.
pub const CACHE_TTL: Duration = Duration::from_secs(30 * 60);

/// Above this many subscribers, `subscription_count` events are sent at most every
/// [`SUBSCRIPTION_COUNT_INTERVAL`], as Pusher does.
const SUBSCRIPTION_COUNT_BURST_LIMIT: usize = 100;
const SUBSCRIPTION_COUNT_INTERVAL: Duration = Duration::from_secs(5);

/// The state of every app on this node.
pub struct Hub {
    apps: DashMap<String, Arc<AppHub>>,
    next_conn: AtomicU64,
    live_connections: AtomicUsize,
    drained: Notify,
    shutting_down: AtomicBool,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            apps: DashMap::new(),
            next_conn: AtomicU64::new(1),
            live_connections: AtomicUsize::new(0),
            drained: Notify::new(),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// The live state of `app`, created on first use; its settings are refreshed to `app`.
    pub fn app(&self, app: &Arc<App>) -> Arc<AppHub> {
        let hub = self
            .apps
            .entry(app.id.clone())
            .or_insert_with(|| Arc::new(AppHub::new(app.clone())));
        if hub.app().updated_at != app.updated_at {
            hub.set_app(app.clone());
        }
        hub.clone()
    }

    /// The live state of an app, if it has any.
    pub fn existing(&self, app_id: &str) -> Option<Arc<AppHub>> {
        self.apps.get(app_id).map(|hub| hub.clone())
    }

    /// Applies a changed or deleted app: new settings take effect at once, and connections of
    /// an app that was disabled, deleted or given a new key are closed.
    pub fn app_changed(&self, old: &App, new: Option<&Arc<App>>) {
        let Some(hub) = self.existing(&old.id) else {
            return;
        };
        match new {
            None => hub.close_all(CloseCode::AppNotFound),
            Some(new) if !new.enabled => {
                hub.set_app(new.clone());
                hub.close_all(CloseCode::AppDisabled);
            }
            Some(new) if new.key != old.key => {
                hub.set_app(new.clone());
                hub.close_all(CloseCode::AppNotFound);
            }
            Some(new) => hub.set_app(new.clone()),
        }
    }

    /// A new connection id and socket id. Socket ids are `digits.digits`, random in their
    /// first part so that ids from different nodes do not collide.
    pub fn next_connection(&self) -> (ConnId, String) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let prefix: u32 = rand::random::<u32>() % 1_000_000_000;
        (ConnId(id), format!("{prefix}.{id}"))
    }

    /// Counts a connection as live until the returned guard drops.
    pub fn track(self: &Arc<Self>) -> LiveConnection {
        self.live_connections.fetch_add(1, Ordering::AcqRel);
        LiveConnection { hub: self.clone() }
    }

    pub fn live_connections(&self) -> usize {
        self.live_connections.load(Ordering::Acquire)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Tells every connection to reconnect elsewhere (4200) and waits up to `grace` for them
    /// to close.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutting_down.store(true, Ordering::Release);
        for hub in self.apps.iter() {
            hub.close_all(CloseCode::Reconnect);
        }
        let deadline = Instant::now() + grace;
        while self.live_connections() > 0 {
            let drained = self.drained.notified();
            if self.live_connections() == 0
                || tokio::time::timeout_at(deadline, drained).await.is_err()
            {
                break;
            }
        }
    }
}

/// Keeps a connection counted by [`Hub::live_connections`].
pub struct LiveConnection {
    hub: Arc<Hub>,
}

impl Drop for LiveConnection {
    fn drop(&mut self) {
        if self.hub.live_connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.hub.drained.notify_waiters();
        }
    }
}

/// The last event published on a cache channel.
#[derive(Clone)]
pub struct CachedEvent {
    pub frame: Frame,
    pub data: String,
    pub stored_at: Instant,
}

impl CachedEvent {
    /// Seconds left before it expires, or `None` when it already has.
    pub fn ttl_secs(&self) -> Option<u64> {
        CACHE_TTL
            .checked_sub(self.stored_at.elapsed())
            .map(|left| left.as_secs().max(1))
    }
}

/// Why a subscription was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SubscribeError {
    AlreadySubscribed,
    PresenceFull(usize),
}

/// The live state of one app.
pub struct AppHub {
    app: RwLock<Arc<App>>,
    channels: DashMap<String, Arc<Channel>>,
    connections: DashMap<ConnId, Outbox>,
    connection_count: AtomicUsize,
    cache: DashMap<String, CachedEvent>,
    users: users::Users,
    subscription_counts: DashMap<String, Instant>,
}

impl AppHub {
    fn new(app: Arc<App>) -> Self {
        Self {
            app: RwLock::new(app),
            channels: DashMap::new(),
            connections: DashMap::new(),
            connection_count: AtomicUsize::new(0),
            cache: DashMap::new(),
            users: users::Users::default(),
            subscription_counts: DashMap::new(),
        }
    }

    /// The app's current credentials and settings.
    pub fn app(&self) -> Arc<App> {
        self.app.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_app(&self, app: Arc<App>) {
        *self.app.write().unwrap_or_else(|e| e.into_inner()) = app;
    }

    /// Registers a connection, refusing it when the app is at its connection limit.
    pub fn connect(&self, outbox: &Outbox) -> Result<(), CloseCode> {
        let limit = self
            .app()
            .settings
            .max_connections
            .map_or(usize::MAX, |n| n as usize);
        let count = self.connection_count.fetch_add(1, Ordering::AcqRel);
        if count >= limit {
            self.connection_count.fetch_sub(1, Ordering::AcqRel);
            return Err(CloseCode::OverConnectionQuota);
        }
        self.connections.insert(outbox.id(), outbox.clone());
        Ok(())
    }

    /// Removes a connection: leaves its channels and signs it out.
    pub fn disconnect(
        &self,
        outbox: &Outbox,
        channels: impl IntoIterator<Item = String>,
        user: Option<&str>,
    ) {
        for channel in channels {
            self.unsubscribe(outbox.id(), &channel);
        }
        if let Some(user_id) = user {
            self.users.signout(outbox.id(), user_id);
        }
        self.users.unwatch(outbox.id());
        if self.connections.remove(&outbox.id()).is_some() {
            self.connection_count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connection_count.load(Ordering::Acquire)
    }

    fn close_all(&self, code: CloseCode) {
        for outbox in self.connections.iter() {
            outbox.close(code);
        }
    }

    /// Subscribes a connection. The joiner receives `subscription_succeeded` and, on a cache
    /// channel, the cached event or `pusher:cache_miss`; the others get `member_added` and
    /// `subscription_count` where they apply.
    pub fn subscribe(
        &self,
        outbox: &Outbox,
        name: &ChannelName,
        member: Option<(String, Value)>,
    ) -> Result<(), SubscribeError> {
        let max_members = self.app().settings.max_presence_members as usize;
        let joined = loop {
            let channel = self
                .channels
                .entry(name.as_str().to_owned())
                .or_insert_with(|| Arc::new(Channel::new(name.clone())))
                .clone();
            match channel.join(outbox, member.clone(), max_members) {
                Ok(joined) => break joined,
                Err(JoinError::Retired) => continue,
                Err(JoinError::Full) => return Err(SubscribeError::PresenceFull(max_members)),
                Err(JoinError::AlreadySubscribed) => return Err(SubscribeError::AlreadySubscribed),
            }
        };
        if name.is_cache() {
            match self.cached(name.as_str()) {
                Some(cached) => outbox.send(cached.frame),
                None => outbox.send(message::cache_miss(name.as_str()).into()),
            }
        }
        self.announce_subscription_count(name, joined.subscription_count);
        Ok(())
    }

    /// Unsubscribes a connection; a channel left empty is dropped.
    pub fn unsubscribe(&self, conn: ConnId, name: &str) {
        let Some(channel) = self.channels.get(name).map(|c| c.clone()) else {
            return;
        };
        let Some(left) = channel.leave(conn) else {
            return;
        };
        if left.subscription_count == 0 {
            self.channels
                .remove_if(name, |_, channel| channel.retire_if_empty());
            self.subscription_counts.remove(name);
        } else {
            self.announce_subscription_count(channel.name(), left.subscription_count);
        }
    }

    /// Sends `pusher_internal:subscription_count` where the app enables it. Channels with more
    /// than 100 subscribers get it at most every five seconds; a change inside that window is
    /// reported with the next one after it, not on its own.
    fn announce_subscription_count(&self, name: &ChannelName, count: usize) {
        if !self.app().settings.subscription_count || name.kind() == ChannelKind::Presence {
            return;
        }
        if count > SUBSCRIPTION_COUNT_BURST_LIMIT {
            let now = Instant::now();
            let mut last = self
                .subscription_counts
                .entry(name.as_str().to_owned())
                .or_insert(now - SUBSCRIPTION_COUNT_INTERVAL);
            if now.duration_since(*last) < SUBSCRIPTION_COUNT_INTERVAL {
                return;
            }
            *last = now;
        }
        if let Some(channel) = self.channel(name.as_str()) {
            channel.broadcast(
                &message::subscription_count(name.as_str(), count).into(),
                None,
            );
        }
    }

    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels.get(name).map(|c| c.clone())
    }

    /// Publishes an event from the HTTP API to one channel, skipping `except` (a socket id).
    /// The frame is encoded once; a cache channel keeps it for later subscribers.
    pub fn publish(
        &self,
        name: &ChannelName,
        event: &str,
        data: &str,
        except: Option<&str>,
    ) -> usize {
        let frame: Frame = message::channel_event(event, name.as_str(), data).into();
        if name.is_cache() {
            let cached = CachedEvent {
                frame: frame.clone(),
                data: data.to_owned(),
                stored_at: Instant::now(),
            };
            self.cache.insert(name.as_str().to_owned(), cached);
        }
        self.channel(name.as_str())
            .map_or(0, |channel| channel.broadcast(&frame, except))
    }

    /// The unexpired cached event of a cache channel.
    pub fn cached(&self, name: &str) -> Option<CachedEvent> {
        let cached = self.cache.get(name)?.clone();
        if cached.ttl_secs().is_some() {
            Some(cached)
        } else {
            self.cache.remove_if(name, |_, c| c.ttl_secs().is_none());
            None
        }
    }

    /// Occupied channels whose name starts with `prefix`.
    pub fn occupied_channels(&self, prefix: &str) -> Vec<Arc<Channel>> {
        let mut found: Vec<Arc<Channel>> = self
            .channels
            .iter()
            .filter(|c| c.key().starts_with(prefix) && c.subscription_count() > 0)
            .map(|c| c.clone())
            .collect();
        found.sort_by(|a, b| a.name().as_str().cmp(b.name().as_str()));
        found
    }

    /// Signs a connection in as `user_id`, watching `watchlist`.
    pub fn signin(&self, outbox: &Outbox, user_id: &str, watchlist: &[String]) -> SigninOutcome {
        self.users.signin(outbox, user_id, watchlist)
    }

    /// Closes every connection signed in as `user_id` with 4009.
    pub fn terminate_user(&self, user_id: &str) -> usize {
        self.users.terminate(user_id)
    }

    /// Removes expired cache entries.
    pub fn prune_cache(&self) {
        self.cache.retain(|_, cached| cached.ttl_secs().is_some());
    }

    /// Channel counts for diagnostics: `(channels, connections)`.
    pub fn stats(&self) -> (usize, usize) {
        (self.channels.len(), self.connection_count())
    }
}

/// Presence user counts by channel, for tests and diagnostics.
pub fn user_counts(channels: &[Arc<Channel>]) -> HashMap<String, usize> {
    channels
        .iter()
        .map(|c| (c.name().to_string(), c.user_count()))
        .collect()
}
