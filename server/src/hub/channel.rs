//! One channel's subscribers and, for presence channels, its members.

use std::collections::{HashMap, hash_map::Entry};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use comnestor_protocol::{ChannelKind, ChannelName, message};
use serde_json::Value;

use super::lanes::{self, Job, LANE_THRESHOLD, Lanes, Parts, Skip, Target};
use super::outbox::{ConnId, DIRECT_GAP, Frame, Outbox};

/// A presence member: the user's info and how many of its connections are subscribed.
#[derive(Debug, Clone)]
pub struct Member {
    pub info: Value,
    pub connections: usize,
}

struct Subscriber {
    outbox: Outbox,
    /// The presence user id this connection subscribed as.
    user_id: Option<String>,
    /// In a cluster, the sequence number of the state this subscriber was given when it
    /// joined: a stamped frame at or below it is already part of that state and is skipped.
    /// Always 0 on a single node, where frames carry no stamp.
    snapshot: u64,
}

/// A cluster join waiting for Redis to answer. Frames for it are held back, so that
/// `subscription_succeeded` is still the first frame it gets on the channel.
struct Pending {
    outbox: Outbox,
    user_id: Option<String>,
    held: Vec<(Frame, Option<u64>)>,
}

#[derive(Default)]
struct Subscribers {
    by_conn: HashMap<ConnId, Subscriber>,
    /// Cluster joins in flight; empty on a single node.
    pending: Mutex<HashMap<ConnId, Pending>>,
    /// `pending.len()`, readable under the read lock without taking the mutex.
    pending_len: usize,
    /// Set once the channel is removed from its app; a join must then retry on a fresh one.
    retired: bool,
    /// `by_conn` split by lane, built by the first broadcast through the lanes after a
    /// subscriber joined or left.
    parts: Mutex<Option<Arc<Parts>>>,
}

impl Subscribers {
    fn insert(&mut self, conn: ConnId, subscriber: Subscriber) {
        self.by_conn.insert(conn, subscriber);
        *self.parts.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn remove(&mut self, conn: ConnId) -> Option<Subscriber> {
        let removed = self.by_conn.remove(&conn)?;
        *self.parts.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
        Some(removed)
    }

    fn parts(&self) -> Arc<Parts> {
        let mut parts = lock(&self.parts);
        parts
            .get_or_insert_with(|| Arc::new(lanes::split(self.by_conn.values().map(target))))
            .clone()
    }
}

/// A subscriber as the lanes see it.
fn target(subscriber: &Subscriber) -> Target {
    Target {
        outbox: subscriber.outbox.clone(),
        snapshot: subscriber.snapshot,
    }
}

/// Whom a delivery skips.
#[derive(Clone, Copy)]
pub enum Except<'a> {
    Nobody,
    /// The connection with this socket id (the HTTP API's `socket_id`).
    Socket(&'a str),
    /// This connection (the sender of a client event).
    Conn(ConnId),
}

impl Except<'_> {
    fn skips(&self, conn: ConnId, outbox: &Outbox) -> bool {
        match self {
            Except::Nobody => false,
            Except::Socket(socket_id) => outbox.socket_id() == *socket_id,
            Except::Conn(except) => *except == conn,
        }
    }

    fn to_skip(self, seq: Option<u64>) -> Skip {
        let except = match self {
            Except::Nobody => None,
            Except::Socket(socket_id) => Some(Ok(socket_id.into())),
            Except::Conn(conn) => Some(Err(conn)),
        };
        Skip { except, seq }
    }
}

/// The newest cluster sequence numbers this node applied to the channel, so that frames
/// that crossed each other on the way from two nodes are applied in Redis's order.
///
/// It keeps one number per presence user seen while the channel has subscribers on this
/// node, and is dropped with the channel.
#[derive(Default)]
struct Applied {
    /// By presence user id: the last `member_added`/`member_removed`.
    members: HashMap<String, u64>,
    /// The last `subscription_count`.
    count: u64,
}

/// Why a join was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinError {
    /// The channel was removed concurrently; look it up again.
    Retired,
    /// The presence channel already has its maximum number of distinct users.
    Full,
    /// This connection is already subscribed.
    AlreadySubscribed,
}

/// What a successful join changed.
#[derive(Debug)]
pub struct Joined {
    /// Subscribers after the join.
    pub subscription_count: usize,
    /// For presence: whether this was the user's first connection (a new member).
    pub new_member: bool,
}

