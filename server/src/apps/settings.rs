//! Per-app settings: what an app allows and its limits.

use serde::{Deserialize, Serialize};

/// The settings of one app. Stored as JSON next to its credentials; a field missing from the
/// stored document takes its default, so adding a setting needs no migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppSettings {
    /// Origins allowed to open WebSocket connections (`*` wildcards allowed). Empty allows any.
    pub allowed_origins: Vec<String>,
    /// Most simultaneous connections on this node; `None` for no limit.
    pub max_connections: Option<u32>,
    /// Whether `client-` events are relayed on private and presence channels.
    pub client_events: bool,
    /// Whether `pusher:signin` is accepted.
    pub user_authentication: bool,
    /// Whether `pusher_internal:subscription_count` is broadcast on non-presence channels.
    pub subscription_count: bool,
    /// Largest event `data`, in bytes, accepted from the HTTP API and from client events.
    pub max_event_size: u32,
    /// Largest WebSocket message, in bytes, a client may send.
    pub max_message_size: u32,
    /// Most distinct users in one presence channel.
    pub max_presence_members: u32,
    /// Largest presence `user_info`, in bytes.
    pub max_presence_member_size: u32,
    /// Client events one connection may send per second.
    pub client_event_rate: u32,
    /// Seconds of silence after which the client should ping, and after which the server does.
    pub activity_timeout: u32,
    /// Events per second `POST /api/events` accepts for this app; more get 429.
    pub intake_rate: u32,
    /// Days the event log keeps this app's events.
    pub retention_days: u32,
    /// Base URL of an external Pusher-compatible server to deliver to, such as
    /// `https://ws.example.com:443`; `None` delivers to this server.
    pub delivery_url: Option<String>,
    /// The app id the external server knows this app by.
    pub delivery_app_id: Option<String>,
    pub delivery_key: Option<String>,
    pub delivery_secret: Option<String>,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_connections: None,
            client_events: true,
            user_authentication: true,
            subscription_count: false,
            max_event_size: 10_240,
            max_message_size: 102_400,
            max_presence_members: 100,
            max_presence_member_size: 1_024,
            client_event_rate: 10,
            activity_timeout: 120,
            intake_rate: 1000,
            retention_days: 7,
            delivery_url: None,
            delivery_app_id: None,
            delivery_key: None,
            delivery_secret: None,
        }
    }
}

/// The names [`AppSettings::set`] accepts, with `enabled`, which lives beside the settings.
pub const SETTING_NAMES: &[&str] = &[
    "enabled",
    "allowed_origins",
    "max_connections",
    "client_events",
    "user_authentication",
    "subscription_count",
    "max_event_size",
    "max_message_size",
    "max_presence_members",
    "max_presence_member_size",
    "client_event_rate",
    "activity_timeout",
    "intake_rate",
    "retention_days",
    "delivery_url",
    "delivery_app_id",
    "delivery_key",
    "delivery_secret",
];

impl AppSettings {
    /// Sets one setting from text, as given on the command line or in the environment.
    /// `enabled` is not a field here; callers handle it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "allowed_origins" => self.allowed_origins = parse_list(value),
            "max_connections" => {
                self.max_connections = match value.trim() {
                    "" | "none" | "unlimited" => None,
                    n => Some(parse_positive(n)?),
                }
            }
            "client_events" => self.client_events = parse_bool(value)?,
            "user_authentication" => self.user_authentication = parse_bool(value)?,
            "subscription_count" => self.subscription_count = parse_bool(value)?,
            "max_event_size" => self.max_event_size = parse_positive(value)?,
            "max_message_size" => self.max_message_size = parse_positive(value)?,
            "max_presence_members" => self.max_presence_members = parse_positive(value)?,
            "max_presence_member_size" => self.max_presence_member_size = parse_positive(value)?,
            "client_event_rate" => self.client_event_rate = parse_positive(value)?,
            "activity_timeout" => self.activity_timeout = parse_positive(value)?,
            "intake_rate" => self.intake_rate = parse_positive(value)?,
            "retention_days" => self.retention_days = parse_positive(value)?,
            "delivery_url" => self.delivery_url = parse_url(value)?,
            "delivery_app_id" => self.delivery_app_id = optional(value),
            "delivery_key" => self.delivery_key = optional(value),
            "delivery_secret" => self.delivery_secret = optional(value),
            _ => {
                return Err(format!(
                    "unknown setting `{name}`; known: {}",
                    SETTING_NAMES.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Whether a WebSocket `Origin` header passes `allowed_origins`.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        if self.allowed_origins.is_empty() || self.allowed_origins.iter().any(|p| p == "*") {
            return true;
        }
        let Some(origin) = origin else {
            return false;
        };
        self.allowed_origins
            .iter()
            .any(|pattern| wildcard_match(pattern, origin))
    }
}

/// Parses `true`/`false` (and `1`/`0`, `yes`/`no`, `on`/`off`).
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!("`{other}` is not a boolean (use true or false)")),
    }
}

fn parse_positive(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{value}` is not a positive whole number")),
    }
}

fn optional(value: &str) -> Option<String> {
    Some(value.trim())
        .filter(|v| !v.is_empty() && *v != "none")
        .map(str::to_owned)
}

fn parse_url(value: &str) -> Result<Option<String>, String> {
    let Some(url) = optional(value) else {
        return Ok(None);
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains('?') => {
            Ok(Some(url.trim_end_matches('/').to_owned()))
        }
        _ => Err(format!("`{url}` is not an http:// or https:// base URL")),
    }
}

fn parse_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Matches `text` against `pattern`, where `*` stands for any run of characters.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let mut settings = AppSettings::default();
        assert!(settings.origin_allowed(None));
        settings
            .set("allowed_origins", "https://app.test, https://*.example.com")
            .unwrap();
        assert!(settings.origin_allowed(Some("https://app.test")));
        assert!(settings.origin_allowed(Some("https://a.example.com")));
        assert!(!settings.origin_allowed(Some("https://example.com.evil")));
        assert!(!settings.origin_allowed(Some("http://app.test")));
        assert!(!settings.origin_allowed(None));
    }

    #[test]
    fn set_names_every_problem() {
        let mut settings = AppSettings::default();
        assert!(settings.set("client_events", "maybe").is_err());
        assert!(settings.set("activity_timeout", "0").is_err());
        assert!(settings.set("nope", "1").is_err());
        settings.set("max_connections", "none").unwrap();
        assert_eq!(settings.max_connections, None);
    }
}
