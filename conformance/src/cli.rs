//! The command line: `comnestor-conformance run --url … --app-id … --key … --secret …`.
//!
//! Every flag also reads an environment variable. The four target variables are the ones the
//! repository's CI exports: `COMNESTOR_URL`, `COMNESTOR_APP_ID`, `COMNESTOR_APP_KEY` and
//! `COMNESTOR_APP_SECRET`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, Node};

#[derive(Debug, Parser)]
#[command(
    name = "comnestor-conformance",
    version,
    about = "Black-box Pusher protocol conformance suite for any Pusher-compatible server",
    after_help = "Exit codes: 0 every selected case passed (skips allowed), 1 at least one case \
                  failed, 2 bad command line or configuration."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the suite against a server.
    Run(Box<RunArgs>),
    /// Lists every case with the rule it checks.
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Junit,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// HTTP base URL of the server, such as http://127.0.0.1:6001.
    #[arg(long, env = "COMNESTOR_URL")]
    pub url: String,
    /// WebSocket base URL (ws:// or wss://); derived from --url when absent.
    #[arg(long, env = "COMNESTOR_WS_URL")]
    pub ws_url: Option<String>,
    #[arg(long, env = "COMNESTOR_APP_ID")]
    pub app_id: String,
    #[arg(long, env = "COMNESTOR_APP_KEY")]
    pub key: String,
    #[arg(long, env = "COMNESTOR_APP_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Another node of the same cluster (HTTP URL); repeat for each. Enables the multinode area.
    #[arg(long = "node", env = "COMNESTOR_NODES", value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Run only these areas or case ids (area.name); repeatable or comma-separated.
    #[arg(long, env = "COMNESTOR_CONFORMANCE_ONLY", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip these areas or case ids; repeatable or comma-separated.
    #[arg(long, env = "COMNESTOR_CONFORMANCE_SKIP", value_delimiter = ',')]
    pub skip: Vec<String>,
    /// What to print on stdout.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "COMNESTOR_CONFORMANCE_FORMAT"
    )]
    pub format: Format,
    /// Also write JUnit XML to this file.
    #[arg(long, env = "COMNESTOR_CONFORMANCE_JUNIT")]
    pub junit: Option<PathBuf>,
    /// Also write the JSON report to this file.
    #[arg(long, env = "COMNESTOR_CONFORMANCE_JSON")]
    pub json: Option<PathBuf>,
    /// Cases run at the same time.
    #[arg(long, default_value_t = 4, env = "COMNESTOR_CONFORMANCE_CONCURRENCY")]
    pub concurrency: usize,
    /// Seconds one case may take.
    #[arg(long, default_value_t = 30, env = "COMNESTOR_CONFORMANCE_CASE_TIMEOUT")]
    pub case_timeout: u64,
    /// Milliseconds to wait for each expected frame or reply.
    #[arg(long, default_value_t = 5000, env = "COMNESTOR_CONFORMANCE_WAIT_MS")]
    pub wait_ms: u64,
    /// Milliseconds of silence that prove something is not delivered.
    #[arg(long, default_value_t = 500, env = "COMNESTOR_CONFORMANCE_QUIET_MS")]
    pub quiet_ms: u64,
    /// Seconds to wait for the server to ping an idle client; without it that case is skipped.
    #[arg(long, env = "COMNESTOR_CONFORMANCE_ACTIVITY_TIMEOUT_WAIT")]
    pub activity_timeout_wait: Option<u64>,
    /// The app has subscription counting on: run the subscription_count area.
    #[arg(long, env = "COMNESTOR_EXPECT_SUBSCRIPTION_COUNT", value_parser = BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub expect_subscription_count: bool,
    /// Run the webhooks area; the app must post webhooks to the printed URL.
    #[arg(long, env = "COMNESTOR_CONFORMANCE_WEBHOOKS", value_parser = BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub webhooks: bool,
    /// Address of the webhook receiver.
    #[arg(
        long,
        default_value = "127.0.0.1:0",
        env = "COMNESTOR_CONFORMANCE_WEBHOOK_LISTEN"
    )]
    pub webhook_listen: SocketAddr,
    /// The webhook URL as the server reaches it, when not the listen address.
    #[arg(long, env = "COMNESTOR_CONFORMANCE_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// The app's largest accepted event data, in bytes.
    #[arg(
        long,
        default_value_t = 10_240,
        env = "COMNESTOR_CONFORMANCE_MAX_EVENT_SIZE"
    )]
    pub max_event_size: usize,
}

impl RunArgs {
    /// The run configuration these arguments describe.
    pub fn config(&self) -> Result<Config> {
        let primary = Node::new(&self.url, self.ws_url.as_deref()).context("--url")?;
        let mut cfg = Config::new(primary, &self.app_id, &self.key, &self.secret);
        for node in &self.nodes {
            let node = Node::new(node, None).context("--node")?;
            if node.http != cfg.primary.http {
                cfg.others.push(node);
            }
        }
        cfg.only.clone_from(&self.only);
        cfg.skip.clone_from(&self.skip);
        cfg.concurrency = self.concurrency.max(1);
        cfg.case_timeout = Duration::from_secs(self.case_timeout);
        cfg.wait = Duration::from_millis(self.wait_ms);
        cfg.quiet = Duration::from_millis(self.quiet_ms);
        cfg.activity_timeout_wait = self.activity_timeout_wait.map(Duration::from_secs);
        cfg.expect_subscription_count = self.expect_subscription_count;
        cfg.webhooks = self.webhooks;
        cfg.webhook_listen = self.webhook_listen;
        cfg.webhook_url.clone_from(&self.webhook_url);
        cfg.max_event_size = self.max_event_size;
        let known = known_filters();
        for filter in cfg.only.iter().chain(&cfg.skip) {
            if !known.contains(filter) {
                anyhow::bail!(
                    "unknown area or case {filter:?}; `comnestor-conformance list` shows them"
                );
            }
        }
        Ok(cfg)
    }
}

fn known_filters() -> Vec<String> {
    let mut names = Vec::new();
    for case in crate::cases::all() {
        let area = case.area.id().to_owned();
        if !names.contains(&area) {
            names.push(area);
        }
        names.push(case.id());
    }
    names
}

/// The text of `comnestor-conformance list`.
pub fn list() -> String {
    let mut out = String::new();
    for case in crate::cases::all() {
        out.push_str(&format!("{}\n    {}\n", case.id(), case.rule));
    }
    out
}
