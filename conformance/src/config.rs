//! What the suite runs against and which cases it runs.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, bail};

/// One server of the cluster under test.
#[derive(Debug, Clone)]
pub struct Node {
    /// HTTP base URL, such as `http://127.0.0.1:6001`.
    pub http: String,
    /// WebSocket base URL, such as `ws://127.0.0.1:6001`; `/app/{key}` is appended.
    pub ws: String,
}

impl Node {
    /// A node whose WebSocket URL is derived from its HTTP URL, unless `ws` is given.
    pub fn new(http: &str, ws: Option<&str>) -> Result<Self> {
        let http = http.trim_end_matches('/').to_owned();
        let ws = match ws {
            Some(ws) => ws.trim_end_matches('/').to_owned(),
            None => ws_from_http(&http)?,
        };
        Ok(Self { http, ws })
    }
}

/// `http://h:p/x` → `ws://h:p/x`, `https://…` → `wss://…`.
pub fn ws_from_http(url: &str) -> Result<String> {
    if let Some(rest) = url.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if let Some(rest) = url.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else {
        bail!("the URL must start with http:// or https://: {url}")
    }
}

/// Everything a run needs. Build it with [`Config::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node most cases use.
    pub primary: Node,
    /// Further nodes of the same cluster, for the multinode area.
    pub others: Vec<Node>,
    pub app_id: String,
    pub key: String,
    pub secret: String,
    /// Areas (`presence`) or case ids (`presence.member_added`) to run; empty runs all.
    pub only: Vec<String>,
    /// Areas or case ids not to run.
    pub skip: Vec<String>,
    /// How long one case may take in all.
    pub case_timeout: Duration,
    /// How long the suite waits for one expected frame or reply.
    pub wait: Duration,
    /// How long the suite listens to conclude that something does not arrive.
    pub quiet: Duration,
    /// Cases run at the same time.
    pub concurrency: usize,
    /// How long to wait for the server to ping an idle client; `None` skips that case.
    pub activity_timeout_wait: Option<Duration>,
    /// Whether the app has subscription counting on (`pusher_internal:subscription_count`).
    pub expect_subscription_count: bool,
    /// Whether to run the webhooks area.
    pub webhooks: bool,
    /// Where the webhook receiver listens.
    pub webhook_listen: SocketAddr,
    /// The URL the server should post to, when it differs from the listen address.
    pub webhook_url: Option<String>,
    /// The app's largest accepted event `data`, in bytes.
    pub max_event_size: usize,
}

impl Config {
    pub fn new(primary: Node, app_id: &str, key: &str, secret: &str) -> Self {
        Self {
            primary,
            others: Vec::new(),
            app_id: app_id.to_owned(),
            key: key.to_owned(),
            secret: secret.to_owned(),
            only: Vec::new(),
            skip: Vec::new(),
            case_timeout: Duration::from_secs(30),
            wait: Duration::from_secs(5),
            quiet: Duration::from_millis(500),
            concurrency: 4,
            activity_timeout_wait: None,
            expect_subscription_count: false,
            webhooks: false,
            webhook_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhook_url: None,
            max_event_size: 10_240,
        }
    }

    /// Every node: the primary first.
    pub fn nodes(&self) -> Vec<&Node> {
        std::iter::once(&self.primary).chain(&self.others).collect()
    }

    /// Whether a case of `area` named `id` (`area.name`) is selected.
    pub fn selects(&self, area: &str, id: &str) -> Result<(), String> {
        let hit = |filters: &[String]| filters.iter().any(|f| f == area || f == id);
        if !self.only.is_empty() && !hit(&self.only) {
            return Err("not selected by --only".into());
        }
        if hit(&self.skip) {
            return Err("skipped by --skip".into());
        }
        Ok(())
    }
}
