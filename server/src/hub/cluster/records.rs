//! Recording this node's subscriptions and sign-ins in Redis, and reading the totals.
//!
//! Every method gives up after [`super::OP_TIMEOUT`].

use deadpool_redis::redis;
use serde_json::Value;

use super::{Cluster, ClusterError, scripts};
use crate::hub::{CACHE_TTL, ChannelStats};

/// What Redis answered to a join.
pub struct Joined {
    /// Whether this was the user's first connection to the channel in the cluster.
    pub new_member: bool,
    /// Subscriptions in the cluster after the join.
    pub count: u64,
    /// The join's sequence number: the state below is as of it.
    pub seq: u64,
    /// For presence: every member with its info.
    pub members: Vec<(String, Value)>,
    /// For cache channels: the cached frame.
    pub cached: Option<String>,
}

/// Why Redis turned a join down.
pub enum Refused {
    /// The presence channel has its maximum number of members.
    Full,
    /// This connection's subscription is already on record.
    AlreadySubscribed,
}

/// What Redis answered to a leave.
pub struct Left {
    /// False when the subscription was not on record (a repeated leave, or the node was
    /// reaped meanwhile); nothing changed then.
    pub recorded: bool,
    /// Whether that was the user's last connection to the channel in the cluster.
    pub removed_member: bool,
    /// The presence user the subscription was for.
    pub user: Option<String>,
    pub count: u64,
    pub seq: u64,
}

/// What Redis answered to a sign-in.
pub struct SignedIn {
    /// Whether this is the user's first signed-in connection in the cluster.
    pub first: bool,
    pub seq: u64,
    /// The watched ids that are online.
    pub online: Vec<String>,
}

type JoinReply = (i64, i64, u64, u64, Vec<String>, Option<String>);

impl Cluster {
    /// Records the subscription of the connection `socket_id` on this node.
    pub async fn subscribe(
        &self,
        app: &str,
        channel: &str,
        socket_id: &str,
        member: Option<&(String, Value)>,
        max_members: u32,
    ) -> Result<Result<Joined, Refused>, ClusterError> {
        let (user, info) = member.map_or((String::new(), String::new()), |(id, info)| {
            (id.clone(), info.to_string())
        });
        let reply: JoinReply = self
            .timed(async {
                let mut conn = self.conn().await?;
                let reply = scripts::SUBSCRIBE
                    .key(self.keys.nodes())
                    .key(self.keys.node_subs(&self.node))
                    .key(self.keys.app(app, "counts"))
                    .key(self.keys.app(app, "seq"))
                    .key(self.keys.presence(app, channel, "conns"))
                    .key(self.keys.presence(app, channel, "members"))
                    .key(self.keys.channel(app, "cache", channel))
                    .arg(&self.node)
                    .arg(format!("{app}\n{channel}\n{socket_id}"))
                    .arg(channel)
                    .arg(&user)
                    .arg(info)
                    .arg(max_members)
                    .invoke_async(&mut conn)
                    .await?;
                Ok(reply)
            })
            .await?;
        let (status, new_member, count, seq, members, cached) = reply;
        match status {
            1 => {}
            -1 => return Ok(Err(Refused::Full)),
            _ => return Ok(Err(Refused::AlreadySubscribed)),
        }
        let members = members
            .chunks_exact(2)
            .map(|pair| {
                let info = serde_json::from_str(&pair[1]).unwrap_or(Value::Null);
                (pair[0].clone(), info)
            })
            .collect();
        Ok(Ok(Joined {
            new_member: new_member == 1,
            count,
            seq,
            members,
            cached,
        }))
    }

    /// Records that the subscription of `socket_id` ended. Safe to repeat.
    pub async fn unsubscribe(
        &self,
        app: &str,
        channel: &str,
        socket_id: &str,
    ) -> Result<Left, ClusterError> {
        let (recorded, removed, user, count, seq): (i64, i64, String, u64, u64) = self
            .timed(async {
                let mut conn = self.conn().await?;
                let reply = scripts::UNSUBSCRIBE
                    .key(self.keys.node_subs(&self.node))
                    .key(self.keys.app(app, "counts"))
                    .key(self.keys.app(app, "seq"))
                    .key(self.keys.presence(app, channel, "conns"))
                    .key(self.keys.presence(app, channel, "members"))
                    .arg(format!("{app}\n{channel}\n{socket_id}"))
                    .arg(channel)
                    .invoke_async(&mut conn)
                    .await?;
                Ok(reply)
            })
            .await?;
        Ok(Left {
            recorded: recorded == 1,
            removed_member: removed == 1,
            user: Some(user).filter(|u| !u.is_empty()),
            count,
            seq,
        })
    }

