//! Comnestor's own `/api`: publishing through the durable event log, and reading that log.
//!
//! These endpoints exist only on Comnestor; against another Pusher-compatible server use
//! [`Client::trigger`] instead.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::Client;
use crate::credentials::check_socket_id;
use crate::error::{Error, ErrorKind, Result};
use crate::pusher::{Channels, prepare};

/// An event for [`Client::send_event`].
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    channels: Vec<String>,
    event: String,
    data: Value,
    socket_id: Option<String>,
    idempotency_key: Option<String>,
}

impl Event {
    /// An event named `event` with `data` to one channel (`"a"`) or several (`["a", "b"]`).
    ///
    /// A string `data` reaches subscribers as is; any other value is serialized to JSON.
    pub fn new(channels: impl Into<Channels>, event: impl Into<String>, data: Value) -> Self {
        Self {
            channels: channels.into().0,
            event: event.into(),
            data,
            socket_id: None,
            idempotency_key: None,
        }
    }

    /// Leaves out this connection (the sender's own).
    pub fn socket_id(mut self, socket_id: impl Into<String>) -> Self {
        self.socket_id = Some(socket_id.into());
        self
    }

    /// Makes retries safe: a second request with the same key (up to 255 characters) gets the
    /// first answer instead of creating another event.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

#[derive(Serialize)]
struct PublishBody<'a> {
    channels: &'a [String],
    event: &'a str,
    data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<&'a str>,
}

/// Where an event is on its way to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Accepted,
    Queued,
    Retrying,
    Delivered,
    Dead,
    /// A status this SDK version does not know.
    #[serde(other)]
    Unknown,
}

impl EventStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Queued => "queued",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Unknown => "unknown",
        }
    }
}

/// The answer to an accepted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The event id, for [`Client::event`] and [`Client::replay`].
    pub id: String,
    pub status: EventStatus,
    /// Where to read the event's stages, relative to the server.
    pub status_url: String,
}

/// When each stage of an event happened, in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stages {
    pub received_at: i64,
    pub logged_at: i64,
    pub queued_at: Option<i64>,
    pub sent_at: Option<i64>,
    pub acknowledged_at: Option<i64>,
}

/// One delivery attempt of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: i32,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// An event as the event log holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: String,
    pub app_id: String,
    pub channels: Vec<String>,
    pub event: String,
    /// The data as subscribers receive it.
    pub data: String,
    pub socket_id: Option<String>,
    pub status: EventStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The event this one replays.
    pub replay_of: Option<String>,
    pub stages: Stages,
    /// Every delivery attempt; only [`Client::event`] fills it in.
    pub attempt_log: Option<Vec<Attempt>>,
}

/// A page of [`Client::events`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<EventRecord>,
    /// Pass as [`EventQuery::cursor`] for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A page of [`Client::channel_history`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelHistory {
    pub channel: String,
    pub events: Vec<EventRecord>,
    /// Pass as [`HistoryQuery::since_id`] for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of [`Client::events`]. Times are Unix milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub channel: Option<String>,
    pub event: Option<String>,
    pub status: Option<EventStatus>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub cursor: Option<String>,
    /// 1 to 500; the server's default is 50.
    pub limit: Option<u64>,
}

/// Filters of [`Client::channel_history`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only events after this event id.
    pub since_id: Option<String>,
    /// Only events from this Unix millisecond on.
    pub since: Option<i64>,
    /// 1 to 500; the server's default is 50.
    pub limit: Option<u64>,
}

/// Query parameters from optional values, skipping the absent ones.
fn params(pairs: &[(&'static str, Option<String>)]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .filter_map(|(name, value)| value.clone().map(|v| (*name, v)))
        .collect()
}

fn borrow<'a>(params: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    params.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// An event id as a path segment: ids are ULIDs, so anything else is refused here.
fn id_segment(call: &'static str, id: &str) -> Result<()> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        let message = format!("event id {id:?} is not alphanumeric");
        Err(Error::new(call, ErrorKind::InvalidArgument(message)))
    }
}

impl Client {
    /// Publishes an event through `POST /api/events`: it is logged and queued before the
    /// answer, and the answer carries its id.
    pub async fn send_event(&self, event: &Event) -> Result<Accepted> {
        let call = "send_event";
        let data = prepare(
            call,
            self.credentials(),
            &event.channels,
            &event.event,
            &event.data,
        )?;
        if let Some(socket_id) = &event.socket_id {
            check_socket_id(call, socket_id)?;
        }
        let body = PublishBody {
            channels: &event.channels,
            event: &event.event,
            data,
            socket_id: event.socket_id.as_deref(),
        };
        let body = serde_json::to_vec(&body).map_err(|e| Error::new(call, e.into()))?;
        let mut request = self.api_request(Method::POST, "/api/events", &[], Some(body));
        if let Some(key) = &event.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.execute(call, request).await
    }

    /// Lists logged events, oldest first (`GET /api/events`).
    pub async fn events(&self, query: &EventQuery) -> Result<EventPage> {
        let owned = params(&[
            ("channel", query.channel.clone()),
            ("event", query.event.clone()),
            ("status", query.status.map(|s| s.as_str().to_owned())),
            ("from", query.from.map(|v| v.to_string())),
            ("to", query.to.map(|v| v.to_string())),
            ("cursor", query.cursor.clone()),
            ("limit", query.limit.map(|v| v.to_string())),
        ]);
        let request = self.api_request(Method::GET, "/api/events", &borrow(&owned), None);
        self.execute("events", request).await
    }

    /// One logged event with its stages and delivery attempts (`GET /api/events/{id}`).
    pub async fn event(&self, id: &str) -> Result<EventRecord> {
        id_segment("event", id)?;
        let path = format!("/api/events/{id}");
        let request = self.api_request(Method::GET, &path, &[], None);
        self.execute("event", request).await
    }

    /// Delivers a logged event again as a new event (`POST /api/events/{id}/replay`).
    pub async fn replay(&self, id: &str) -> Result<Accepted> {
        id_segment("replay", id)?;
        let path = format!("/api/events/{id}/replay");
        let request = self.api_request(Method::POST, &path, &[], None);
        self.execute("replay", request).await
    }

    /// What a channel received, oldest first (`GET /api/channels/{channel}/history`), so a
    /// backend can give a reconnecting client what it missed.
    pub async fn channel_history(
        &self,
        channel: &str,
        query: &HistoryQuery,
    ) -> Result<ChannelHistory> {
        let call = "channel_history";
        comnestor_protocol::ChannelName::parse(channel).map_err(|e| {
            let message = format!("channel {channel}: {e}");
            Error::new(call, ErrorKind::InvalidArgument(message))
        })?;
        let owned = params(&[
            ("since_id", query.since_id.clone()),
            ("since", query.since.map(|v| v.to_string())),
            ("limit", query.limit.map(|v| v.to_string())),
        ]);
        let path = format!("/api/channels/{}/history", channel.replace('#', "%23"));
        let request = self.api_request(Method::GET, &path, &borrow(&owned), None);
        self.execute(call, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_statuses_do_not_fail_decoding() {
        let status: EventStatus = serde_json::from_str(r#""archived""#).unwrap();
        assert_eq!(status, EventStatus::Unknown);
        let status: EventStatus = serde_json::from_str(r#""delivered""#).unwrap();
        assert_eq!(status, EventStatus::Delivered);
    }

    #[test]
    fn event_ids_are_checked() {
        assert!(id_segment("event", "01JABC").is_ok());
        assert!(id_segment("event", "../x").is_err());
        assert!(id_segment("event", "").is_err());
    }
}
