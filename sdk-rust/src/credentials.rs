//! App credentials and what they sign without a network call: channel authorizations, user
//! authentication and webhook verification.

use std::fmt;

use comnestor_protocol::channel::classify;
use comnestor_protocol::{ChannelKind, ChannelName, auth, is_valid_socket_id};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::encryption::MasterKey;
use crate::error::{Error, ErrorKind, Result};

/// An app's id, key and secret, and its encryption master key when it uses encrypted channels.
#[derive(Clone)]
pub struct Credentials {
    app_id: String,
    key: String,
    secret: String,
    master_key: Option<MasterKey>,
}

impl Credentials {
    pub fn new(
        app_id: impl Into<String>,
        key: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self {
            app_id: app_id.into(),
            key: key.into(),
            secret: secret.into(),
            master_key: None,
        }
    }

    /// Adds the base64 master key that encrypted channels derive their keys from.
    pub fn with_master_key_base64(mut self, encoded: &str) -> Result<Self> {
        let key = MasterKey::from_base64(encoded).map_err(|e| Error::new("master_key", e))?;
        self.master_key = Some(key);
        Ok(self)
    }

    pub fn with_master_key(mut self, key: MasterKey) -> Self {
        self.master_key = Some(key);
        self
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    pub fn master_key(&self) -> Option<&MasterKey> {
        self.master_key.as_ref()
    }

    /// Authorizes a `private-` or `private-encrypted-` subscription (or a presence one for a
    /// connection that signed in, which needs no `channel_data`).
    ///
    /// For encrypted channels the answer carries the channel's `shared_secret`, which needs a
    /// master key.
    pub fn authorize_channel(&self, socket_id: &str, channel: &str) -> Result<ChannelAuth> {
        self.authorize("authorize_channel", socket_id, channel, None)
    }

    /// Authorizes a `presence-` subscription for `member`; its JSON is signed and returned as
    /// `channel_data`.
    pub fn authorize_presence_channel(
        &self,
        socket_id: &str,
        channel: &str,
        member: &PresenceUser,
    ) -> Result<ChannelAuth> {
        let call = "authorize_presence_channel";
        if classify(channel).0 != ChannelKind::Presence {
            let message = format!("{channel} is not a presence- channel");
            return Err(Error::new(call, ErrorKind::InvalidArgument(message)));
        }
        let data = serde_json::to_string(member).map_err(|e| Error::new(call, e.into()))?;
        self.authorize(call, socket_id, channel, Some(&data))
    }

    /// Authorizes a subscription with `channel_data` signed exactly as given, for any channel
    /// kind, as pusher-http-node does when it is passed data.
    pub fn authorize_channel_with_data(
        &self,
        socket_id: &str,
        channel: &str,
        channel_data: &str,
    ) -> Result<ChannelAuth> {
        self.authorize(
            "authorize_channel_with_data",
            socket_id,
            channel,
            Some(channel_data),
        )
    }

    fn authorize(
        &self,
        call: &'static str,
        socket_id: &str,
        channel: &str,
        channel_data: Option<&str>,
    ) -> Result<ChannelAuth> {
        check_socket_id(call, socket_id)?;
        let name = ChannelName::parse(channel)
            .map_err(|e| invalid(call, format!("channel {channel}: {e}")))?;
        let shared_secret = match (name.kind(), &self.master_key) {
            (ChannelKind::PrivateEncrypted, Some(master)) => Some(master.shared_secret(channel)),
            (ChannelKind::PrivateEncrypted, None) => {
                return Err(Error::new(call, ErrorKind::NoMasterKey(channel.into())));
            }
            _ => None,
        };
        let signature =
            auth::authorize_channel(&self.key, &self.secret, socket_id, channel, channel_data);
        Ok(ChannelAuth {
            auth: signature,
            channel_data: channel_data.map(str::to_owned),
            shared_secret,
        })
    }

    /// Signs a user in (`pusher:signin`): `user` must have a non-empty `id`.
    pub fn authenticate_user(&self, socket_id: &str, user: &UserData) -> Result<UserAuth> {
        let call = "authenticate_user";
        if user.id.is_empty() {
            return Err(invalid(call, "the user id is empty".into()));
        }
        let data = serde_json::to_string(user).map_err(|e| Error::new(call, e.into()))?;
        self.authenticate(call, socket_id, &data)
    }

    /// Signs `user_data` exactly as given.
    pub fn authenticate_user_with_data(
        &self,
        socket_id: &str,
        user_data: &str,
    ) -> Result<UserAuth> {
        self.authenticate("authenticate_user_with_data", socket_id, user_data)
    }

    fn authenticate(
        &self,
        call: &'static str,
        socket_id: &str,
        user_data: &str,
    ) -> Result<UserAuth> {
        check_socket_id(call, socket_id)?;
        Ok(UserAuth {
            auth: auth::authenticate_user(&self.key, &self.secret, socket_id, user_data),
            user_data: user_data.to_owned(),
        })
    }

    /// Verifies a webhook from its `X-Pusher-Key` and `X-Pusher-Signature` headers and its
    /// untouched body, then parses the body.
    ///
    /// The signature is checked over the exact body bytes before anything parses them, so pass
    /// the body as received, not a re-serialization.
    pub fn verify_webhook(
        &self,
        key_header: Option<&str>,
        signature_header: Option<&str>,
        body: &[u8],
    ) -> Result<Webhook> {
        let call = "verify_webhook";
        let refuse = |why| Error::new(call, ErrorKind::Webhook(why));
        let key = key_header.ok_or_else(|| refuse("missing X-Pusher-Key header"))?;
        let signature =
            signature_header.ok_or_else(|| refuse("missing X-Pusher-Signature header"))?;
        if !auth::constant_time_eq(key.as_bytes(), self.key.as_bytes()) {
            return Err(refuse("X-Pusher-Key is not this app's key"));
        }
        if !auth::verify_webhook(&self.secret, body, signature.trim()) {
            return Err(refuse("X-Pusher-Signature does not match the body"));
        }
        serde_json::from_slice(body).map_err(|source| {
            let body = crate::error::excerpt(&String::from_utf8_lossy(body));
            Error::new(call, ErrorKind::Decode { body, source })
        })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &"..")
            .field("master_key", &self.master_key.as_ref().map(|_| ".."))
            .finish()
    }
}

