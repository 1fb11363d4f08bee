//! Bodies of the Pusher HTTP API (`/apps/{app_id}/...`).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Most channels one trigger may name.
pub const MAX_CHANNELS_PER_EVENT: usize = 100;
/// Most events one batch may hold.
pub const MAX_BATCH_EVENTS: usize = 10;

/// `POST /apps/{app_id}/events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TriggerRequest {
    pub name: String,
    /// The event data as the string subscribers receive. An object sent here is serialized.
    #[serde(deserialize_with = "data_as_string")]
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    /// Comma-separated attributes to return per channel: `user_count`, `subscription_count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
}

impl TriggerRequest {
    /// The channels named by `channels` and `channel` together.
    pub fn all_channels(&self) -> Vec<&str> {
        let many = self.channels.iter().flatten().map(String::as_str);
        many.chain(self.channel.as_deref()).collect()
    }
}

/// One item of `POST /apps/{app_id}/batch_events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchEvent {
    pub name: String,
    pub channel: String,
    #[serde(deserialize_with = "data_as_string")]
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
}

/// `POST /apps/{app_id}/batch_events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchRequest {
    pub batch: Vec<BatchEvent>,
}

fn data_as_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(text) => text,
        other => other.to_string(),
    })
}

/// Attributes of one channel, as trigger responses and channel listings report them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelAttributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_count: Option<u64>,
}

/// Response of a trigger: `{}`, or `{"channels":{...}}` when `info` was asked for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TriggerResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<BTreeMap<String, ChannelAttributes>>,
}

/// Response of a batch trigger: `{}`, or `{"batch":[...]}` when any item asked for `info`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Vec<ChannelAttributes>>,
}

/// `GET /apps/{app_id}/channels`: always an object, also when empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelsResponse {
    pub channels: BTreeMap<String, ChannelAttributes>,
}

/// The cached event of a cache channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheInfo {
    pub data: String,
    /// Seconds until the cached event expires.
    pub ttl: u64,
}

/// `GET /apps/{app_id}/channels/{channel_name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelInfo {
    pub occupied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_count: Option<u64>,
    /// Present only when asked for: `null` when nothing is cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Option<CacheInfo>>,
}

/// One member of `GET /apps/{app_id}/channels/{channel_name}/users`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserId {
    pub id: String,
}

/// `GET /apps/{app_id}/channels/{channel_name}/users`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsersResponse {
    pub users: Vec<UserId>,
}

/// An error body of the HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_accepts_both_channel_forms_and_object_data() {
        let one: TriggerRequest =
            serde_json::from_str(r#"{"name":"e","channel":"a","data":"x"}"#).unwrap();
        assert_eq!(one.all_channels(), ["a"]);
        let many: TriggerRequest =
            serde_json::from_str(r#"{"name":"e","channels":["a","b"],"data":{"k":1}}"#).unwrap();
        assert_eq!(many.all_channels(), ["a", "b"]);
        assert_eq!(many.data, r#"{"k":1}"#);
    }

    #[test]
    fn empty_responses_are_objects() {
        assert_eq!(
            serde_json::to_string(&TriggerResponse::default()).unwrap(),
            "{}"
        );
        assert_eq!(
            serde_json::to_string(&ChannelsResponse::default()).unwrap(),
            r#"{"channels":{}}"#
        );
        let info = ChannelInfo {
            occupied: true,
            cache: Some(None),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"occupied":true,"cache":null}"#
        );
    }
}
