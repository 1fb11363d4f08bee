//! Server settings, from a TOML file (`--config`) and `COMNESTOR_*` environment variables.
//!
//! The environment wins over the file. Every value is checked before the server starts, and
//! an invalid configuration stops it with one message naming every bad value; nothing falls
//! back to a default silently.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::apps::{AppSettings, SETTING_NAMES, parse_bool};
use crate::webhooks::{EVENT_NAMES, WebhookSettings};

/// Where the embedded default keeps its data.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://comnestor.db?mode=rwc";

/// Settings of the server process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: IpAddr,
    pub port: u16,
    pub database_url: String,
    /// A `tracing` filter, such as `info` or `comnestor_server=debug`.
    pub log: String,
    /// How long shutdown waits for connections to close after telling them to reconnect.
    pub shutdown_grace: Duration,
    /// How often the apps table is re-read, so CLI changes apply without a restart.
    pub app_refresh: Duration,
    /// The app defined by `COMNESTOR_APP_*` or the `[app]` table, created or updated on start.
    pub default_app: Option<DefaultApp>,
    /// Redis, for the operator event stream and (with `queue = "redis"`) the delivery queue.
    pub redis_url: Option<String>,
    /// Where delivery jobs wait.
    pub queue: QueueKind,
    /// Deliveries this process runs in parallel; 0 runs no worker (intake only).
    pub delivery_workers: usize,
    /// Attempts before an event is marked dead.
    pub delivery_max_attempts: u32,
    /// Delay before the first retry; it doubles with each further one.
    pub delivery_backoff: Duration,
    /// Whether nodes share live state (presence, counts, broadcasts) through Redis. On by
    /// default whenever `redis_url` is set; `cluster = false` keeps a node on its own.
    pub cluster: bool,
    /// Put in front of every cluster key and channel in Redis, so that several clusters can
    /// share one Redis.
    pub redis_prefix: String,
    /// How long a cluster node counts as alive after its last heartbeat; it renews every
    /// third of this. A node that stops is cleaned up by the others after at most this long.
    pub cluster_node_ttl: Duration,
    /// How often the delivery worker looks for jobs it was not woken for (retries that came
    /// due, jobs pushed by other nodes). This process's own pushes wake it at once.
    pub queue_poll: Duration,
    /// Batching, rejoin delay, retries and limits of webhooks.
    pub webhooks: WebhookSettings,
    /// `COMNESTOR_*` variables that name no setting, reported once logging is up.
    pub ignored_variables: Vec<String>,
}

/// Where delivery jobs are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// The database that holds the event log (SQLite or Postgres).
    Database,
    /// Redis (`redis_url`), shared by every node.
    Redis,
}

/// An app defined by configuration rather than the CLI.
#[derive(Debug, Clone, Default)]
pub struct DefaultApp {
    pub id: Option<String>,
    pub key: Option<String>,
    pub secret: Option<String>,
    pub name: Option<String>,
    pub enabled: Option<bool>,
    /// Settings to apply, by name, already checked.
    pub settings: Vec<(String, String)>,
    /// A webhook endpoint to make sure the app has (`COMNESTOR_APP_WEBHOOK_URL`).
    pub webhook_url: Option<String>,
    /// The events it receives (`COMNESTOR_APP_WEBHOOK_EVENTS`, comma-separated); empty for all.
    pub webhook_events: Vec<String>,
}

impl DefaultApp {
    /// Applies the configured settings on top of `settings`.
    pub fn apply(&self, settings: &mut AppSettings) {
        for (name, value) in &self.settings {
            // Checked when the configuration was loaded.
            let _ = settings.set(name, value);
        }
    }
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 6001,
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            log: "info".to_owned(),
            shutdown_grace: Duration::from_secs(10),
            app_refresh: Duration::from_secs(1),
            default_app: None,
            redis_url: None,
            queue: QueueKind::Database,
            delivery_workers: 8,
            delivery_max_attempts: 10,
            delivery_backoff: Duration::from_millis(500),
            cluster: false,
            redis_prefix: "comnestor:".to_owned(),
            cluster_node_ttl: Duration::from_secs(15),
            queue_poll: crate::queue::POLL_INTERVAL,
            webhooks: WebhookSettings::default(),
            ignored_variables: Vec::new(),
        }
    }
}

/// A raw value and where it came from, for error messages.
struct Raw {
    value: String,
    source: String,
}

