//! Stage 3, the operator stream: the metadata of every accepted event, published so operators
//! can watch the flow live (`GET /api/stream`).
//!
//! In the embedded default the bus is in-process; in production it is a Redis channel, so an
//! operator connected to any node sees the events every node accepted.

use std::sync::Arc;

use deadpool_redis::redis::AsyncCommands;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// The Redis channel the metadata is published on, after the cluster's key prefix.
pub const REDIS_CHANNEL_SUFFIX: &str = "events";

/// How many messages a slow stream reader may fall behind before it skips ahead.
const BUFFER: usize = 1024;

/// What operators see of an accepted event: no data, only its shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, poem_openapi::Object)]
pub struct EventMetadata {
    pub id: String,
    pub app_id: String,
    pub channels: Vec<String>,
    pub event: String,
    /// Size of `data` in bytes.
    pub size: u64,
    /// Unix milliseconds when the intake received it.
    pub received_at: i64,
}

/// Publishes event metadata and hands out subscriptions to it.
#[derive(Clone)]
pub struct Bus {
    local: broadcast::Sender<Arc<EventMetadata>>,
    redis: Option<deadpool_redis::Pool>,
    /// The Redis channel, `{prefix}events`.
    channel: String,
}

impl Bus {
    /// An in-process bus.
    pub fn in_process() -> Self {
        Self {
            local: broadcast::channel(BUFFER).0,
            redis: None,
            channel: String::new(),
        }
    }

    /// A bus on Redis: publishing goes to the channel `{prefix}events`, and a background task
    /// relays what Redis delivers there (from every node) to local subscribers.
    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let channel = format!("{prefix}{REDIS_CHANNEL_SUFFIX}");
        let pool = deadpool_redis::Config::from_url(url)
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
        let mut conn = pool.get().await?;
        let _: String = deadpool_redis::redis::cmd("PING")
            .query_async(&mut conn)
            .await?;
        let bus = Self {
            local: broadcast::channel(BUFFER).0,
            redis: Some(pool),
            channel: channel.clone(),
        };
        let client = deadpool_redis::redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        let local = bus.local.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                match serde_json::from_str::<EventMetadata>(&payload) {
                    Ok(metadata) => {
                        let _ = local.send(Arc::new(metadata));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "ignoring malformed event metadata from Redis")
                    }
                }
            }
            tracing::warn!("Redis event stream ended; live event stream stops");
        });
        Ok(bus)
    }

    /// Publishes metadata. Failures are logged, never returned: the operator stream must not
    /// make the intake fail.
    pub async fn publish(&self, metadata: EventMetadata) {
        let Some(pool) = &self.redis else {
            let _ = self.local.send(Arc::new(metadata));
            return;
        };
        let payload = match serde_json::to_string(&metadata) {
            Ok(payload) => payload,
            Err(_) => return,
        };
        let result = async {
            let mut conn = pool.get().await?;
            conn.publish::<_, _, ()>(&self.channel, payload).await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, event_id = %metadata.id, "cannot publish event metadata");
        }
    }

    /// A live feed of metadata from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventMetadata>> {
        self.local.subscribe()
    }
}
