//! Several nodes behind a load balancer, sharing their live state through Redis.
//!
//! Used when `redis_url` is set (turn it off with `cluster = false`). Without Redis the hub
//! never reaches this module, and its hot path is the same as on a single node.
//!
//! # What lives where
//!
//! Each node keeps its own connections and channels in memory and delivers to them
//! directly. Redis holds what the cluster must agree on, under the `redis_prefix`
//! (`comnestor:` by default; tests use one prefix each):
//!
//! | key | type | what |
//! |---|---|---|
//! | `nodes` | set | registered node ids |
//! | `node:{id}:alive` | string with a TTL | the node's lease, renewed by its heartbeat |
//! | `node:{id}:subs` | hash `app\nchannel\nsocket_id` → presence user id or `""` | the node's subscriptions |
//! | `node:{id}:online` | hash `app\nsocket_id` → user id | the node's signed-in connections |
//! | `app:{app}:counts` | hash channel → n | subscriptions in the whole cluster |
//! | `app:{app}:presence:{channel}:conns` | hash user → n | a user's connections |
//! | `app:{app}:presence:{channel}:members` | hash user → info | the members |
//! | `app:{app}:online` | hash user → n | signed-in connections per user |
//! | `app:{app}:cache:{channel}` | hash, 30-minute TTL | a cache channel's last event |
//! | `app:{app}:seq` | counter | stamps every change of the app |
//! | `bus` | pub/sub channel | frames and changes for the other nodes |
//!
//! # Exactness
//!
//! Every change runs as one Lua script ([`scripts`]) that updates the node's hash and the
//! cluster totals together, so concurrent joins and leaves on different nodes cannot both
//! see "first connection" or both miss "last connection". The node's records are kept per
//! socket id, so a leave is applied at most once however often it is retried, and a join
//! whose answer was lost can be undone exactly. The script returns the new totals
//! and a sequence number from the app's counter. The node that made the change announces it
//! (`member_added`, `member_removed`, `subscription_count`, watchlist events): it delivers
//! to its own subscribers directly and publishes one message on the bus for the others,
//! which ignore their own echo.
//!
//! The sequence numbers keep the announcements in Redis's order on every node: a change
//! older than one already applied to the same member, count or watched user is dropped, and
//! a subscriber skips changes already reflected in the snapshot it was given on joining.
//! Frames for a join that still waits on Redis are held, so `subscription_succeeded` stays
//! the first frame of the channel.
//!
//! # Dead nodes
//!
//! Each node renews a lease (`node_ttl`, default 15 s) every third of it. Any node that sees
//! a registered node without a lease reaps it: [`scripts::REAP`] runs the leave logic for all
//! of that node's entries at once and returns the transitions, which the reaping node
//! announces; because the script also removes the node from `nodes`, exactly one reaper gets
//! them. A graceful shutdown reaps the node's own leftovers the same way.
//!
//! # While Redis is unreachable
//!
//! - A subscription or sign-in that cannot be recorded is refused with a `pusher:error`.
//!   Every Redis operation gives up after [`OP_TIMEOUT`]; since Redis may still have run it,
//!   a refused join is then undone in the background, like a leave.
//! - An HTTP publish still reaches this node's subscribers; the API answers 503, since other
//!   nodes may have missed it. A client event that cannot be published gets a `pusher:error`.
//! - Leaves (unsubscribe, disconnect, sign-out) are retried in the background until Redis
//!   answers; the counts stay too high meanwhile.
//! - The HTTP API's channel and user queries answer 503.
//! - If the outage outlasts the lease, the other nodes reap this one. Its heartbeat notices
//!   when Redis is back, closes its connections with 4200 so that clients reconnect and
//!   rejoin, and registers again.
//! - Bus messages sent while this node's subscription connection is down are lost to it:
//!   Redis pub/sub does not replay. The listener reconnects with a backoff.
//!
//! # Known shortcomings
//!
//! Every node receives every bus message; routing by channel interest is not implemented.
//! The scripts build some key names themselves, so Redis Cluster (sharded keys) is not
//! supported; use a single Redis or Sentinel. Reaping a node with a very large number of
//! entries runs as one long script. `max_connections` is still counted per node. The
//! 5-second throttle of `subscription_count` on channels above 100 subscribers applies per
//! originating node.
//!
//! Webhooks are reported once per cluster transition, by the node whose change Redis
//! decided (the reaper for a dead node's). But each node's webhook batcher pairs additions
//! with removals on its own: a `channel_vacated` or `member_removed` decided on another node
//! than the matching `channel_occupied` or `member_added` is dropped there, and the first
//! node's leftover count can hold back that channel's next `channel_occupied`. Cluster
//! webhooks stay wrong across nodes until the batcher can take the hub's transitions as
//! exact.

