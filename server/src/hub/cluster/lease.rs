//! Node liveness: the heartbeat that renews this node's lease, the reaper that cleans up
//! after nodes whose lease ran out, and the graceful leave on shutdown.

use std::sync::Arc;

use comnestor_protocol::{CloseCode, message};
use deadpool_redis::redis;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::bus::{self, Kind};
use super::{Cluster, ClusterError, scripts};
use crate::hub::{Frame, Hub};
use crate::webhooks::WebhookEvent;

/// One change the reap script made, as `{kind, app, channel, user, count, seq}`.
type Transition = (String, String, String, String, u64, u64);

/// Starts the bus listener and the heartbeat of `hub`'s cluster; both stop on `stopped`.
pub fn spawn(hub: &Arc<Hub>, stopped: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let Some(cluster) = hub.cluster().cloned() else {
        return Vec::new();
    };
    vec![
        tokio::spawn(bus::listen(hub.clone(), cluster.clone(), stopped.clone())),
        tokio::spawn(heartbeat(hub.clone(), cluster, stopped.clone())),
    ]
}

/// Every third of the lease: renews it, then reaps nodes whose lease ran out.
async fn heartbeat(hub: Arc<Hub>, cluster: Arc<Cluster>, stopped: watch::Receiver<bool>) {
    let mut every = crate::periodic::Every::new(cluster.ttl / 3, stopped);
    while every.tick().await {
        if cluster.is_halted() {
            continue;
        }
        if let Err(error) = renew(&hub, &cluster).await {
            tracing::warn!(%error, node = %cluster.node, "cannot renew this node's lease");
            continue;
        }
        if let Err(error) = reap_dead(&hub, &cluster).await {
            tracing::warn!(%error, "cannot look for dead nodes");
        }
    }
}

/// Renews the lease. When other nodes reaped this one (Redis was out of reach for longer
/// than the lease), its connections are no longer on record: the node registers again and
/// asks them to reconnect, which rebuilds their records.
async fn renew(hub: &Hub, cluster: &Cluster) -> Result<(), ClusterError> {
    let renewed = cluster.timed(lease_renewed(cluster)).await?;
    if !renewed {
        tracing::error!(node = %cluster.node, "this node was reaped as dead; reconnecting its clients");
        // Registered first, so that the clients find it ready when they come back. The old
        // connections' records, if they make any before closing, are removed when they close.
        cluster.timed(cluster.register()).await?;
        hub.close_all(CloseCode::Reconnect);
    }
    Ok(())
}

async fn lease_renewed(cluster: &Cluster) -> Result<bool, ClusterError> {
    let mut conn = cluster.conn().await?;
    let renewed: i64 = scripts::HEARTBEAT
        .key(cluster.keys.nodes())
        .key(cluster.keys.lease(&cluster.node))
        .arg(&cluster.node)
        .arg(cluster.ttl.as_millis() as u64)
        .invoke_async(&mut conn)
        .await?;
    Ok(renewed == 1)
}

async fn reap_dead(hub: &Hub, cluster: &Cluster) -> Result<(), ClusterError> {
    let dead = cluster.timed(dead_nodes(cluster)).await?;
    for node in dead {
        let transitions = reap(cluster, &node, false).await?;
        if !transitions.is_empty() {
            tracing::warn!(node = %node, changes = transitions.len(), "reaped a dead node");
        }
        announce(hub, cluster, transitions).await;
    }
    Ok(())
}

/// Registered nodes, other than this one, whose lease ran out.
async fn dead_nodes(cluster: &Cluster) -> Result<Vec<String>, ClusterError> {
    let mut conn = cluster.conn().await?;
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(cluster.keys.nodes())
        .query_async(&mut conn)
        .await?;
    let others: Vec<String> = nodes.into_iter().filter(|n| *n != cluster.node).collect();
    if others.is_empty() {
        return Ok(others);
    }
    let mut pipe = redis::pipe();
    for node in &others {
        pipe.exists(cluster.keys.lease(node));
    }
    let alive: Vec<bool> = pipe.query_async(&mut conn).await?;
    let dead = others.into_iter().zip(alive).filter(|(_, alive)| !alive);
    Ok(dead.map(|(node, _)| node).collect())
}

/// Removes everything `node` has on record. Unless `force`, only while it has no lease.
async fn reap(cluster: &Cluster, node: &str, force: bool) -> Result<Vec<Transition>, ClusterError> {
    cluster.timed(reap_now(cluster, node, force)).await
}

async fn reap_now(
    cluster: &Cluster,
    node: &str,
    force: bool,
) -> Result<Vec<Transition>, ClusterError> {
    let mut conn = cluster.conn().await?;
    let transitions = scripts::REAP
        .key(cluster.keys.nodes())
        .key(cluster.keys.lease(node))
        .key(cluster.keys.node_subs(node))
        .key(cluster.keys.node_online(node))
        .arg(node)
        .arg(&cluster.keys.prefix)
        .arg(if force { "1" } else { "0" })
        .invoke_async(&mut conn)
        .await?;
    Ok(transitions)
}

/// Announces what a reap changed, on this node and to the others.
async fn announce(hub: &Hub, cluster: &Cluster, transitions: Vec<Transition>) {
    for (kind, app, channel, user, count, seq) in transitions {
        let (kind, frame): (Kind, Option<Frame>) = match kind.as_str() {
            "removed" => {
                let event = WebhookEvent::MemberRemoved {
                    channel: channel.clone(),
                    user_id: user.clone(),
                };
                hub.notify_webhook(&app, event);
                let frame = message::member_removed(&channel, &user).into();
                (Kind::Member { channel, user, seq }, Some(frame))
            }
            "count" => {
                if count == 0 {
                    let channel = channel.clone();
                    hub.notify_webhook(&app, WebhookEvent::ChannelVacated { channel });
                }
                let frame = message::subscription_count(&channel, count as usize).into();
                (Kind::Count { channel, seq }, Some(frame))
            }
            "offline" => (
                Kind::Watch {
                    user,
                    online: false,
                    seq,
                },
                None,
            ),
            _ => continue,
        };
        hub.receive(&app, &kind, frame.clone());
        if let Err(error) = cluster.publish(&app, kind, frame.as_ref()).await {
            tracing::error!(%error, app_id = %app, "cannot announce a reaped node's change");
        }
    }
}

impl Cluster {
    /// Leaves the cluster on graceful shutdown, after the connections closed: whatever is
    /// still on record for this node (connections that did not close in time, leaves that
    /// could not be recorded) is removed and announced, and the node id is released.
    pub async fn leave(&self, hub: &Hub) {
        match reap(self, &self.node, true).await {
            Ok(transitions) => announce(hub, self, transitions).await,
            Err(error) => {
                tracing::warn!(%error, node = %self.node, "cannot leave the cluster; other nodes will reap this one")
            }
        }
    }
}
