//! Frames exchanged over the WebSocket.
//!
//! Server to client, `data` is a JSON-encoded string ("double encoding"), except for
//! `pusher:error`, whose `data` is an object. Client to server, pusher-js sends `data` as an
//! object; other clients send a string. [`ClientMessage::data_as`] accepts both.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// A frame sent by a client, with `data` kept as the exact bytes the client sent.
#[derive(Debug, Deserialize)]
pub struct ClientMessage {
    pub event: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
}

impl ClientMessage {
    /// Parses a text frame.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Decodes `data` as `T`, whether it was sent as an object or as a JSON-encoded string.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        let raw = self.data.as_deref().map_or("null", RawValue::get);
        if raw.starts_with('"') {
            let inner: String = serde_json::from_str(raw)?;
            serde_json::from_str(&inner)
        } else {
            serde_json::from_str(raw)
        }
    }

    /// The raw JSON of `data`, `null` when absent.
    pub fn raw_data(&self) -> &str {
        self.data.as_deref().map_or("null", RawValue::get)
    }
}

/// `data` of `pusher:subscribe`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscribeData {
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_data: Option<String>,
}

/// `data` of `pusher:unsubscribe`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnsubscribeData {
    pub channel: String,
}

/// `data` of `pusher:signin`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SigninData {
    pub auth: String,
    pub user_data: String,
}

/// The parsed `channel_data` of a presence subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceMember {
    /// The user id, as a string even when the JSON held a number.
    pub user_id: String,
    /// `user_info`, `null` when absent.
    pub user_info: Value,
}

impl PresenceMember {
    /// Parses presence `channel_data`: an object with `user_id` (string or number) and optional
    /// `user_info`.
    pub fn from_channel_data(channel_data: &str) -> Result<Self, &'static str> {
        let value: Value =
            serde_json::from_str(channel_data).map_err(|_| "channel_data is not valid JSON")?;
        let user_id = match value.get("user_id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => return Err("channel_data must contain a non-empty user_id"),
        };
        let user_info = value.get("user_info").cloned().unwrap_or(Value::Null);
        Ok(Self { user_id, user_info })
    }
}

/// The parsed `user_data` of `pusher:signin`.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedInUser {
    pub id: String,
    pub user_info: Value,
    pub watchlist: Vec<String>,
}

impl SignedInUser {
    /// Parses `user_data`: an object with a non-empty string `id`, optional `user_info` and an
    /// optional `watchlist` of user ids.
    pub fn from_user_data(user_data: &str) -> Result<Self, &'static str> {
        let value: Value =
            serde_json::from_str(user_data).map_err(|_| "user_data is not valid JSON")?;
        let id = match value.get("id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            _ => return Err("user_data must contain a non-empty string id"),
        };
        let watchlist = match value.get("watchlist") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ids)) => ids
                .iter()
                .map(|id| match id {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err("watchlist must be an array of user ids"),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("watchlist must be an array of user ids"),
        };
        let user_info = value.get("user_info").cloned().unwrap_or(Value::Null);
        Ok(Self {
            id,
            user_info,
            watchlist,
        })
    }
}

/// A frame as a client receives it, with `data` decoded once when it was a JSON string.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerMessage {
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

impl ServerMessage {
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// `data` decoded: a string holding JSON is parsed, anything else is returned as is.
    pub fn decoded_data(&self) -> Value {
        match &self.data {
            Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
            Some(other) => other.clone(),
            None => Value::Null,
        }
    }
}

