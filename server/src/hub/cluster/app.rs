//! The cluster half of [`AppHub`]: the same operations as on a single node, with the
//! decisions (first and last connections, totals) taken by Redis.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use comnestor_protocol::{ChannelKind, ChannelName, message};
use serde_json::Value;

use super::records::{Joined, Refused};
use super::{Cluster, ClusterError, Kind};
use crate::hub::channel::{Channel, Except, JoinError};
use crate::hub::users::{Users, WatchGate};
use crate::hub::{AppHub, ConnId, Frame, Outbox, SubscribeError};
use crate::webhooks::WebhookEvent;

/// Longest pause between attempts to record a leave.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// A leave to record in Redis, retried in the background while Redis is unreachable.
/// Recording one is idempotent, so it also undoes a join whose answer was lost.
pub enum Leave {
    Channel {
        channel: ChannelName,
        socket_id: String,
    },
    Signout {
        user: String,
        socket_id: String,
    },
}

impl AppHub {
    fn app_id(&self) -> String {
        self.app().id.clone()
    }

    /// Applies a change announced by this node or another one.
    pub(crate) fn apply(&self, kind: &Kind, frame: Option<Frame>) {
        let channel_of = |name: &str| self.channel(name).zip(frame.clone());
        match kind {
            Kind::Event {
                channel,
                except,
                seq,
            } => {
                if let Some((channel, frame)) = channel_of(channel) {
                    let except = except.as_deref().map_or(Except::Nobody, Except::Socket);
                    channel.deliver(&frame, *seq, except);
                }
            }
            Kind::Member { channel, user, seq } => {
                if let Some((channel, frame)) = channel_of(channel)
                    && channel.newer_member_change(user, *seq)
                {
                    channel.deliver(&frame, Some(*seq), Except::Nobody);
                }
            }
            Kind::Count { channel, seq } => {
                let enabled = self.app().settings.subscription_count;
                if let Some((channel, frame)) = channel_of(channel)
                    && enabled
                    && channel.name().kind() != ChannelKind::Presence
                    && channel.newer_count(*seq)
                {
                    channel.deliver(&frame, None, Except::Nobody);
                }
            }
            Kind::Watch { user, online, seq } => {
                self.users.notify_watchers(user, *online, Some(*seq));
            }
            Kind::Terminate { user } => {
                self.users.terminate(user);
            }
        }
    }

    /// Applies a change here and sends it to the other nodes.
    async fn announce(
        &self,
        cluster: &Cluster,
        kind: Kind,
        frame: Option<Frame>,
    ) -> Result<(), ClusterError> {
        self.apply(&kind, frame.clone());
        let result = cluster.publish(&self.app_id(), kind, frame.as_ref()).await;
        if let Err(error) = &result {
            tracing::error!(%error, app_id = %self.app_id(), "cannot tell the other nodes");
        }
        result
    }

    pub(crate) async fn subscribe_clustered(
        self: &Arc<Self>,
        cluster: &Arc<Cluster>,
        outbox: &Outbox,
        name: &ChannelName,
        member: Option<(String, Value)>,
    ) -> Result<(), SubscribeError> {
        let max_members = self.app().settings.max_presence_members;
        let user = member.as_ref().map(|(id, _)| id.clone());
        let channel = loop {
            let channel = self.channel_entry(name);
            match channel.join_pending(outbox, user.clone()) {
                Ok(()) => break channel,
                Err(JoinError::Retired) => continue,
                Err(_) => return Err(SubscribeError::AlreadySubscribed),
            }
        };
        let socket_id = outbox.socket_id();
        let recorded = cluster
            .subscribe(
                &self.app_id(),
                name.as_str(),
                socket_id,
                member.as_ref(),
                max_members,
            )
            .await;
        let joined = match recorded {
            Ok(Ok(joined)) => joined,
            Ok(Err(refused)) => {
                self.cancel_join(&channel, outbox.id());
                return Err(match refused {
                    Refused::Full => SubscribeError::PresenceFull(max_members as usize),
                    Refused::AlreadySubscribed => SubscribeError::AlreadySubscribed,
                });
            }
            Err(error) => {
                tracing::error!(%error, channel = %name, "cannot record a subscription");
                self.cancel_join(&channel, outbox.id());
                // Redis may have run the join before the error: undo it.
                let channel = name.clone();
                let socket_id = socket_id.to_owned();
                let undo = Leave::Channel { channel, socket_id };
                self.record_leave(cluster, undo).await;
                return Err(SubscribeError::Unavailable);
            }
        };
        self.report_join(name, &joined, member.as_ref());
        // Announced before the joiner hears back, as on a single node: once a client has its
        // `subscription_succeeded`, every node has been told about its join. Its own
        // `member_added` is held and then skipped as part of its snapshot; its
        // `subscription_count` is held and follows the `subscription_succeeded`.
        if joined.new_member
            && let Some((user, info)) = &member
        {
            let frame = message::member_added(name.as_str(), user, info).into();
            let kind = Kind::Member {
                channel: name.to_string(),
                user: user.clone(),
                seq: joined.seq,
            };
            let _ = self.announce(cluster, kind, Some(frame)).await;
        }
        self.announce_count(cluster, name, joined.count, joined.seq)
            .await;
        channel.activate(outbox.id(), first_frames(name, &joined), joined.seq);
        Ok(())
    }