impl Settings {
    /// Loads settings from an optional TOML file and the given environment.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut raw: BTreeMap<String, Raw> = BTreeMap::new();
        let mut ignored = Vec::new();
        if let Some(path) = file {
            read_file(path, &mut raw, &mut problems);
        }
        for (name, value) in env {
            let Some(key) = name.strip_prefix("COMNESTOR_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if key == "config" {
                // Read by the command line (`--config`), not here.
                continue;
            }
            let key = match key.strip_prefix("app_") {
                Some(field) => format!("app.{field}"),
                None => key,
            };
            if is_known(&key) {
                raw.insert(
                    key,
                    Raw {
                        value,
                        source: format!("environment variable {name}"),
                    },
                );
            } else {
                ignored.push(name);
            }
        }
        let mut settings = Self::from_raw(&raw, &mut problems);
        settings.ignored_variables = ignored;
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError { problems })
        }
    }

    fn from_raw(raw: &BTreeMap<String, Raw>, problems: &mut Vec<String>) -> Self {
        let mut settings = Self::default();
        let mut check = |key: &str, parse: &mut dyn FnMut(&str) -> Result<(), String>| {
            if let Some(raw) = raw.get(key)
                && let Err(reason) = parse(&raw.value)
            {
                problems.push(format!(
                    "{key} = `{}` (from {}): {reason}",
                    raw.value, raw.source
                ));
            }
        };
        check("host", &mut |v| {
            settings.host = v
                .trim()
                .parse()
                .map_err(|_| "not an IP address such as 0.0.0.0 or 127.0.0.1".to_owned())?;
            Ok(())
        });
        check("port", &mut |v| {
            settings.port = v
                .trim()
                .parse()
                .map_err(|_| "not a port number (0 to 65535)".to_owned())?;
            Ok(())
        });
        check("database_url", &mut |v| {
            let supported = ["sqlite:", "postgres://", "postgresql://", "mysql://"];
            if !supported.iter().any(|p| v.starts_with(p)) {
                return Err("use a sqlite:, postgres:// or mysql:// URL".to_owned());
            }
            settings.database_url = v.to_owned();
            Ok(())
        });
        check("log", &mut |v| {
            tracing_subscriber::EnvFilter::try_new(v)
                .map_err(|e| format!("not a log filter: {e}"))?;
            settings.log = v.to_owned();
            Ok(())
        });
        check("shutdown_grace_secs", &mut |v| {
            settings.shutdown_grace = Duration::from_secs(
                v.trim()
                    .parse()
                    .map_err(|_| "not a number of seconds".to_owned())?,
            );
            Ok(())
        });
        check("app_refresh_ms", &mut |v| {
            let ms: u64 = v
                .trim()
                .parse()
                .map_err(|_| "not a number of milliseconds".to_owned())?;
            if ms == 0 {
                return Err("must be at least 1".to_owned());
            }
            settings.app_refresh = Duration::from_millis(ms);
            Ok(())
        });
        check("redis_url", &mut |v| {
            if !(v.starts_with("redis://") || v.starts_with("rediss://")) {
                return Err("use a redis:// or rediss:// URL".to_owned());
            }
            settings.redis_url = Some(v.to_owned());
            Ok(())
        });
        check("queue", &mut |v| {
            settings.queue = match v.trim() {
                "database" => QueueKind::Database,
                "redis" => QueueKind::Redis,
                _ => return Err("use `database` or `redis`".to_owned()),
            };
            Ok(())
        });
        check("delivery_workers", &mut |v| {
            settings.delivery_workers = v
                .trim()
                .parse()
                .map_err(|_| "not a whole number".to_owned())?;
            Ok(())
        });
        check("delivery_max_attempts", &mut |v| {
            match v.trim().parse() {
                Ok(n) if n > 0 => settings.delivery_max_attempts = n,
                _ => return Err("not a positive whole number".to_owned()),
            }
            Ok(())
        });
        check("queue_poll_ms", &mut |v| {
            match v.trim().parse() {
                Ok(ms) if ms > 0 => settings.queue_poll = Duration::from_millis(ms),
                _ => return Err("not a positive number of milliseconds".to_owned()),
            }
            Ok(())
        });
        check("delivery_backoff_ms", &mut |v| {
            let ms: u64 = v
                .trim()
                .parse()
                .map_err(|_| "not a number of milliseconds".to_owned())?;
            settings.delivery_backoff = Duration::from_millis(ms.max(1));
            Ok(())
        });
        settings.cluster = settings.redis_url.is_some();
        check("cluster", &mut |v| {
            settings.cluster = parse_bool(v)?;
            Ok(())
        });
        check("redis_prefix", &mut |v| {
            if v.is_empty() || v.contains(char::is_whitespace) {
                return Err(
                    "use a non-empty prefix without spaces, such as `comnestor:`".to_owned(),
                );
            }
            settings.redis_prefix = v.to_owned();
            Ok(())
        });
        check("cluster_node_ttl_ms", &mut |v| {
            let ms: u64 = v
                .trim()
                .parse()
                .map_err(|_| "not a number of milliseconds".to_owned())?;
            if ms < 300 {
                return Err("must be at least 300".to_owned());
            }
            settings.cluster_node_ttl = Duration::from_millis(ms);
            Ok(())
        });
        webhook_settings(&mut settings.webhooks, &mut check);
        if settings.cluster && settings.redis_url.is_none() {
            problems.push("cluster = true needs redis_url (COMNESTOR_REDIS_URL)".to_owned());
        }
        if settings.queue == QueueKind::Redis && settings.redis_url.is_none() {
            problems.push("queue = `redis` needs redis_url (COMNESTOR_REDIS_URL)".to_owned());
        }
        if settings.database_url.starts_with("mysql://") && settings.queue != QueueKind::Redis {
            // apalis has no MySQL backend on this sqlx; the log can live in MySQL, the queue not.
            problems.push(
                "a mysql:// database holds the event log but not the delivery queue: set queue = `redis` (COMNESTOR_QUEUE=redis) and redis_url".to_owned(),
            );
        }
        settings.default_app = default_app(raw, problems);
        settings
    }
}