fn invalid(call: &'static str, message: String) -> Error {
    Error::new(call, ErrorKind::InvalidArgument(message))
}

pub(crate) fn check_socket_id(call: &'static str, socket_id: &str) -> Result<()> {
    if is_valid_socket_id(socket_id) {
        Ok(())
    } else {
        Err(invalid(
            call,
            format!("socket_id {socket_id:?} is not of the form 123.456"),
        ))
    }
}

impl From<serde_json::Error> for ErrorKind {
    fn from(error: serde_json::Error) -> Self {
        Self::Serialize(error)
    }
}

/// A channel authorization: the JSON an auth endpoint answers pusher-js with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAuth {
    /// `key:signature`.
    pub auth: String,
    /// The signed `channel_data` of presence channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_data: Option<String>,
    /// The channel key of encrypted channels, base64. Never sent to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_secret: Option<String>,
}

/// A presence channel member as the backend vouches for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceUser {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<Value>,
}

impl PresenceUser {
    pub fn new(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            user_info: None,
        }
    }

    pub fn with_info(mut self, info: Value) -> Self {
        self.user_info = Some(info);
        self
    }
}

/// A user to sign in, serialized as the signed `user_data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserData {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<Value>,
    /// User ids whose online status this user follows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watchlist: Vec<String>,
}

impl UserData {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            user_info: None,
            watchlist: Vec::new(),
        }
    }

    pub fn with_info(mut self, info: Value) -> Self {
        self.user_info = Some(info);
        self
    }
}

/// A user authentication: the JSON a user-auth endpoint answers pusher-js with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAuth {
    pub auth: String,
    pub user_data: String,
}

/// A verified webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    /// Unix milliseconds when the server created the webhook.
    pub time_ms: u64,
    pub events: Vec<WebhookEvent>,
}

/// One event of a webhook. Which fields are set depends on `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// `channel_occupied`, `channel_vacated`, `member_added`, `member_removed`,
    /// `client_event`, `cache_miss` or `subscription_count`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The client event's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The client event's data, as the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_count: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials::new("1", "key", "secret")
    }

    #[test]
    fn refuses_bad_socket_ids_and_names() {
        let c = credentials();
        let error = c.authorize_channel("nope", "private-a").unwrap_err();
        assert_eq!(error.call(), "authorize_channel");
        assert!(matches!(error.kind(), ErrorKind::InvalidArgument(_)));
        assert!(c.authorize_channel("1.2", "bad name").is_err());
        let member = PresenceUser::new("1");
        assert!(
            c.authorize_presence_channel("1.2", "private-a", &member)
                .is_err()
        );
    }

    #[test]
    fn encrypted_channels_need_a_master_key() {
        let error = credentials()
            .authorize_channel("1.2", "private-encrypted-a")
            .unwrap_err();
        assert!(matches!(error.kind(), ErrorKind::NoMasterKey(_)));
    }

    #[test]
    fn presence_data_is_compact_json() {
        let member = PresenceUser::new("7").with_info(serde_json::json!({"name": "Ann"}));
        let auth = credentials()
            .authorize_presence_channel("1.2", "presence-a", &member)
            .unwrap();
        assert_eq!(
            auth.channel_data.as_deref(),
            Some(r#"{"user_id":"7","user_info":{"name":"Ann"}}"#)
        );
    }

    #[test]
    fn webhooks_need_both_headers_and_the_right_key() {
        let c = credentials();
        let body = br#"{"time_ms":1,"events":[]}"#;
        let signature = auth::webhook_signature("secret", body);
        assert!(
            c.verify_webhook(Some("key"), Some(&signature), body)
                .is_ok()
        );
        assert!(c.verify_webhook(None, Some(&signature), body).is_err());
        assert!(c.verify_webhook(Some("key"), None, body).is_err());
        assert!(
            c.verify_webhook(Some("other"), Some(&signature), body)
                .is_err()
        );
        assert!(
            c.verify_webhook(Some("key"), Some(&signature), b"{}")
                .is_err()
        );
    }
}
