//! The Pusher HTTP API (`/apps/{app_id}/...`), signed as every Pusher server SDK signs it, so
//! these calls also work against other Pusher-compatible servers.

use comnestor_protocol::api::{
    BatchEvent, BatchRequest, BatchResponse, ChannelInfo, ChannelsResponse, MAX_CHANNELS_PER_EVENT,
    TriggerRequest, TriggerResponse, UsersResponse,
};
use comnestor_protocol::channel::{SERVER_TO_USER_PREFIX, validate_event_name};
use comnestor_protocol::{ChannelKind, ChannelName};
use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::credentials::{Credentials, check_socket_id};
use crate::error::{Error, ErrorKind, Result};

/// One or more channel names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels(pub Vec<String>);

impl From<&str> for Channels {
    fn from(name: &str) -> Self {
        Self(vec![name.to_owned()])
    }
}

impl From<String> for Channels {
    fn from(name: String) -> Self {
        Self(vec![name])
    }
}

impl From<Vec<String>> for Channels {
    fn from(names: Vec<String>) -> Self {
        Self(names)
    }
}

impl From<&[&str]> for Channels {
    fn from(names: &[&str]) -> Self {
        Self(names.iter().map(|n| (*n).to_owned()).collect())
    }
}

impl<const N: usize> From<[&str; N]> for Channels {
    fn from(names: [&str; N]) -> Self {
        Self(names.iter().map(|n| (*n).to_owned()).collect())
    }
}

/// Checks an event's channels and name, and returns its `data` string, encrypted when the
/// channel is `private-encrypted-`.
///
/// A string value is sent as is; anything else is serialized. Encrypted channels seal the JSON
/// of the value, as pusher-http-node does, and must be the event's only channel.
pub(crate) fn prepare(
    call: &'static str,
    credentials: &Credentials,
    channels: &[String],
    event: &str,
    data: &Value,
) -> Result<String> {
    let invalid = |message: String| Error::new(call, ErrorKind::InvalidArgument(message));
    validate_event_name(event).map_err(|e| invalid(e.to_owned()))?;
    if channels.is_empty() || channels.len() > MAX_CHANNELS_PER_EVENT {
        return Err(invalid(format!(
            "an event needs 1 to {MAX_CHANNELS_PER_EVENT} channels, not {}",
            channels.len()
        )));
    }
    let mut encrypted = None;
    for channel in channels {
        let name =
            ChannelName::parse(channel).map_err(|e| invalid(format!("channel {channel}: {e}")))?;
        if name.kind() == ChannelKind::PrivateEncrypted {
            encrypted = Some(channel);
        }
    }
    let Some(channel) = encrypted else {
        return Ok(match data {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        });
    };
    if channels.len() > 1 {
        return Err(invalid(
            "an event to a private-encrypted- channel must name only that channel".into(),
        ));
    }
    let master = credentials
        .master_key()
        .ok_or_else(|| Error::new(call, ErrorKind::NoMasterKey(channel.clone())))?;
    Ok(master
        .channel_key(channel)
        .encrypt(data.to_string().as_bytes()))
}

/// An event for [`Client::trigger`].
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    channels: Vec<String>,
    event: String,
    data: Value,
    socket_id: Option<String>,
    info: Vec<String>,
}

impl Trigger {
    /// An event named `event` with `data` to one channel (`"a"`) or several (`["a", "b"]`).
    pub fn new(channels: impl Into<Channels>, event: impl Into<String>, data: Value) -> Self {
        Self {
            channels: channels.into().0,
            event: event.into(),
            data,
            socket_id: None,
            info: Vec::new(),
        }
    }

    /// Leaves out this connection (the sender's own).
    pub fn socket_id(mut self, socket_id: impl Into<String>) -> Self {
        self.socket_id = Some(socket_id.into());
        self
    }

    /// Asks for channel attributes in the answer: `user_count`, `subscription_count`.
    pub fn info(mut self, attribute: impl Into<String>) -> Self {
        self.info.push(attribute.into());
        self
    }
}

/// One event of [`Client::trigger_batch`]; batch items name a single channel.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    channel: String,
    event: String,
    data: Value,
    socket_id: Option<String>,
    info: Vec<String>,
}