    /// The webhooks of a join, as Redis decided them for the whole cluster.
    fn report_join(&self, name: &ChannelName, joined: &Joined, member: Option<&(String, Value)>) {
        let channel = || name.as_str().to_owned();
        if joined.count == 1 {
            self.notify_webhook(WebhookEvent::ChannelOccupied { channel: channel() });
        }
        if let (true, Some((user_id, _))) = (joined.new_member, member) {
            let user_id = user_id.clone();
            self.notify_webhook(WebhookEvent::MemberAdded {
                channel: channel(),
                user_id,
            });
        }
        if name.is_cache() && joined.cached.is_none() {
            self.notify_webhook(WebhookEvent::CacheMiss { channel: channel() });
        }
    }

    fn cancel_join(&self, channel: &Channel, conn: ConnId) {
        channel.cancel_pending(conn);
        if channel.subscription_count() == 0 {
            self.channels
                .remove_if(channel.name().as_str(), |_, c| c.retire_if_empty());
        }
    }

    async fn announce_count(&self, cluster: &Cluster, name: &ChannelName, count: u64, seq: u64) {
        if let Some(frame) = self.subscription_count_frame(name, count as usize) {
            let kind = Kind::Count {
                channel: name.to_string(),
                seq,
            };
            let _ = self.announce(cluster, kind, Some(frame)).await;
        }
    }

    /// Records a leave, announcing what it changed; while Redis is unreachable it is retried
    /// in the background.
    pub(crate) async fn record_leave(self: &Arc<Self>, cluster: &Arc<Cluster>, leave: Leave) {
        if let Err(error) = self.try_record_leave(cluster, &leave).await {
            tracing::warn!(%error, "cannot record a leave; retrying in the background");
            let hub = self.clone();
            let cluster = cluster.clone();
            tokio::spawn(async move { hub.retry_leave(&cluster, leave).await });
        }
    }

