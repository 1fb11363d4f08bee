//! Channel names and kinds.
//!
//! A channel's kind follows from its name's prefix. The prefixes are tested in the order
//! pusher-js tests them: `private-encrypted-` before `private-`.

use std::fmt;

/// Longest channel name accepted by default. The protocol documents 164 characters; every
/// official server SDK accepts 200, so names between the two must work.
pub const DEFAULT_MAX_CHANNEL_NAME_LENGTH: usize = 200;

/// Longest event name the SDKs accept.
pub const MAX_EVENT_NAME_LENGTH: usize = 200;

/// Prefix of the per-user channel a signed-in connection may subscribe to.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// What a channel's name makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Public,
    Private,
    PrivateEncrypted,
    Presence,
    /// `#server-to-user-{id}`: only a connection signed in as `{id}` may subscribe.
    ServerToUser,
}

impl ChannelKind {
    /// Whether subscribing needs an `auth` signature.
    pub fn requires_auth(self) -> bool {
        matches!(
            self,
            Self::Private | Self::PrivateEncrypted | Self::Presence
        )
    }

    /// Whether clients may send `client-` events on it.
    pub fn allows_client_events(self) -> bool {
        matches!(self, Self::Private | Self::Presence)
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is {length} characters long, the limit is {max}")]
    TooLong { length: usize, max: usize },
    #[error("channel name contains a character outside [-a-zA-Z0-9_=@,.;]")]
    InvalidCharacter,
}

/// A validated channel name together with its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelName {
    name: String,
    kind: ChannelKind,
    cache: bool,
}

impl ChannelName {
    /// Validates `name` with the default length limit.
    pub fn parse(name: &str) -> Result<Self, ChannelNameError> {
        Self::parse_with_limit(name, DEFAULT_MAX_CHANNEL_NAME_LENGTH)
    }

    /// Validates `name`, accepting at most `max_length` bytes.
    pub fn parse_with_limit(name: &str, max_length: usize) -> Result<Self, ChannelNameError> {
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if name.len() > max_length {
            return Err(ChannelNameError::TooLong {
                length: name.len(),
                max: max_length,
            });
        }
        let body = name
            .strip_prefix('#')
            .filter(|_| name.starts_with(SERVER_TO_USER_PREFIX));
        if !body.unwrap_or(name).bytes().all(is_name_byte) {
            return Err(ChannelNameError::InvalidCharacter);
        }
        let (kind, cache) = classify(name);
        if kind == ChannelKind::ServerToUser && name.len() == SERVER_TO_USER_PREFIX.len() {
            return Err(ChannelNameError::InvalidCharacter);
        }
        Ok(Self {
            name: name.to_owned(),
            kind,
            cache,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// Whether the last event published on it is kept and replayed to new subscribers.
    pub fn is_cache(&self) -> bool {
        self.cache
    }

    /// For `#server-to-user-{id}`, the user id.
    pub fn server_to_user_id(&self) -> Option<&str> {
        self.name.strip_prefix(SERVER_TO_USER_PREFIX)
    }

    pub fn into_string(self) -> String {
        self.name
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'@' | b',' | b'.' | b';')
}

/// The kind and cache flag a name implies, without validating its characters.
pub fn classify(name: &str) -> (ChannelKind, bool) {
    if name.starts_with(SERVER_TO_USER_PREFIX) {
        return (ChannelKind::ServerToUser, false);
    }
    if let Some(rest) = name.strip_prefix("private-encrypted-") {
        return (ChannelKind::PrivateEncrypted, rest.starts_with("cache-"));
    }
    if let Some(rest) = name.strip_prefix("private-") {
        return (ChannelKind::Private, rest.starts_with("cache-"));
    }
    if let Some(rest) = name.strip_prefix("presence-") {
        return (ChannelKind::Presence, rest.starts_with("cache-"));
    }
    (ChannelKind::Public, name.starts_with("cache-"))
}

/// Checks an event name: non-empty and at most [`MAX_EVENT_NAME_LENGTH`] bytes. Any characters
/// are allowed, since Laravel broadcasts names such as `App\Events\OrderShipped`.
pub fn validate_event_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("event name is empty");
    }
    if name.len() > MAX_EVENT_NAME_LENGTH {
        return Err("event name is longer than 200 characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> (ChannelKind, bool) {
        let parsed = ChannelName::parse(name).unwrap();
        (parsed.kind(), parsed.is_cache())
    }

    #[test]
    fn kinds_follow_prefixes() {
        assert_eq!(kind("my-channel"), (ChannelKind::Public, false));
        assert_eq!(kind("cache-x"), (ChannelKind::Public, true));
        assert_eq!(kind("private-x"), (ChannelKind::Private, false));
        assert_eq!(kind("private-cache-x"), (ChannelKind::Private, true));
        assert_eq!(
            kind("private-encrypted-x"),
            (ChannelKind::PrivateEncrypted, false)
        );
        assert_eq!(
            kind("private-encrypted-cache-x"),
            (ChannelKind::PrivateEncrypted, true)
        );
        assert_eq!(kind("presence-x"), (ChannelKind::Presence, false));
        assert_eq!(kind("presence-cache-x"), (ChannelKind::Presence, true));
        assert_eq!(
            kind("#server-to-user-42"),
            (ChannelKind::ServerToUser, false)
        );
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(ChannelName::parse(""), Err(ChannelNameError::Empty));
        assert!(ChannelName::parse("a b").is_err());
        assert!(ChannelName::parse("#other").is_err());
        assert!(ChannelName::parse("#server-to-user-").is_err());
        assert!(ChannelName::parse("ünï").is_err());
        assert!(ChannelName::parse("-_=@,.;AZaz09").is_ok());
        assert!(ChannelName::parse(&"a".repeat(200)).is_ok());
        assert!(matches!(
            ChannelName::parse(&"a".repeat(201)),
            Err(ChannelNameError::TooLong {
                length: 201,
                max: 200
            })
        ));
    }

    #[test]
    fn event_names_allow_backslashes() {
        assert!(validate_event_name(r"App\Events\OrderShipped").is_ok());
        assert!(validate_event_name("").is_err());
        assert!(validate_event_name(&"e".repeat(201)).is_err());
    }
}
