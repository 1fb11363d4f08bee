//! Live state: which connections each app has, which channels they joined, who is signed in.
//!
//! Nothing here takes a global lock. Channels, connections and users sit in sharded maps; a
//! broadcast takes only the read lock of its own channel's subscriber list, and a large
//! channel's broadcast is written by that channel's lanes ([`lanes`]).
//!
//! On a single node this state is all there is. With Redis ([`cluster`]), each node still
//! keeps and delivers to its own connections here, while Redis decides what the cluster must
//! agree on: presence members, subscription counts, who is online, cached events. An
//! [`AppHub`] method checks once which case it is in; the single-node path makes no
//! Redis round trip and is the same as without the cluster code.

mod channel;
pub mod cluster;
mod lanes;
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

pub use channel::{Channel, Except, JoinError};
pub use cluster::{Cluster, ClusterConfig, ClusterError};
pub use outbox::{ConnId, DIRECT_GAP, Frame, Inbox, OUTBOX_CAPACITY, Outbox, Wake};
pub use users::SigninOutcome;

use crate::apps::App;
use crate::webhooks::{WebhookEvent, Webhooks};

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
    /// The most connections live at once since [`Hub::take_peak_connections`] last read it.
    peak_connections: AtomicUsize,
    drained: Notify,
    shutting_down: AtomicBool,
    cluster: Option<Arc<Cluster>>,
    /// Where channel and presence transitions are reported as webhooks.
    webhooks: Option<Webhooks>,
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
            peak_connections: AtomicUsize::new(0),
            drained: Notify::new(),
            shutting_down: AtomicBool::new(false),
            cluster: None,
            webhooks: None,
        }
    }

    /// A hub that reports its transitions to `webhooks`. In a cluster the transitions are
    /// the cluster's: the node whose change Redis decided reports it, once.
    pub fn with_webhooks(webhooks: Webhooks) -> Self {
        Self {
            webhooks: Some(webhooks),
            ..Self::new()
        }
    }

    /// This hub, sharing its state with the other nodes of `cluster`. Start the cluster's
    /// background tasks with [`cluster::spawn`].
    ///
    /// Every cluster operation below is awaited through `Box::pin`: a Redis round trip's
    /// future is about 7 KB, and unboxed it would be part of every connection task's state,
    /// clustered or not (17.5 KB per idle connection before; see BENCHMARKS.md).
    pub fn clustered(self, cluster: Arc<Cluster>) -> Self {
        Self {
            cluster: Some(cluster),
            ..self
        }
    }

    /// Reports a webhook event of `app_id`; never waits.
    pub(crate) fn notify_webhook(&self, app_id: &str, event: WebhookEvent) {
        if let Some(webhooks) = &self.webhooks {
            webhooks.notify(app_id, event);
        }
    }

    /// The cluster this node belongs to, if it runs with Redis.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Applies a change another node announced (or a dead node's reaping).
    pub(crate) fn receive(&self, app_id: &str, kind: &cluster::Kind, frame: Option<Frame>) {
        if let Some(hub) = self.existing(app_id) {
            hub.apply(kind, frame);
        }
    }

    /// Asks every connection of every app to close with `code`.
    pub fn close_all(&self, code: CloseCode) {
        for hub in self.apps.iter() {
            hub.close_all(code);
        }
    }

    /// The live state of `app`, created on first use; its settings are refreshed to `app`.
    pub fn app(&self, app: &Arc<App>) -> Arc<AppHub> {
        let hub = self.apps.entry(app.id.clone()).or_insert_with(|| {
            let (cluster, webhooks) = (self.cluster.clone(), self.webhooks.clone());
            Arc::new(AppHub::new(app.clone(), cluster, webhooks))
        });
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

    /// A new connection id and socket id. Socket ids are `digits.digits`. In a cluster the
    /// first part is the node id, unique among live nodes, so ids never collide; on a single
    /// node it is random.
    pub fn next_connection(&self) -> (ConnId, String) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        match &self.cluster {
            Some(cluster) => (ConnId(id), format!("{}.{id}", cluster.node_id())),
            None => {
                let prefix: u32 = rand::random::<u32>() % 1_000_000_000;
                (ConnId(id), format!("{prefix}.{id}"))
            }
        }
    }

    /// Counts a connection as live until the returned guard drops.
    pub fn track(self: &Arc<Self>) -> LiveConnection {
        let live = self.live_connections.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak_connections.fetch_max(live, Ordering::AcqRel);
        LiveConnection { hub: self.clone() }
    }

    /// The most connections that were live at once since the last call (or the start), and
    /// starts counting afresh from the current number.
    pub fn take_peak_connections(&self) -> usize {
        let live = self.live_connections();
        self.peak_connections.swap(live, Ordering::AcqRel).max(live)
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
        self.close_all(CloseCode::Reconnect);
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
    /// In a cluster: Redis could not record it (the cause is logged).
    Unavailable,
}