    /// Records that `socket_id` signed in as `user` and reads who of `watchlist` is online.
    pub async fn signin(
        &self,
        app: &str,
        socket_id: &str,
        user: &str,
        watchlist: &[String],
    ) -> Result<SignedIn, ClusterError> {
        let (first, seq, online): (i64, u64, Vec<String>) = self
            .timed(async {
                let mut conn = self.conn().await?;
                let reply = scripts::SIGNIN
                    .key(self.keys.nodes())
                    .key(self.keys.node_online(&self.node))
                    .key(self.keys.app(app, "online"))
                    .key(self.keys.app(app, "seq"))
                    .arg(&self.node)
                    .arg(format!("{app}\n{socket_id}"))
                    .arg(user)
                    .arg(watchlist)
                    .invoke_async(&mut conn)
                    .await?;
                Ok(reply)
            })
            .await?;
        Ok(SignedIn {
            first: first == 1,
            seq,
            online,
        })
    }

    /// Records that the sign-in of `socket_id` ended. Returns the sequence number when it
    /// was the user's last signed-in connection in the cluster. Safe to repeat.
    pub async fn signout(&self, app: &str, socket_id: &str) -> Result<Option<u64>, ClusterError> {
        let (last, seq): (i64, u64) = self
            .timed(async {
                let mut conn = self.conn().await?;
                let reply = scripts::SIGNOUT
                    .key(self.keys.node_online(&self.node))
                    .key(self.keys.app(app, "online"))
                    .key(self.keys.app(app, "seq"))
                    .arg(format!("{app}\n{socket_id}"))
                    .invoke_async(&mut conn)
                    .await?;
                Ok(reply)
            })
            .await?;
        Ok((last == 1).then_some(seq))
    }

    /// Stores a cache channel's last event; returns its sequence number.
    pub async fn store_cached(
        &self,
        app: &str,
        channel: &str,
        frame: &str,
        data: &str,
    ) -> Result<u64, ClusterError> {
        self.timed(async {
            let mut conn = self.conn().await?;
            let seq = scripts::CACHE
                .key(self.keys.channel(app, "cache", channel))
                .key(self.keys.app(app, "seq"))
                .arg(frame)
                .arg(data)
                .arg(CACHE_TTL.as_secs())
                .invoke_async(&mut conn)
                .await?;
            Ok(seq)
        })
        .await
    }

    /// A cache channel's cached `data` and seconds left, if it has one.
    pub async fn cached(
        &self,
        app: &str,
        channel: &str,
    ) -> Result<Option<(String, u64)>, ClusterError> {
        let key = self.keys.channel(app, "cache", channel);
        let (data, ttl): (Option<String>, i64) = self
            .timed(async {
                let mut conn = self.conn().await?;
                let reply = redis::pipe()
                    .hget(&key, "data")
                    .ttl(&key)
                    .query_async(&mut conn)
                    .await?;
                Ok(reply)
            })
            .await?;
        Ok(data.filter(|_| ttl > 0).map(|d| (d, ttl as u64)))
    }

    /// A channel's subscriptions and presence members in the whole cluster.
    pub async fn channel_stats(
        &self,
        app: &str,
        channel: &str,
    ) -> Result<ChannelStats, ClusterError> {
        let (count, users): (Option<u64>, u64) = self
            .timed(async {
                let mut conn = self.conn().await?;
                let reply = redis::pipe()
                    .hget(self.keys.app(app, "counts"), channel)
                    .hlen(self.keys.presence(app, channel, "members"))
                    .query_async(&mut conn)
                    .await?;
                Ok(reply)
            })
            .await?;
        Ok(ChannelStats {
            subscription_count: count.unwrap_or(0) as usize,
            user_count: users as usize,
        })
    }

    /// Occupied channels whose name starts with `prefix`, sorted, with their stats.
    pub async fn occupied(
        &self,
        app: &str,
        prefix: &str,
    ) -> Result<Vec<(String, ChannelStats)>, ClusterError> {
        self.timed(self.occupied_now(app, prefix)).await
    }

    async fn occupied_now(
        &self,
        app: &str,
        prefix: &str,
    ) -> Result<Vec<(String, ChannelStats)>, ClusterError> {
        let mut conn = self.conn().await?;
        let counts: Vec<(String, u64)> = redis::cmd("HGETALL")
            .arg(self.keys.app(app, "counts"))
            .query_async(&mut conn)
            .await?;
        let mut found: Vec<(String, u64)> = counts
            .into_iter()
            .filter(|(name, count)| name.starts_with(prefix) && *count > 0)
            .collect();
        found.sort();
        let mut pipe = redis::pipe();
        for (name, _) in &found {
            pipe.hlen(self.keys.presence(app, name, "members"));
        }
        let users: Vec<u64> = if found.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await?
        };
        let stats = found.into_iter().zip(users).map(|((name, count), users)| {
            let stats = ChannelStats {
                subscription_count: count as usize,
                user_count: users as usize,
            };
            (name, stats)
        });
        Ok(stats.collect())
    }

    /// The user ids of a presence channel's members, sorted.
    pub async fn member_ids(&self, app: &str, channel: &str) -> Result<Vec<String>, ClusterError> {
        let mut ids: Vec<String> = self
            .timed(async {
                let mut conn = self.conn().await?;
                let ids = redis::cmd("HKEYS")
                    .arg(self.keys.presence(app, channel, "members"))
                    .query_async(&mut conn)
                    .await?;
                Ok(ids)
            })
            .await?;
        ids.sort();
        Ok(ids)
    }
}
