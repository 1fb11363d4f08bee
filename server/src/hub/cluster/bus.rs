//! Messages between nodes, on one Redis pub/sub channel.
//!
//! A message is a JSON header line, then `\n` and the frame exactly as subscribers get it,
//! so a frame is encoded once by the node that made it and never re-encoded.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Cluster, ClusterError};
use crate::hub::{Frame, Hub};

/// Who sent a message and for which app.
#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub node: String,
    pub app: String,
    #[serde(flatten)]
    pub kind: Kind,
}

/// What a message asks the other nodes to do. Those with a frame carry it after the header.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Kind {
    /// Deliver the frame to the channel's subscribers, except `except` (a socket id).
    /// `seq` is set for cache channels, whose events are stamped when stored.
    Event {
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    /// A `member_added` or `member_removed` frame for `user`.
    Member {
        channel: String,
        user: String,
        seq: u64,
    },
    /// A `subscription_count` frame.
    Count { channel: String, seq: u64 },
    /// `user` went online or offline in the whole cluster.
    Watch {
        user: String,
        online: bool,
        seq: u64,
    },
    /// Close the connections signed in as `user`.
    Terminate { user: String },
}

pub fn encode(header: &Header, frame: Option<&str>) -> String {
    let mut payload = serde_json::to_string(header).unwrap_or_default();
    if let Some(frame) = frame {
        payload.push('\n');
        payload.push_str(frame);
    }
    payload
}

pub fn decode(payload: &str) -> Option<(Header, Option<Frame>)> {
    let (header, frame) = match payload.split_once('\n') {
        Some((header, frame)) => (header, Some(Frame::from(frame))),
        None => (payload, None),
    };
    let header = serde_json::from_str(header).ok()?;
    Some((header, frame))
}

impl Cluster {
    /// Sends a message to every other node.
    pub async fn publish(
        &self,
        app: &str,
        kind: Kind,
        frame: Option<&Frame>,
    ) -> Result<(), ClusterError> {
        let header = Header {
            node: self.node.clone(),
            app: app.to_owned(),
            kind,
        };
        let payload = encode(&header, frame.map(|f| f.as_str()));
        self.timed(async {
            let mut conn = self.conn().await?;
            deadpool_redis::redis::cmd("PUBLISH")
                .arg(self.keys.bus())
                .arg(payload)
                .query_async::<()>(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }
}

/// Relays the bus to `hub` until `stopped`, reconnecting with a backoff when the
/// subscription connection drops.
pub async fn listen(hub: Arc<Hub>, cluster: Arc<Cluster>, mut stopped: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::select! {
            result = relay(&hub, &cluster) => match result {
                Ok(()) => tracing::warn!("cluster bus subscription ended; reconnecting"),
                Err(error) => tracing::warn!(%error, "cluster bus unavailable; reconnecting"),
            },
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn relay(hub: &Hub, cluster: &Cluster) -> Result<(), ClusterError> {
    let mut pubsub = cluster.client.get_async_pubsub().await?;
    pubsub.subscribe(cluster.keys.bus()).await?;
    tracing::debug!(node = %cluster.node, "listening to the cluster bus");
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        if cluster.is_halted() {
            continue;
        }
        let Ok(payload) = message.get_payload::<String>() else {
            continue;
        };
        match decode(&payload) {
            Some((header, _)) if header.node == cluster.node => {}
            Some((header, frame)) => hub.receive(&header.app, &header.kind, frame),
            None => tracing::warn!("ignoring a malformed cluster bus message"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_survives_the_trip() {
        let header = Header {
            node: "7".into(),
            app: "1".into(),
            kind: Kind::Event {
                channel: "c".into(),
                except: Some("1.2".into()),
                seq: None,
            },
        };
        let frame = r#"{"event":"e","channel":"c","data":"{\"a\":\"x\\ny\"}"}"#;
        let payload = encode(&header, Some(frame));
        let (decoded, got) = decode(&payload).unwrap();
        assert_eq!(got.as_deref(), Some(frame));
        assert_eq!(decoded.node, "7");
        assert!(matches!(decoded.kind, Kind::Event { except: Some(ref s), .. } if s == "1.2"));
    }
}