/// What a leave changed.
#[derive(Debug, Default)]
pub struct Left {
    pub subscription_count: usize,
    /// For presence: the user whose last connection just left.
    pub removed_member: Option<String>,
}

pub struct Channel {
    name: ChannelName,
    subscribers: RwLock<Subscribers>,
    /// Presence members by user id. Locked before `subscribers` whenever both are needed.
    members: Mutex<HashMap<String, Member>>,
    /// Cluster only; members then live in Redis and `members` stays empty.
    applied: Mutex<Applied>,
    /// The tasks a large channel's broadcasts are written by.
    lanes: Lanes,
    /// When the last broadcast was made.
    last_fan_out: Mutex<Option<Instant>>,
}

impl Channel {
    pub fn new(name: ChannelName) -> Self {
        Self {
            name,
            subscribers: Default::default(),
            members: Default::default(),
            applied: Default::default(),
            lanes: Lanes::default(),
            last_fan_out: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &ChannelName {
        &self.name
    }

    pub fn is_presence(&self) -> bool {
        self.name.kind() == ChannelKind::Presence
    }

    /// Subscribers on this node, counting cluster joins in flight.
    pub fn subscription_count(&self) -> usize {
        let subscribers = self.read();
        subscribers.by_conn.len() + subscribers.pending_len
    }

    pub fn user_count(&self) -> usize {
        self.lock_members().len()
    }

    /// Presence members, sorted by user id.
    pub fn members(&self) -> Vec<(String, Value)> {
        let members = self.lock_members();
        let mut list: Vec<_> = members
            .iter()
            .map(|(id, m)| (id.clone(), m.info.clone()))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// Adds a subscriber and sends the joiner its `subscription_succeeded`. For presence, a new
    /// member is announced to the others before the joiner gets the member list, which
    /// includes itself.
    pub fn join(
        &self,
        outbox: &Outbox,
        member: Option<(String, Value)>,
        max_members: usize,
    ) -> Result<Joined, JoinError> {
        let mut members = self.lock_members();
        let mut subscribers = self.write();
        if subscribers.retired {
            return Err(JoinError::Retired);
        }
        if subscribers.by_conn.contains_key(&outbox.id()) {
            return Err(JoinError::AlreadySubscribed);
        }
        let mut new_member = false;
        let user_id = match member {
            Some((user_id, info)) => {
                if let Some(existing) = members.get_mut(&user_id) {
                    existing.connections += 1;
                } else {
                    if members.len() >= max_members {
                        return Err(JoinError::Full);
                    }
                    let frame: Frame =
                        message::member_added(self.name.as_str(), &user_id, &info).into();
                    self.fan_out(&subscribers, &frame, None, Except::Nobody);
                    members.insert(
                        user_id.clone(),
                        Member {
                            info,
                            connections: 1,
                        },
                    );
                    new_member = true;
                }
                Some(user_id)
            }
            None => None,
        };
        let succeeded = if self.is_presence() {
            let mut list: Vec<(&str, &Value)> = members
                .iter()
                .map(|(id, m)| (id.as_str(), &m.info))
                .collect();
            list.sort_by(|a, b| a.0.cmp(b.0));
            message::presence_subscription_succeeded(self.name.as_str(), list)
        } else {
            message::subscription_succeeded(self.name.as_str())
        };
        outbox.send(succeeded.into());
        subscribers.insert(
            outbox.id(),
            Subscriber {
                outbox: outbox.clone(),
                user_id,
                snapshot: 0,
            },
        );
        Ok(Joined {
            subscription_count: subscribers.by_conn.len(),
            new_member,
        })
    }

    /// Removes a subscriber; for presence, announces the member's departure when this was its
    /// last connection. Returns `None` when the connection was not subscribed.
    pub fn leave(&self, conn: ConnId) -> Option<Left> {
        let mut members = self.lock_members();
        let mut subscribers = self.write();
        let subscriber = subscribers.remove(conn)?;
        let mut left = Left {
            subscription_count: subscribers.by_conn.len(),
            removed_member: None,
        };
        if let Some(user_id) = subscriber.user_id
            && let Entry::Occupied(mut entry) = members.entry(user_id)
        {
            entry.get_mut().connections -= 1;
            if entry.get().connections == 0 {
                let (user_id, _) = entry.remove_entry();
                let frame: Frame = message::member_removed(self.name.as_str(), &user_id).into();
                self.fan_out(&subscribers, &frame, None, Except::Nobody);
                left.removed_member = Some(user_id);
            }
        }
        Some(left)
    }

    /// The presence user id a connection subscribed as.
    pub fn user_id_of(&self, conn: ConnId) -> Option<String> {
        self.read()
            .by_conn
            .get(&conn)
            .and_then(|s| s.user_id.clone())
    }

    /// Sends `frame` to every subscriber except the one with `except` as socket id. Returns
    /// how many subscribers it went to.
    ///
    /// An idle subscriber's socket is written here (or, for a channel of [`LANE_THRESHOLD`] or
    /// more, by the channel's lanes, one per core), without waking its task; a busy or
    /// streaming one gets the frame queued (see [`Outbox::offer`]). On the 2-core benchmark VM
    /// that is 7–10 µs of server CPU per delivery against 10–12 µs when every subscriber's task
    /// was woken to write (BENCHMARKS.md, sitting of 16:38). One event to 10,000 subscribers
    /// reached the last of them in 87.6–158 ms at p99 in most runs there (the 100 ms target
    /// met in 10 of 30), but in 176–350 ms in about one run in five, when the load generator
    /// on the same two cores spent more per message; a minimal broadcaster needed 97–137 ms.
    pub fn broadcast(&self, frame: &Frame, except: Option<&str>) -> usize {
        let except = except.map_or(Except::Nobody, Except::Socket);
        self.deliver(frame, None, except)
    }

    /// Queues `frame` for every subscriber except the connection `except`.
    pub fn broadcast_except_conn(&self, frame: &Frame, except: ConnId) {
        self.deliver(frame, None, Except::Conn(except));
    }

    /// Queues `frame` for every subscriber but `except`. A frame stamped with a cluster
    /// sequence number skips subscribers whose join already reflected it, and is held for
    /// joins still waiting on Redis. Returns how many subscribers it was queued for.
    pub fn deliver(&self, frame: &Frame, seq: Option<u64>, except: Except<'_>) -> usize {
        let subscribers = self.read();
        let sent = self.fan_out(&subscribers, frame, seq, except);
        if subscribers.pending_len > 0 {
            let mut pending = lock(&subscribers.pending);
            for (conn, join) in pending.iter_mut() {
                if !except.skips(*conn, &join.outbox) {
                    join.held.push((frame.clone(), seq));
                }
            }
        }
        sent
    }

    /// Offers `frame` to every subscriber `except` does not name and whose join did not
    /// already reflect `seq`: through the lanes for a large channel, at once otherwise.
    /// Returns how many subscribers it went to (through the lanes, before `except`).
    fn fan_out(
        &self,
        subscribers: &Subscribers,
        frame: &Frame,
        seq: Option<u64>,
        except: Except<'_>,
    ) -> usize {
        let encoded = lanes::encode(frame);
        let at = Instant::now();
        if self.uses_lanes(subscribers.by_conn.len(), at) {
            let job = Job {
                frame: frame.clone(),
                encoded,
                parts: subscribers.parts(),
                skip: except.to_skip(seq),
            };
            self.lanes.push(Arc::new(job));
            return subscribers.by_conn.len();
        }
        let mut sent = 0;
        for (conn, subscriber) in &subscribers.by_conn {
            let seen = seq.is_some_and(|seq| seq <= subscriber.snapshot);
            if seen || except.skips(*conn, &subscriber.outbox) {
                continue;
            }
            subscriber.outbox.offer(frame, &encoded, at);
            sent += 1;
        }
        sent
    }

    /// Whether a broadcast to `subscribers` made `now` goes through the lanes: while they
    /// still write an earlier broadcast, so that this one cannot overtake it, and for a channel
    /// of at least [`LANE_THRESHOLD`] subscribers that is not streaming. When the last broadcast
    /// was less than [`DIRECT_GAP`] ago, the subscribers are streaming: their frames are queued
    /// for their connection tasks to merge (see [`Outbox::offer`]), and queueing 1,000 of them
    /// costs less than the hop to the lanes.
    fn uses_lanes(&self, subscribers: usize, now: Instant) -> bool {
        let streaming = lock(&self.last_fan_out)
            .replace(now)
            .is_some_and(|last| now.saturating_duration_since(last) < DIRECT_GAP);
        if !self.lanes.idle() {
            return true;
        }
        subscribers >= LANE_THRESHOLD && !streaming && tokio::runtime::Handle::try_current().is_ok()
    }

    /// Adds a cluster join that waits for Redis: it gets no frames until
    /// [`Channel::activate`], and the ones meant for it meanwhile are held.
    pub fn join_pending(&self, outbox: &Outbox, user_id: Option<String>) -> Result<(), JoinError> {
        let mut subscribers = self.write();
        if subscribers.retired {
            return Err(JoinError::Retired);
        }
        let mut pending = lock(&subscribers.pending);
        if subscribers.by_conn.contains_key(&outbox.id()) || pending.contains_key(&outbox.id()) {
            return Err(JoinError::AlreadySubscribed);
        }
        let join = Pending {
            outbox: outbox.clone(),
            user_id,
            held: Vec::new(),
        };
        pending.insert(outbox.id(), join);
        let len = pending.len();
        drop(pending);
        subscribers.pending_len = len;
        Ok(())
    }

    /// Completes a cluster join: sends `first` (its `subscription_succeeded`, and a cache
    /// channel's cached event), then the held frames not already reflected in `snapshot`.
    pub fn activate(&self, conn: ConnId, first: Vec<Frame>, snapshot: u64) {
        let mut subscribers = self.write();
        let Some(join) = self.take_pending(&mut subscribers, conn) else {
            return;
        };
        for frame in first {
            join.outbox.send(frame);
        }
        for (frame, seq) in join.held {
            if seq.is_none_or(|seq| seq > snapshot) {
                join.outbox.send(frame);
            }
        }
        let subscriber = Subscriber {
            outbox: join.outbox,
            user_id: join.user_id,
            snapshot,
        };
        subscribers.insert(conn, subscriber);
    }

    /// Drops a cluster join that Redis refused or could not record.
    pub fn cancel_pending(&self, conn: ConnId) {
        let mut subscribers = self.write();
        self.take_pending(&mut subscribers, conn);
    }

    fn take_pending(&self, subscribers: &mut Subscribers, conn: ConnId) -> Option<Pending> {
        let mut pending = lock(&subscribers.pending);
        let join = pending.remove(&conn);
        let len = pending.len();
        drop(pending);
        subscribers.pending_len = len;
        join
    }

    /// Whether a presence change of `user_id` stamped `seq` is newer than the last one this
    /// node applied; records it when it is.
    pub fn newer_member_change(&self, user_id: &str, seq: u64) -> bool {
        let mut applied = lock(&self.applied);
        match applied.members.get_mut(user_id) {
            Some(last) if *last >= seq => false,
            Some(last) => {
                *last = seq;
                true
            }
            None => {
                applied.members.insert(user_id.to_owned(), seq);
                true
            }
        }
    }

    /// Whether a `subscription_count` stamped `seq` is newer than the last one applied.
    pub fn newer_count(&self, seq: u64) -> bool {
        let mut applied = lock(&self.applied);
        let newer = seq > applied.count;
        applied.count = applied.count.max(seq);
        newer
    }

    /// Marks the channel retired if it has no subscribers; returns whether it did.
    pub fn retire_if_empty(&self) -> bool {
        let mut subscribers = self.write();
        if subscribers.by_conn.is_empty() && subscribers.pending_len == 0 {
            subscribers.retired = true;
        }
        subscribers.retired
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Subscribers> {
        self.subscribers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Subscribers> {
        self.subscribers.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_members(&self) -> std::sync::MutexGuard<'_, HashMap<String, Member>> {
        lock(&self.members)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Inbox;

    fn subscriber(id: u64) -> (Outbox, Inbox) {
        Outbox::new(ConnId(id), format!("1.{id}"))
    }

    fn drain(rx: &mut Inbox) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv())
            .map(|f| f.to_string())
            .collect()
    }

    fn channel() -> Channel {
        Channel::new(ChannelName::parse("presence-room").unwrap())
    }

    #[test]
    fn a_pending_join_gets_its_reply_first_then_only_newer_frames() {
        let channel = channel();
        let (outbox, mut rx) = subscriber(1);
        channel.join_pending(&outbox, Some("u1".into())).unwrap();
        channel.deliver(&Frame::from("old"), Some(4), Except::Nobody);
        channel.deliver(&Frame::from("unstamped"), None, Except::Nobody);
        channel.deliver(&Frame::from("new"), Some(6), Except::Nobody);
        assert!(drain(&mut rx).is_empty(), "held until the join completes");
        assert_eq!(channel.subscription_count(), 1);

        channel.activate(ConnId(1), vec![Frame::from("succeeded")], 5);
        assert_eq!(drain(&mut rx), ["succeeded", "unstamped", "new"]);
        channel.deliver(&Frame::from("stale"), Some(5), Except::Nobody);
        channel.deliver(&Frame::from("later"), Some(7), Except::Nobody);
        assert_eq!(drain(&mut rx), ["later"]);
        assert_eq!(channel.user_id_of(ConnId(1)).as_deref(), Some("u1"));
    }

    #[test]
    fn a_cancelled_join_leaves_nothing_behind() {
        let channel = channel();
        let (outbox, mut rx) = subscriber(1);
        channel.join_pending(&outbox, None).unwrap();
        assert_eq!(
            channel.join_pending(&outbox, None),
            Err(JoinError::AlreadySubscribed)
        );
        assert!(!channel.retire_if_empty(), "a pending join keeps it alive");
        channel.cancel_pending(ConnId(1));
        channel.deliver(&Frame::from("after"), None, Except::Nobody);
        assert!(drain(&mut rx).is_empty());
        assert!(channel.retire_if_empty());
    }

    #[test]
    fn changes_that_crossed_on_the_way_apply_in_redis_order() {
        let channel = channel();
        assert!(channel.newer_member_change("u1", 9));
        assert!(
            !channel.newer_member_change("u1", 5),
            "older than the last one"
        );
        assert!(channel.newer_member_change("u2", 5), "another user");
        assert!(channel.newer_count(3));
        assert!(!channel.newer_count(3));
        assert!(!channel.newer_count(2));
        assert!(channel.newer_count(4));
    }

    /// Waits until the channel's lanes have written everything, then takes every inbox's frames.
    async fn gather(channel: &Channel, inboxes: &mut [Inbox]) -> Vec<Vec<String>> {
        for _ in 0..500 {
            if channel.lanes.idle() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(channel.lanes.idle());
        inboxes.iter_mut().map(drain).collect()
    }

    #[tokio::test]
    async fn a_large_channel_goes_through_its_lanes_in_order() {
        let channel = channel();
        let mut inboxes = Vec::new();
        for id in 0..LANE_THRESHOLD as u64 + 10 {
            let (outbox, rx) = subscriber(id);
            let member = Some((format!("u{id}"), serde_json::json!({})));
            channel.join(&outbox, member, usize::MAX).unwrap();
            inboxes.push(rx);
        }
        for rx in &mut inboxes {
            drain(rx);
        }
        // Not streaming: the joins' broadcasts were more than the gap ago.
        tokio::time::sleep(DIRECT_GAP * 2).await;
        channel.deliver(&Frame::from("a"), None, Except::Nobody);
        assert!(!channel.lanes.idle(), "the lanes write it");
        channel.deliver(&Frame::from("b"), None, Except::Socket("1.3"));
        // A member's arrival is a broadcast too, behind the ones before it.
        let (late, _late_rx) = subscriber(10_000);
        let member = Some(("late".to_owned(), serde_json::json!({})));
        channel.join(&late, member, usize::MAX).unwrap();
        channel.deliver(&Frame::from("c"), None, Except::Conn(ConnId(4)));

        let got = gather(&channel, &mut inboxes).await;
        for (id, frames) in got.iter().enumerate() {
            let mut expected = vec!["a", "b"];
            if id == 3 {
                expected.retain(|f| *f != "b");
            }
            let added = message::member_added("presence-room", "late", &serde_json::json!({}));
            expected.push(&added);
            if id != 4 {
                expected.push("c");
            }
            assert_eq!(frames, &expected, "subscriber {id}");
        }
    }

    #[tokio::test]
    async fn a_small_channel_is_written_by_the_broadcast_itself() {
        let channel = channel();
        let (outbox, mut rx) = subscriber(1);
        channel.join(&outbox, None, usize::MAX).unwrap();
        drain(&mut rx);
        channel.deliver(&Frame::from("now"), None, Except::Nobody);
        assert!(channel.lanes.idle());
        assert_eq!(drain(&mut rx), ["now"]);
    }

    #[test]
    fn delivery_skips_the_excepted_connection_or_socket() {
        let channel = channel();
        let (a, mut rx_a) = subscriber(1);
        let (b, mut rx_b) = subscriber(2);
        for outbox in [&a, &b] {
            channel.join_pending(outbox, None).unwrap();
            channel.activate(outbox.id(), Vec::new(), 0);
        }
        channel.deliver(&Frame::from("x"), None, Except::Socket("1.1"));
        channel.deliver(&Frame::from("y"), None, Except::Conn(ConnId(2)));
        assert_eq!(drain(&mut rx_a), ["y"]);
        assert_eq!(drain(&mut rx_b), ["x"]);
    }
}