impl BatchItem {
    pub fn new(channel: impl Into<String>, event: impl Into<String>, data: Value) -> Self {
        Self {
            channel: channel.into(),
            event: event.into(),
            data,
            socket_id: None,
            info: Vec::new(),
        }
    }

    pub fn socket_id(mut self, socket_id: impl Into<String>) -> Self {
        self.socket_id = Some(socket_id.into());
        self
    }

    pub fn info(mut self, attribute: impl Into<String>) -> Self {
        self.info.push(attribute.into());
        self
    }
}

/// Filters of [`Client::channels`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelsQuery {
    /// Only channels whose name starts with this, such as `presence-`.
    pub filter_by_prefix: Option<String>,
    /// Attributes to return per channel; `user_count` needs a `presence-` prefix filter.
    pub info: Vec<String>,
}

fn join_info(info: &[String]) -> Option<String> {
    (!info.is_empty()).then(|| info.join(","))
}

fn body(call: &'static str, value: &impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::new(call, e.into()))
}

impl Client {
    fn app_path(&self, rest: &str) -> String {
        format!("/apps/{}{rest}", self.credentials().app_id())
    }

    /// Triggers an event through `POST /apps/{app_id}/events`.
    ///
    /// The answer holds the requested channel attributes, if any were asked for.
    pub async fn trigger(&self, trigger: &Trigger) -> Result<TriggerResponse> {
        let call = "trigger";
        let data = prepare(
            call,
            self.credentials(),
            &trigger.channels,
            &trigger.event,
            &trigger.data,
        )?;
        if let Some(socket_id) = &trigger.socket_id {
            check_socket_id(call, socket_id)?;
        }
        let request = TriggerRequest {
            name: trigger.event.clone(),
            data,
            channels: Some(trigger.channels.clone()),
            channel: None,
            socket_id: trigger.socket_id.clone(),
            info: join_info(&trigger.info),
        };
        let path = self.app_path("/events");
        let request = self.signed_request(Method::POST, &path, &[], Some(body(call, &request)?));
        self.execute(call, request).await
    }

    /// Triggers several events in one `POST /apps/{app_id}/batch_events` (10 at most on
    /// hosted Pusher).
    pub async fn trigger_batch(&self, items: &[BatchItem]) -> Result<BatchResponse> {
        let call = "trigger_batch";
        let mut batch = Vec::with_capacity(items.len());
        for item in items {
            let channels = [item.channel.clone()];
            let data = prepare(call, self.credentials(), &channels, &item.event, &item.data)?;
            if let Some(socket_id) = &item.socket_id {
                check_socket_id(call, socket_id)?;
            }
            batch.push(BatchEvent {
                name: item.event.clone(),
                channel: item.channel.clone(),
                data,
                socket_id: item.socket_id.clone(),
                info: join_info(&item.info),
            });
        }
        let body = body(call, &BatchRequest { batch })?;
        let path = self.app_path("/batch_events");
        let request = self.signed_request(Method::POST, &path, &[], Some(body));
        self.execute(call, request).await
    }

    /// Lists occupied channels (`GET /apps/{app_id}/channels`).
    pub async fn channels(&self, query: &ChannelsQuery) -> Result<ChannelsResponse> {
        let info = join_info(&query.info);
        let mut params = Vec::new();
        if let Some(prefix) = &query.filter_by_prefix {
            params.push(("filter_by_prefix", prefix.as_str()));
        }
        if let Some(info) = &info {
            params.push(("info", info.as_str()));
        }
        let path = self.app_path("/channels");
        let request = self.signed_request(Method::GET, &path, &params, None);
        self.execute("channels", request).await
    }

    /// One channel's state (`GET /apps/{app_id}/channels/{channel}`), with the attributes
    /// named in `info`: `user_count` (presence), `subscription_count`, `cache`.
    pub async fn channel(&self, channel: &str, info: &[&str]) -> Result<ChannelInfo> {
        let call = "channel";
        let path = self.app_path(&format!(
            "/channels/{}",
            self.channel_segment(call, channel)?
        ));
        let info = info.join(",");
        let params: Vec<(&str, &str)> = if info.is_empty() {
            Vec::new()
        } else {
            vec![("info", info.as_str())]
        };
        let request = self.signed_request(Method::GET, &path, &params, None);
        self.execute(call, request).await
    }