/// The `data` of an outgoing frame.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// Sent as a JSON string whose content is this text (the double encoding).
    Text(&'a str),
    /// Sent verbatim: this must already be valid JSON.
    Json(&'a str),
    /// No `data` field.
    None,
}

/// Encodes an outgoing frame. Field order matches what hosted Pusher sends.
pub fn encode(event: &str, channel: Option<&str>, data: Data<'_>, user_id: Option<&str>) -> String {
    let mut out = String::with_capacity(48 + event.len() + channel.map_or(0, str::len));
    out.push_str("{\"event\":");
    push_json_string(&mut out, event);
    if let Some(channel) = channel {
        out.push_str(",\"channel\":");
        push_json_string(&mut out, channel);
    }
    match data {
        Data::Text(text) => {
            out.push_str(",\"data\":");
            push_json_string(&mut out, text);
        }
        Data::Json(json) => {
            out.push_str(",\"data\":");
            out.push_str(json);
        }
        Data::None => {}
    }
    if let Some(user_id) = user_id {
        out.push_str(",\"user_id\":");
        push_json_string(&mut out, user_id);
    }
    out.push('}');
    out
}

fn push_json_string(out: &mut String, s: &str) {
    // Writing into a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// `pusher:connection_established`.
pub fn connection_established(socket_id: &str, activity_timeout: u32) -> String {
    let data = serde_json::json!({ "socket_id": socket_id, "activity_timeout": activity_timeout });
    encode(
        "pusher:connection_established",
        None,
        Data::Text(&data.to_string()),
        None,
    )
}

/// `pusher:error` with an optional code; `data` is an object, as the protocol documents it.
pub fn error(code: Option<u16>, message: &str) -> String {
    let data = serde_json::json!({ "code": code, "message": message });
    encode("pusher:error", None, Data::Json(&data.to_string()), None)
}

/// `pusher:ping`, sent by the server after inactivity.
pub fn ping() -> String {
    encode("pusher:ping", None, Data::Text("{}"), None)
}

/// `pusher:pong`, the answer to a client's `pusher:ping`.
pub fn pong() -> String {
    encode("pusher:pong", None, Data::Text("{}"), None)
}

/// `pusher_internal:subscription_succeeded` for a channel that is not presence.
pub fn subscription_succeeded(channel: &str) -> String {
    encode(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        Data::Text("{}"),
        None,
    )
}

/// `pusher_internal:subscription_succeeded` for a presence channel: `ids`, `hash` and `count`.
/// Members without `user_info` keep their key in `hash` with a `null` value.
pub fn presence_subscription_succeeded<'a>(
    channel: &str,
    members: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> String {
    let mut ids = Vec::new();
    let mut hash = serde_json::Map::new();
    for (id, info) in members {
        ids.push(Value::String(id.to_owned()));
        hash.insert(id.to_owned(), info.clone());
    }
    let count = ids.len();
    let data = serde_json::json!({ "presence": { "ids": ids, "hash": hash, "count": count } });
    encode(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        Data::Text(&data.to_string()),
        None,
    )
}

/// `pusher_internal:member_added`.
pub fn member_added(channel: &str, user_id: &str, user_info: &Value) -> String {
    let data = serde_json::json!({ "user_id": user_id, "user_info": user_info });
    encode(
        "pusher_internal:member_added",
        Some(channel),
        Data::Text(&data.to_string()),
        None,
    )
}

/// `pusher_internal:member_removed`.
pub fn member_removed(channel: &str, user_id: &str) -> String {
    let data = serde_json::json!({ "user_id": user_id });
    encode(
        "pusher_internal:member_removed",
        Some(channel),
        Data::Text(&data.to_string()),
        None,
    )
}

/// `pusher:cache_miss`, sent when a cache channel has nothing cached.
pub fn cache_miss(channel: &str) -> String {
    encode("pusher:cache_miss", Some(channel), Data::Text("{}"), None)
}

/// `pusher_internal:subscription_count`.
pub fn subscription_count(channel: &str, count: usize) -> String {
    let data = format!("{{\"subscription_count\":{count}}}");
    encode(
        "pusher_internal:subscription_count",
        Some(channel),
        Data::Text(&data),
        None,
    )
}

/// `pusher:subscription_error`, which Laravel Echo's `.error()` callbacks listen to.
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> String {
    let data = serde_json::json!({ "type": kind, "error": error, "status": status });
    encode(
        "pusher:subscription_error",
        Some(channel),
        Data::Json(&data.to_string()),
        None,
    )
}

/// `pusher:signin_success`, echoing the exact `user_data` string that was signed.
pub fn signin_success(user_data: &str) -> String {
    let data = serde_json::json!({ "user_data": user_data });
    encode(
        "pusher:signin_success",
        None,
        Data::Json(&data.to_string()),
        None,
    )
}

/// `pusher_internal:watchlist_events` with `online` and `offline` groups (empty groups left out).
pub fn watchlist_events(online: &[&str], offline: &[&str]) -> String {
    let mut events = Vec::new();
    if !online.is_empty() {
        events.push(serde_json::json!({ "name": "online", "user_ids": online }));
    }
    if !offline.is_empty() {
        events.push(serde_json::json!({ "name": "offline", "user_ids": offline }));
    }
    let data = serde_json::json!({ "events": events });
    encode(
        "pusher_internal:watchlist_events",
        None,
        Data::Text(&data.to_string()),
        None,
    )
}

/// A channel event as subscribers receive it. `data` is relayed byte for byte as a string.
pub fn channel_event(event: &str, channel: &str, data: &str) -> String {
    encode(event, Some(channel), Data::Text(data), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_encodes_data() {
        assert_eq!(
            connection_established("1.2", 120),
            r#"{"event":"pusher:connection_established","data":"{\"activity_timeout\":120,\"socket_id\":\"1.2\"}"}"#
        );
        assert_eq!(
            channel_event("e", "c", "{\"a\":1}"),
            r#"{"event":"e","channel":"c","data":"{\"a\":1}"}"#
        );
    }

    #[test]
    fn error_data_is_an_object() {
        assert_eq!(
            error(Some(4001), "x"),
            r#"{"event":"pusher:error","data":{"code":4001,"message":"x"}}"#
        );
        assert_eq!(
            error(None, "x"),
            r#"{"event":"pusher:error","data":{"code":null,"message":"x"}}"#
        );
    }

    #[test]
    fn data_as_accepts_object_and_string() {
        let object =
            ClientMessage::parse(r#"{"event":"pusher:subscribe","data":{"channel":"a"}}"#).unwrap();
        let string =
            ClientMessage::parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"a\"}"}"#)
                .unwrap();
        let a: SubscribeData = object.data_as().unwrap();
        let b: SubscribeData = string.data_as().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.channel, "a");
    }

    #[test]
    fn presence_keeps_members_without_info() {
        let null = Value::Null;
        let frame = presence_subscription_succeeded("presence-x", [("1", &null)]);
        let parsed = ServerMessage::parse(&frame).unwrap();
        assert_eq!(
            parsed.decoded_data(),
            serde_json::json!({"presence":{"ids":["1"],"hash":{"1":null},"count":1}})
        );
    }

    #[test]
    fn presence_member_ids() {
        assert_eq!(
            PresenceMember::from_channel_data(r#"{"user_id":10}"#)
                .unwrap()
                .user_id,
            "10"
        );
        assert!(PresenceMember::from_channel_data(r#"{"user_id":""}"#).is_err());
        assert!(PresenceMember::from_channel_data("nope").is_err());
    }

    #[test]
    fn signed_in_user_needs_string_id() {
        assert!(SignedInUser::from_user_data(r#"{"id":12}"#).is_err());
        let user = SignedInUser::from_user_data(r#"{"id":"1","watchlist":["2",3]}"#).unwrap();
        assert_eq!(user.watchlist, ["2", "3"]);
    }
}