mod app;
mod bus;
mod lease;
mod records;
mod scripts;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_redis::redis;

pub use app::Leave;
pub use bus::Kind;
pub use lease::spawn;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub redis_url: String,
    /// Put in front of every key and the bus channel, so several clusters (or tests) can
    /// share one Redis.
    pub prefix: String,
    /// How long a node counts as alive after its last heartbeat.
    pub node_ttl: Duration,
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no Redis connection")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("Redis command failed")]
    Redis(#[from] redis::RedisError),
    #[error("cannot create the Redis pool")]
    CreatePool(#[from] deadpool_redis::CreatePoolError),
    #[error("node id {0} is taken")]
    NodeIdTaken(String),
    #[error("Redis did not answer in time")]
    Timeout,
    #[error("this node is halted")]
    Halted,
}

/// How long any Redis operation may take before it counts as failed.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest number of pooled Redis connections per node.
const POOL_SIZE: usize = 32;

/// This node's handle on the shared state.
pub struct Cluster {
    pool: deadpool_redis::Pool,
    client: redis::Client,
    node: String,
    keys: Keys,
    ttl: Duration,
    halted: AtomicBool,
}

impl Cluster {
    /// Connects to Redis and registers a new node id, which is also the first part of this
    /// node's socket ids, so those are unique across the cluster.
    pub async fn join(config: &ClusterConfig) -> Result<Self, ClusterError> {
        let mut pool_config = deadpool_redis::Config::from_url(&config.redis_url);
        pool_config.pool = Some(deadpool_redis::PoolConfig::new(POOL_SIZE));
        let pool = pool_config.create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
        let client = redis::Client::open(config.redis_url.as_str())?;
        let mut last = None;
        for _ in 0..5 {
            let node = (rand::random::<u32>() % 999_999_999 + 1).to_string();
            let cluster = Self {
                pool: pool.clone(),
                client: client.clone(),
                keys: Keys::new(&config.prefix),
                node,
                ttl: config.node_ttl,
                halted: AtomicBool::new(false),
            };
            match cluster.timed(cluster.register()).await {
                Ok(()) => return Ok(cluster),
                Err(error @ ClusterError::NodeIdTaken(_)) => last = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or(ClusterError::Halted))
    }

    /// This node's id: digits, unique among registered nodes.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Simulates a crash, for tests: from now on this node sends nothing to Redis (no
    /// heartbeat, no records, no publishes) and ignores the bus, so the others reap it.
    pub fn halt(&self) {
        self.halted.store(true, Ordering::Release);
    }

    /// Undoes [`Cluster::halt`], for tests: the node talks to Redis again. If it was reaped
    /// meanwhile, its next heartbeat asks its clients to reconnect (4200) and registers it
    /// again, as after a real outage.
    pub fn resume(&self) {
        self.halted.store(false, Ordering::Release);
    }

    pub fn is_halted(&self) -> bool {
        self.halted.load(Ordering::Acquire)
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, ClusterError> {
        if self.is_halted() {
            return Err(ClusterError::Halted);
        }
        // Boxed: deadpool's `get` builds redis's whole connection setup into its future
        // (about 7 KB), which would otherwise sit inside every operation's future.
        Ok(Box::pin(self.pool.get()).await?)
    }

    /// Runs a Redis operation, failing it after [`OP_TIMEOUT`].
    async fn timed<T>(
        &self,
        op: impl Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        tokio::time::timeout(OP_TIMEOUT, op)
            .await
            .map_err(|_| ClusterError::Timeout)?
    }

    async fn register(&self) -> Result<(), ClusterError> {
        let mut conn = self.conn().await?;
        let registered: i64 = scripts::REGISTER
            .key(self.keys.nodes())
            .key(self.keys.lease(&self.node))
            .arg(&self.node)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        if registered == 1 {
            Ok(())
        } else {
            Err(ClusterError::NodeIdTaken(self.node.clone()))
        }
    }
}

/// Key names under the configured prefix.
struct Keys {
    prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    fn bus(&self) -> String {
        format!("{}bus", self.prefix)
    }

    fn lease(&self, node: &str) -> String {
        format!("{}node:{node}:alive", self.prefix)
    }

    fn node_subs(&self, node: &str) -> String {
        format!("{}node:{node}:subs", self.prefix)
    }

    fn node_online(&self, node: &str) -> String {
        format!("{}node:{node}:online", self.prefix)
    }

    fn app(&self, app: &str, what: &str) -> String {
        format!("{}app:{app}:{what}", self.prefix)
    }

    fn channel(&self, app: &str, what: &str, channel: &str) -> String {
        format!("{}app:{app}:{what}:{channel}", self.prefix)
    }

    fn presence(&self, app: &str, channel: &str, what: &str) -> String {
        format!("{}app:{app}:presence:{channel}:{what}", self.prefix)
    }
}