const SERVER_KEYS: &[&str] = &[
    "host",
    "port",
    "database_url",
    "log",
    "shutdown_grace_secs",
    "app_refresh_ms",
    "redis_url",
    "queue",
    "delivery_workers",
    "delivery_max_attempts",
    "delivery_backoff_ms",
    "cluster",
    "redis_prefix",
    "cluster_node_ttl_ms",
    "queue_poll_ms",
    "webhook_batch_ms",
    "webhook_removal_delay_ms",
    "webhook_max_attempts",
    "webhook_backoff_ms",
    "webhook_timeout_ms",
    "webhook_workers",
];
const APP_KEYS: &[&str] = &[
    "id",
    "key",
    "secret",
    "name",
    "webhook_url",
    "webhook_events",
];

type Check<'a> = dyn FnMut(&str, &mut dyn FnMut(&str) -> Result<(), String>) + 'a;

fn millis(v: &str) -> Result<Duration, String> {
    v.trim()
        .parse()
        .map(Duration::from_millis)
        .map_err(|_| "not a number of milliseconds".to_owned())
}

fn positive(v: &str) -> Result<u32, String> {
    match v.trim().parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("not a positive whole number".to_owned()),
    }
}

fn webhook_settings(webhooks: &mut WebhookSettings, check: &mut Check<'_>) {
    check("webhook_batch_ms", &mut |v| {
        webhooks.timing.window = millis(v)?;
        Ok(())
    });
    check("webhook_removal_delay_ms", &mut |v| {
        webhooks.timing.removal_delay = millis(v)?;
        Ok(())
    });
    check("webhook_max_attempts", &mut |v| {
        webhooks.sender.retry.max_attempts = positive(v)?;
        Ok(())
    });
    check("webhook_backoff_ms", &mut |v| {
        webhooks.sender.retry.base_delay = millis(v)?.max(Duration::from_millis(1));
        Ok(())
    });
    check("webhook_timeout_ms", &mut |v| {
        webhooks.sender.timeout = millis(v)?.max(Duration::from_millis(1));
        Ok(())
    });
    check("webhook_workers", &mut |v| {
        webhooks.workers = positive(v)? as usize;
        Ok(())
    });
}

fn is_known(key: &str) -> bool {
    match key.strip_prefix("app.") {
        Some(field) => APP_KEYS.contains(&field) || SETTING_NAMES.contains(&field),
        None => SERVER_KEYS.contains(&key),
    }
}

fn default_app(raw: &BTreeMap<String, Raw>, problems: &mut Vec<String>) -> Option<DefaultApp> {
    let mut app = DefaultApp::default();
    let mut any = false;
    let mut scratch = AppSettings::default();
    for (key, raw) in raw.iter().filter(|(k, _)| k.starts_with("app.")) {
        any = true;
        let field = &key["app.".len()..];
        let value = raw.value.clone();
        let result = match field {
            "id" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                app.id = Some(value);
                Ok(())
            }
            "id" => Err("app ids are numeric, as Pusher's are".to_owned()),
            "key" => {
                app.key = Some(value);
                Ok(())
            }
            "secret" => {
                app.secret = Some(value);
                Ok(())
            }
            "name" => {
                app.name = Some(value);
                Ok(())
            }
            "enabled" => parse_bool(&value).map(|b| app.enabled = Some(b)),
            "webhook_url" if value.starts_with("http://") || value.starts_with("https://") => {
                app.webhook_url = Some(value);
                Ok(())
            }
            "webhook_url" => Err("use an http:// or https:// URL".to_owned()),
            "webhook_events" => webhook_events(&value).map(|events| app.webhook_events = events),
            _ => scratch
                .set(field, &value)
                .map(|()| app.settings.push((field.to_owned(), value))),
        };
        if let Err(reason) = result {
            problems.push(format!(
                "{key} = `{}` (from {}): {reason}",
                raw.value, raw.source
            ));
        }
    }
    if any && (app.id.is_none() || app.key.is_none() || app.secret.is_none()) {
        problems.push("the default app needs all three of COMNESTOR_APP_ID, COMNESTOR_APP_KEY and COMNESTOR_APP_SECRET (or id, key and secret under [app])".to_owned());
    }
    any.then_some(app)
}

