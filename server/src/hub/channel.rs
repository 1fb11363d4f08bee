//! One channel's subscribers and, for presence channels, its members.

use std::collections::{HashMap, hash_map::Entry};
use std::sync::{Mutex, RwLock};

use comnestor_protocol::{ChannelKind, ChannelName, message};
use serde_json::Value;

use super::outbox::{ConnId, Frame, Outbox};

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
}

#[derive(Default)]
struct Subscribers {
    by_conn: HashMap<ConnId, Subscriber>,
    /// Set once the channel is removed from its app; a join must then retry on a fresh one.
    retired: bool,
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
}

impl Channel {
    pub fn new(name: ChannelName) -> Self {
        Self {
            name,
            subscribers: Default::default(),
            members: Default::default(),
        }
    }

    pub fn name(&self) -> &ChannelName {
        &self.name
    }

    pub fn is_presence(&self) -> bool {
        self.name.kind() == ChannelKind::Presence
    }

    pub fn subscription_count(&self) -> usize {
        self.read().by_conn.len()
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
                    for subscriber in subscribers.by_conn.values() {
                        subscriber.outbox.send(frame.clone());
                    }
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
        subscribers.by_conn.insert(
            outbox.id(),
            Subscriber {
                outbox: outbox.clone(),
                user_id,
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
        let subscriber = subscribers.by_conn.remove(&conn)?;
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
                for other in subscribers.by_conn.values() {
                    other.outbox.send(frame.clone());
                }
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

    /// Queues `frame` for every subscriber except the one with `except` as socket id.
    /// Returns how many subscribers it was queued for.
    pub fn broadcast(&self, frame: &Frame, except: Option<&str>) -> usize {
        let subscribers = self.read();
        let mut sent = 0;
        for subscriber in subscribers.by_conn.values() {
            if except.is_some_and(|socket_id| subscriber.outbox.socket_id() == socket_id) {
                continue;
            }
            subscriber.outbox.send(frame.clone());
            sent += 1;
        }
        sent
    }

    /// Queues `frame` for every subscriber except the connection `except`.
    pub fn broadcast_except_conn(&self, frame: &Frame, except: ConnId) {
        let subscribers = self.read();
        for (conn, subscriber) in &subscribers.by_conn {
            if *conn != except {
                subscriber.outbox.send(frame.clone());
            }
        }
    }

    /// Marks the channel retired if it has no subscribers; returns whether it did.
    pub fn retire_if_empty(&self) -> bool {
        let mut subscribers = self.write();
        if subscribers.by_conn.is_empty() {
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
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }
}