    /// The user ids in a presence channel (`GET /apps/{app_id}/channels/{channel}/users`).
    pub async fn presence_users(&self, channel: &str) -> Result<Vec<String>> {
        let call = "presence_users";
        let segment = self.channel_segment(call, channel)?;
        let path = self.app_path(&format!("/channels/{segment}/users"));
        let request = self.signed_request(Method::GET, &path, &[], None);
        let users: UsersResponse = self.execute(call, request).await?;
        Ok(users.users.into_iter().map(|u| u.id).collect())
    }

    /// Closes every connection signed in as `user_id`
    /// (`POST /apps/{app_id}/users/{user_id}/terminate_connections`).
    pub async fn terminate_user_connections(&self, user_id: &str) -> Result<()> {
        let call = "terminate_user_connections";
        if user_id.is_empty() || !user_id.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
            let message = format!("user id {user_id:?} cannot be used in a path");
            return Err(Error::new(call, ErrorKind::InvalidArgument(message)));
        }
        let path = self.app_path(&format!("/users/{user_id}/terminate_connections"));
        let request = self.signed_request(Method::POST, &path, &[], Some(b"{}".to_vec()));
        let _: Value = self.execute(call, request).await?;
        Ok(())
    }

    /// Sends an event to every connection signed in as `user_id`, through its
    /// `#server-to-user-` channel.
    pub async fn send_to_user(&self, user_id: &str, event: &str, data: Value) -> Result<()> {
        let channel = format!("{SERVER_TO_USER_PREFIX}{user_id}");
        let trigger = Trigger::new(channel, event, data);
        self.trigger(&trigger)
            .await
            .map_err(|e| Error::new("send_to_user", e.into_kind()))?;
        Ok(())
    }

    /// A validated channel name, percent-encoded for a path (`#` of server-to-user channels).
    fn channel_segment(&self, call: &'static str, channel: &str) -> Result<String> {
        ChannelName::parse(channel).map_err(|e| {
            Error::new(
                call,
                ErrorKind::InvalidArgument(format!("channel {channel}: {e}")),
            )
        })?;
        Ok(channel.replace('#', "%23"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn credentials() -> Credentials {
        Credentials::new("1", "k", "s")
    }

    #[test]
    fn strings_are_sent_as_is_and_values_serialized() {
        let c = credentials();
        let one = ["a".to_owned()];
        assert_eq!(prepare("t", &c, &one, "e", &json!("raw")).unwrap(), "raw");
        assert_eq!(
            prepare("t", &c, &one, "e", &json!({"k":1})).unwrap(),
            r#"{"k":1}"#
        );
    }

    #[test]
    fn refuses_what_the_server_would_refuse() {
        let c = credentials();
        assert!(prepare("t", &c, &[], "e", &json!(1)).is_err());
        assert!(prepare("t", &c, &["a b".to_owned()], "e", &json!(1)).is_err());
        assert!(prepare("t", &c, &["a".to_owned()], "", &json!(1)).is_err());
        let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
        assert!(prepare("t", &c, &many, "e", &json!(1)).is_err());
    }

    #[test]
    fn encrypted_channels_are_sealed_alone() {
        let c = credentials().with_master_key(crate::MasterKey::from_bytes([3; 32]));
        let channel = "private-encrypted-x".to_owned();
        let data = prepare(
            "t",
            &c,
            std::slice::from_ref(&channel),
            "e",
            &json!({"a":1}),
        )
        .unwrap();
        let plain = c.master_key().unwrap().channel_key(&channel).decrypt(&data);
        assert_eq!(plain.unwrap(), br#"{"a":1}"#);
        let mixed = [channel, "public".to_owned()];
        assert!(prepare("t", &c, &mixed, "e", &json!(1)).is_err());
        let no_key = prepare("t", &credentials(), &mixed[..1], "e", &json!(1));
        assert!(matches!(
            no_key.unwrap_err().kind(),
            ErrorKind::NoMasterKey(_)
        ));
    }
}