fn webhook_events(value: &str) -> Result<Vec<String>, String> {
    let events: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    match events.iter().find(|e| !EVENT_NAMES.contains(&e.as_str())) {
        Some(unknown) => Err(format!(
            "unknown webhook event `{unknown}` (known: {})",
            EVENT_NAMES.join(", ")
        )),
        None => Ok(events),
    }
}

fn read_file(path: &Path, raw: &mut BTreeMap<String, Raw>, problems: &mut Vec<String>) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            return problems.push(format!(
                "cannot read config file {}: {error}",
                path.display()
            ));
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(error) => {
            return problems.push(format!(
                "config file {} is not valid TOML: {error}",
                path.display()
            ));
        }
    };
    let source = format!("config file {}", path.display());
    flatten(&table, "", &source, raw, problems);
}

fn flatten(
    table: &toml::Table,
    prefix: &str,
    source: &str,
    raw: &mut BTreeMap<String, Raw>,
    problems: &mut Vec<String>,
) {
    for (name, value) in table {
        let key = format!("{prefix}{name}");
        let text = match value {
            toml::Value::Table(inner) if prefix.is_empty() && name == "app" => {
                flatten(inner, "app.", source, raw, problems);
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map_or_else(|| item.to_string(), str::to_owned)
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        if is_known(&key) {
            raw.insert(
                key,
                Raw {
                    value: text,
                    source: source.to_owned(),
                },
            );
        } else {
            problems.push(format!("unknown setting `{key}` in {source}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_input() {
        let settings = Settings::load(None, env(&[])).unwrap();
        assert_eq!(settings.port, 6001);
        assert!(settings.default_app.is_none());
    }

    #[test]
    fn every_bad_value_is_named() {
        let error = Settings::load(
            None,
            env(&[
                ("COMNESTOR_PORT", "high"),
                ("COMNESTOR_HOST", "nowhere"),
                ("COMNESTOR_APP_CLIENT_EVENTS", "maybe"),
            ]),
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("COMNESTOR_PORT"), "{text}");
        assert!(text.contains("COMNESTOR_HOST"), "{text}");
        assert!(text.contains("COMNESTOR_APP_CLIENT_EVENTS"), "{text}");
        assert!(text.contains("COMNESTOR_APP_ID"), "{text}");
    }

    #[test]
    fn pipeline_settings_from_the_environment() {
        let settings = Settings::load(
            None,
            env(&[
                ("COMNESTOR_REDIS_URL", "redis://127.0.0.1:6379"),
                ("COMNESTOR_QUEUE", "redis"),
                ("COMNESTOR_DELIVERY_WORKERS", "2"),
                ("COMNESTOR_TYPO", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(
            settings.redis_url.as_deref(),
            Some("redis://127.0.0.1:6379")
        );
        assert_eq!(settings.queue, QueueKind::Redis);
        assert_eq!(settings.delivery_workers, 2);
        assert_eq!(settings.ignored_variables, ["COMNESTOR_TYPO"]);
    }

    #[test]
    fn file_then_environment() {
        let dir = std::env::temp_dir().join(format!("comnestor-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, "port = 7000\nhost = \"127.0.0.1\"\n[app]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nallowed_origins = [\"https://a.test\"]\n").unwrap();
        let settings = Settings::load(Some(&path), env(&[("COMNESTOR_PORT", "7001")])).unwrap();
        assert_eq!(settings.port, 7001);
        assert_eq!(settings.host.to_string(), "127.0.0.1");
        let app = settings.default_app.unwrap();
        let mut app_settings = AppSettings::default();
        app.apply(&mut app_settings);
        assert_eq!(app_settings.allowed_origins, ["https://a.test"]);

        std::fs::write(&path, "prot = 1\n").unwrap();
        let error = Settings::load(Some(&path), env(&[])).unwrap_err();
        assert!(error.to_string().contains("unknown setting `prot`"));
    }
}