    async fn retry_leave(&self, cluster: &Cluster, leave: Leave) {
        let mut delay = Duration::from_millis(100);
        loop {
            tokio::time::sleep(delay).await;
            match self.try_record_leave(cluster, &leave).await {
                Ok(()) => return,
                Err(ClusterError::Halted) => return,
                Err(error) => tracing::debug!(%error, "still cannot record a leave"),
            }
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    async fn try_record_leave(&self, cluster: &Cluster, leave: &Leave) -> Result<(), ClusterError> {
        let app = self.app_id();
        match leave {
            Leave::Channel { channel, socket_id } => {
                let left = cluster
                    .unsubscribe(&app, channel.as_str(), socket_id)
                    .await?;
                if !left.recorded {
                    return Ok(());
                }
                if left.removed_member
                    && let Some(user) = &left.user
                {
                    self.notify_webhook(WebhookEvent::MemberRemoved {
                        channel: channel.to_string(),
                        user_id: user.clone(),
                    });
                    let frame = message::member_removed(channel.as_str(), user).into();
                    let kind = Kind::Member {
                        channel: channel.to_string(),
                        user: user.clone(),
                        seq: left.seq,
                    };
                    let _ = self.announce(cluster, kind, Some(frame)).await;
                }
                if left.count == 0 {
                    let channel = channel.to_string();
                    self.notify_webhook(WebhookEvent::ChannelVacated { channel });
                }
                self.announce_count(cluster, channel, left.count, left.seq)
                    .await;
            }
            Leave::Signout { user, socket_id } => {
                if let Some(seq) = cluster.signout(&app, socket_id).await? {
                    let kind = Kind::Watch {
                        user: user.clone(),
                        online: false,
                        seq,
                    };
                    let _ = self.announce(cluster, kind, None).await;
                }
            }
        }
        Ok(())
    }

    /// Signs a connection in. `replies` (the `signin_success`, perhaps an error) are sent
    /// before the watchlist frame, and nothing about the watchlist overtakes them.
    pub(crate) async fn signin_clustered(
        self: &Arc<Self>,
        cluster: &Arc<Cluster>,
        outbox: &Outbox,
        user: &str,
        watchlist: &[String],
        replies: Vec<Frame>,
    ) -> Result<(), ClusterError> {
        self.users.add(outbox, user);
        let gate = (!watchlist.is_empty()).then(|| Arc::new(Mutex::new(WatchGate::default())));
        if let Some(gate) = &gate {
            self.users.watch(outbox, watchlist, Some(gate.clone()));
        }
        let socket_id = outbox.socket_id();
        let signed = match cluster
            .signin(&self.app_id(), socket_id, user, watchlist)
            .await
        {
            Ok(signed) => signed,
            Err(error) => {
                tracing::error!(%error, "cannot record a sign-in");
                self.users.remove(outbox.id(), user);
                self.users.unwatch(outbox.id());
                // Redis may have run the sign-in before the error: undo it.
                let user = user.to_owned();
                let socket_id = socket_id.to_owned();
                self.record_leave(cluster, Leave::Signout { user, socket_id })
                    .await;
                return Err(error);
            }
        };
        let mut first = replies;
        if let Some(gate) = &gate {
            let (online, offline): (Vec<&str>, Vec<&str>) = watchlist
                .iter()
                .map(String::as_str)
                .partition(|id| signed.online.iter().any(|o| o == id));
            first.push(message::watchlist_events(&online, &offline).into());
            Users::open_gate(gate, outbox, first, signed.seq);
        } else {
            first.into_iter().for_each(|frame| outbox.send(frame));
        }
        if signed.first {
            let kind = Kind::Watch {
                user: user.to_owned(),
                online: true,
                seq: signed.seq,
            };
            let _ = self.announce(cluster, kind, None).await;
        }
        Ok(())
    }

    /// Publishes to one channel on every node.
    pub(crate) async fn publish_clustered(
        &self,
        cluster: &Cluster,
        name: &ChannelName,
        event: &str,
        data: &str,
        except: Option<&str>,
    ) -> Result<usize, ClusterError> {
        let frame: Frame = message::channel_event(event, name.as_str(), data).into();
        let seq = match name.is_cache() {
            true => Some(
                cluster
                    .store_cached(&self.app_id(), name.as_str(), &frame, data)
                    .await?,
            ),
            false => None,
        };
        let except_socket = except.map_or(Except::Nobody, Except::Socket);
        let sent = self
            .channel(name.as_str())
            .map_or(0, |channel| channel.deliver(&frame, seq, except_socket));
        let kind = Kind::Event {
            channel: name.to_string(),
            except: except.map(str::to_owned),
            seq,
        };
        cluster.publish(&self.app_id(), kind, Some(&frame)).await?;
        Ok(sent)
    }

    /// Sends a client event to the other nodes, after this node delivered it.
    pub(crate) async fn relay_client_event(
        &self,
        cluster: &Cluster,
        channel: &str,
        frame: &Frame,
        sender: &Outbox,
    ) -> Result<(), ClusterError> {
        let kind = Kind::Event {
            channel: channel.to_owned(),
            except: Some(sender.socket_id().to_owned()),
            seq: None,
        };
        cluster.publish(&self.app_id(), kind, Some(frame)).await
    }

    pub(crate) async fn terminate_clustered(
        &self,
        cluster: &Cluster,
        user: &str,
    ) -> Result<usize, ClusterError> {
        let closed = self.users.terminate(user);
        let kind = Kind::Terminate {
            user: user.to_owned(),
        };
        cluster.publish(&self.app_id(), kind, None).await?;
        Ok(closed)
    }
}

/// What a cluster join gets first: `subscription_succeeded` with the cluster's members,
/// then on a cache channel the cached event or `pusher:cache_miss`.
fn first_frames(name: &ChannelName, joined: &Joined) -> Vec<Frame> {
    let succeeded = if name.kind() == ChannelKind::Presence {
        let mut list: Vec<(&str, &Value)> = joined
            .members
            .iter()
            .map(|(id, info)| (id.as_str(), info))
            .collect();
        list.sort_by(|a, b| a.0.cmp(b.0));
        message::presence_subscription_succeeded(name.as_str(), list)
    } else {
        message::subscription_succeeded(name.as_str())
    };
    let mut first = vec![succeeded.into()];
    if name.is_cache() {
        first.push(match &joined.cached {
            Some(frame) => Frame::from(frame.clone()),
            None => message::cache_miss(name.as_str()).into(),
        });
    }
    first
}