/// A channel's subscriptions and presence members: on this node, or in the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub subscription_count: usize,
    pub user_count: usize,
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
    cluster: Option<Arc<Cluster>>,
    webhooks: Option<Webhooks>,
}

impl AppHub {
    fn new(app: Arc<App>, cluster: Option<Arc<Cluster>>, webhooks: Option<Webhooks>) -> Self {
        Self {
            app: RwLock::new(app),
            channels: DashMap::new(),
            connections: DashMap::new(),
            connection_count: AtomicUsize::new(0),
            cache: DashMap::new(),
            users: users::Users::default(),
            subscription_counts: DashMap::new(),
            cluster,
            webhooks,
        }
    }

    /// Reports a webhook event of this app; never waits.
    pub fn notify_webhook(&self, event: WebhookEvent) {
        if let Some(webhooks) = &self.webhooks {
            webhooks.notify(&self.app().id, event);
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
    pub async fn disconnect(
        self: &Arc<Self>,
        outbox: &Outbox,
        channels: impl IntoIterator<Item = String>,
        user: Option<&str>,
    ) {
        for channel in channels {
            self.unsubscribe(outbox, &channel).await;
        }
        if let Some(user_id) = user {
            match &self.cluster {
                None => self.users.signout(outbox.id(), user_id),
                Some(cluster) => {
                    self.users.remove(outbox.id(), user_id);
                    let leave = cluster::Leave::Signout {
                        user: user_id.to_owned(),
                        socket_id: outbox.socket_id().to_owned(),
                    };
                    Box::pin(self.record_leave(cluster, leave)).await;
                }
            }
        }
        self.users.unwatch(outbox.id());
        if self.connections.remove(&outbox.id()).is_some() {
            self.connection_count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connection_count.load(Ordering::Acquire)
    }

    pub fn close_all(&self, code: CloseCode) {
        for outbox in self.connections.iter() {
            outbox.close(code);
        }
    }

    /// Subscribes a connection. The joiner receives `subscription_succeeded` and, on a cache
    /// channel, the cached event or `pusher:cache_miss`; the others get `member_added` and
    /// `subscription_count` where they apply.
    pub async fn subscribe(
        self: &Arc<Self>,
        outbox: &Outbox,
        name: &ChannelName,
        member: Option<(String, Value)>,
    ) -> Result<(), SubscribeError> {
        match &self.cluster {
            None => self.subscribe_here(outbox, name, member),
            Some(cluster) => {
                Box::pin(self.subscribe_clustered(cluster, outbox, name, member)).await
            }
        }
    }

    /// The channel's state on this node, created on first use.
    fn channel_entry(&self, name: &ChannelName) -> Arc<Channel> {
        self.channels
            .entry(name.as_str().to_owned())
            .or_insert_with(|| Arc::new(Channel::new(name.clone())))
            .clone()
    }

    fn subscribe_here(
        &self,
        outbox: &Outbox,
        name: &ChannelName,
        member: Option<(String, Value)>,
    ) -> Result<(), SubscribeError> {
        let max_members = self.app().settings.max_presence_members as usize;
        let joined = loop {
            let channel = self.channel_entry(name);
            match channel.join(outbox, member.clone(), max_members) {
                Ok(joined) => break joined,
                Err(JoinError::Retired) => continue,
                Err(JoinError::Full) => return Err(SubscribeError::PresenceFull(max_members)),
                Err(JoinError::AlreadySubscribed) => return Err(SubscribeError::AlreadySubscribed),
            }
        };
        let channel = || name.as_str().to_owned();
        if joined.subscription_count == 1 {
            self.notify_webhook(WebhookEvent::ChannelOccupied { channel: channel() });
        }
        if let (true, Some((user_id, _))) = (joined.new_member, &member) {
            let user_id = user_id.clone();
            self.notify_webhook(WebhookEvent::MemberAdded {
                channel: channel(),
                user_id,
            });
        }
        if name.is_cache() {
            match self.cached(name.as_str()) {
                Some(cached) => outbox.send(cached.frame),
                None => {
                    outbox.send(message::cache_miss(name.as_str()).into());
                    self.notify_webhook(WebhookEvent::CacheMiss { channel: channel() });
                }
            }
        }
        self.announce_subscription_count(name, joined.subscription_count);
        Ok(())
    }

    /// Unsubscribes a connection; a channel left empty is dropped.
    pub async fn unsubscribe(self: &Arc<Self>, outbox: &Outbox, name: &str) {
        let conn = outbox.id();
        let Some(channel) = self.channels.get(name).map(|c| c.clone()) else {
            return;
        };
        let Some(left) = channel.leave(conn) else {
            return;
        };
        if self.cluster.is_none()
            && let Some(user_id) = left.removed_member.clone()
        {
            let channel = name.to_owned();
            self.notify_webhook(WebhookEvent::MemberRemoved { channel, user_id });
        }
        if left.subscription_count == 0 {
            if self.cluster.is_none() {
                let channel = name.to_owned();
                self.notify_webhook(WebhookEvent::ChannelVacated { channel });
            }
            self.channels
                .remove_if(name, |_, channel| channel.retire_if_empty());
            self.subscription_counts.remove(name);
        }
        match &self.cluster {
            None if left.subscription_count == 0 => {}
            None => self.announce_subscription_count(channel.name(), left.subscription_count),
            Some(cluster) => {
                let channel = channel.name().clone();
                let socket_id = outbox.socket_id().to_owned();
                let leave = cluster::Leave::Channel { channel, socket_id };
                Box::pin(self.record_leave(cluster, leave)).await;
            }
        }
    }

    /// Sends `pusher_internal:subscription_count` to this node's subscribers.
    fn announce_subscription_count(&self, name: &ChannelName, count: usize) {
        if let Some(frame) = self.subscription_count_frame(name, count)
            && let Some(channel) = self.channel(name.as_str())
        {
            channel.broadcast(&frame, None);
        }
    }

    /// The `pusher_internal:subscription_count` frame to send, where the app enables it.
    /// Channels with more than 100 subscribers get it at most every five seconds; a change
    /// inside that window is reported with the next one after it, not on its own.
    fn subscription_count_frame(&self, name: &ChannelName, count: usize) -> Option<Frame> {
        if !self.app().settings.subscription_count || name.kind() == ChannelKind::Presence {
            return None;
        }
        if count > SUBSCRIPTION_COUNT_BURST_LIMIT {
            let now = Instant::now();
            let mut last = self
                .subscription_counts
                .entry(name.as_str().to_owned())
                .or_insert(now - SUBSCRIPTION_COUNT_INTERVAL);
            if now.duration_since(*last) < SUBSCRIPTION_COUNT_INTERVAL {
                return None;
            }
            *last = now;
        }
        self.notify_webhook(WebhookEvent::SubscriptionCount {
            channel: name.as_str().to_owned(),
            subscription_count: count,
        });
        Some(message::subscription_count(name.as_str(), count).into())
    }

    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels.get(name).map(|c| c.clone())
    }

    /// Publishes an event from the HTTP API to one channel, skipping `except` (a socket id).
    /// The frame is encoded once; a cache channel keeps it for later subscribers. Returns
    /// how many of this node's subscribers it was queued for.
    ///
    /// In a cluster it also goes to the other nodes. An error then means that this node's
    /// subscribers got it and the others may not have.
    pub async fn publish(
        &self,
        name: &ChannelName,
        event: &str,
        data: &str,
        except: Option<&str>,
    ) -> Result<usize, ClusterError> {
        match &self.cluster {
            None => Ok(self.publish_here(name, event, data, except)),
            Some(cluster) => {
                Box::pin(self.publish_clustered(cluster, name, event, data, except)).await
            }
        }
    }

    fn publish_here(
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

    /// Delivers a client event from `sender` to the channel's other subscribers, on every
    /// node. An error means that only this node's subscribers got it.
    pub async fn client_event(
        &self,
        channel: &Channel,
        frame: Frame,
        sender: &Outbox,
    ) -> Result<(), ClusterError> {
        channel.broadcast_except_conn(&frame, sender.id());
        match &self.cluster {
            None => Ok(()),
            Some(cluster) => {
                let name = channel.name().as_str();
                Box::pin(self.relay_client_event(cluster, name, &frame, sender)).await
            }
        }
    }

    /// The unexpired cached event of a cache channel, as this node stores it (unused in a
    /// cluster, where [`AppHub::cache_info`] reads Redis).
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

    /// Signs a connection in as `user_id`, watching `watchlist`. Sends `replies` (the
    /// `signin_success` and any error about it), then the watchlist's initial frame.
    pub async fn signin(
        self: &Arc<Self>,
        outbox: &Outbox,
        user_id: &str,
        watchlist: &[String],
        replies: Vec<Frame>,
    ) -> Result<(), ClusterError> {
        let Some(cluster) = &self.cluster else {
            let outcome = self.users.signin(outbox, user_id, watchlist);
            replies.into_iter().for_each(|frame| outbox.send(frame));
            if let Some(frame) = outcome.watchlist_frame {
                outbox.send(frame);
            }
            return Ok(());
        };
        Box::pin(self.signin_clustered(cluster, outbox, user_id, watchlist, replies)).await
    }

    /// Closes every connection signed in as `user_id` with 4009, on every node. Returns how
    /// many of this node's connections were asked to close.
    pub async fn terminate_user(&self, user_id: &str) -> Result<usize, ClusterError> {
        match &self.cluster {
            None => Ok(self.users.terminate(user_id)),
            Some(cluster) => Box::pin(self.terminate_clustered(cluster, user_id)).await,
        }
    }

    /// A channel's subscriptions and presence members, cluster-wide when clustered.
    pub async fn channel_stats(&self, name: &str) -> Result<ChannelStats, ClusterError> {
        let Some(cluster) = &self.cluster else {
            let channel = self.channel(name);
            return Ok(ChannelStats {
                subscription_count: channel.as_ref().map_or(0, |c| c.subscription_count()),
                user_count: channel.as_ref().map_or(0, |c| c.user_count()),
            });
        };
        cluster.channel_stats(&self.app().id, name).await
    }

    /// Occupied channels whose name starts with `prefix`, sorted, cluster-wide when
    /// clustered.
    pub async fn occupied(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, ChannelStats)>, ClusterError> {
        let Some(cluster) = &self.cluster else {
            let channels = self.occupied_channels(prefix).into_iter();
            return Ok(channels
                .map(|c| {
                    let stats = ChannelStats {
                        subscription_count: c.subscription_count(),
                        user_count: c.user_count(),
                    };
                    (c.name().to_string(), stats)
                })
                .collect());
        };
        cluster.occupied(&self.app().id, prefix).await
    }

    /// A presence channel's member ids, sorted, cluster-wide when clustered.
    pub async fn member_ids(&self, name: &str) -> Result<Vec<String>, ClusterError> {
        let Some(cluster) = &self.cluster else {
            let members = self.channel(name).map(|c| c.members()).unwrap_or_default();
            return Ok(members.into_iter().map(|(id, _)| id).collect());
        };
        cluster.member_ids(&self.app().id, name).await
    }

    /// A cache channel's cached `data` and its seconds to live, if it has one.
    pub async fn cache_info(&self, name: &str) -> Result<Option<(String, u64)>, ClusterError> {
        let Some(cluster) = &self.cluster else {
            let cached = self.cached(name);
            return Ok(cached.and_then(|c| Some((c.data.clone(), c.ttl_secs()?))));
        };
        cluster.cached(&self.app().id, name).await
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
