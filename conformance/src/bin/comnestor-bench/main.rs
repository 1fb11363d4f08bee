//! `comnestor-bench`: a load generator for any Pusher-compatible server.
//!
//! It speaks only the Pusher WebSocket protocol and the signed Pusher HTTP API (plus
//! Comnestor's `/api/events` for the intake scenario), so one run measures Comnestor and a
//! peer on equal terms. Every run is bounded in connections and time and stops by itself;
//! it prints a table and, with `--json`, appends one JSON record.
//!
//! - [`client`]: a minimal WebSocket client whose receive path does almost no work.
//! - [`payload`]: the stamp inside each event (sequence numbers and send time).
//! - [`stats`]: the latency histogram and the bitset that finds lost and repeated events.
//! - [`scenarios`]: idle, fanout, channels, presence, intake and churn.
//! - [`proc`]: memory and CPU of the server and the generator, from `/proc`.
//! - [`report`]: the table and the JSON record.

mod client;
mod payload;
mod proc;
mod reader;
mod report;
mod scenarios;
mod stats;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use report::RunContext;
use scenarios::{channels, churn, fanout, idle, intake, presence};
use target::Target;

/// Most connections or subscribers one run may open.
const MAX_CONNECTIONS: usize = 200_000;
/// Longest a run may publish, hold or churn, in seconds.
const MAX_SECONDS: f64 = 600.0;

/// Load generator for Pusher-compatible servers.
#[derive(Debug, Parser)]
#[command(name = "comnestor-bench", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Args)]
struct Global {
    /// The server's HTTP base URL (the WebSocket endpoint is on the same host and port unless
    /// --ws-url says otherwise).
    #[arg(
        long,
        env = "COMNESTOR_URL",
        default_value = "http://127.0.0.1:6001",
        global = true
    )]
    url: String,
    /// `ws://host:port` when WebSockets listen elsewhere.
    #[arg(long, global = true)]
    ws_url: Option<String>,
    #[arg(long, env = "COMNESTOR_APP_ID", default_value = "100", global = true)]
    app_id: String,
    #[arg(
        long,
        env = "COMNESTOR_APP_KEY",
        default_value = "app-key",
        global = true
    )]
    app_key: String,
    #[arg(
        long,
        env = "COMNESTOR_APP_SECRET",
        default_value = "app-secret",
        global = true
    )]
    app_secret: String,
    /// The server's process id, for its memory and CPU; found from the listening port when
    /// not given.
    #[arg(long, env = "COMNESTOR_BENCH_SERVER_PID", global = true)]
    server_pid: Option<u32>,
    /// Local addresses 127.0.0.1 to 127.0.0.N the clients connect from, each with its own
    /// ephemeral port range.
    #[arg(long, default_value_t = 8, global = true)]
    source_ips: usize,
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 2, global = true)]
    threads: usize,
    /// Append the run's JSON record to this file (`-` prints it).
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// The server's name in the report, such as `comnestor` or `sockudo`.
    #[arg(long, default_value = "comnestor", global = true)]
    label: String,
    /// Exit with status 1 when anything was lost, duplicated, refused or not delivered.
    #[arg(long, global = true)]
    strict: bool,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Open N connections, subscribe each, hold them; connect rate and server memory.
    Idle(idle::IdleArgs),
    /// S subscribers on one channel, events through the HTTP API at a rate.
    Fanout(fanout::FanoutArgs),
    /// Subscribers spread over many channels, publishes round robin.
    Channels(channels::ChannelsArgs),
    /// Members joining and leaving presence channels while events flow.
    Presence(presence::PresenceArgs),
    /// POST /api/events (Comnestor only) to subscribers; latency per stage.
    Intake(intake::IntakeArgs),
    /// Connects and disconnects per second.
    Churn(churn::ChurnArgs),
    /// One process's share of `idle --processes`; started by `idle`, not by hand.
    #[command(hide = true)]
    IdleWorker(idle::IdleWorkerArgs),
}

impl Scenario {
    /// Refuses runs outside the bounds every run must stay within.
    fn check(&self) -> anyhow::Result<()> {
        let (connections, seconds) = match self {
            Self::Idle(a) => (a.connections, a.hold + a.release_wait),
            Self::Fanout(a) => (
                a.subscribers + a.other_channels / 1000 + 1,
                a.publish.duration,
            ),
            Self::Channels(a) => (a.subscribers, a.publish.duration),
            Self::Presence(a) => (a.members, a.publish.duration),
            Self::Intake(a) => (a.subscribers, a.publish.duration),
            Self::Churn(a) => (a.inflight, a.duration),
            Self::IdleWorker(a) => (a.connections, 0.0),
        };
        if connections > MAX_CONNECTIONS {
            bail!("at most {MAX_CONNECTIONS} connections per run");
        }
        if !(0.0..=MAX_SECONDS).contains(&seconds) {
            bail!("runs last at most {MAX_SECONDS} s");
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    // reqwest is built without a default TLS provider; the generator never uses TLS, but the
    // client still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("comnestor-bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the scenario; `Ok(false)` when `--strict` found a failure.
fn run(cli: Cli) -> anyhow::Result<bool> {
    cli.scenario.check()?;
    let global = cli.global;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(global.threads.max(1))
        .enable_all()
        .build()?;
    let scenario = cli.scenario;
    runtime.block_on(async move {
        let inflight = match &scenario {
            Scenario::Fanout(a) => a.publish.inflight,
            Scenario::Channels(a) => a.publish.inflight,
            Scenario::Presence(a) => a.publish.inflight,
            Scenario::Intake(a) => a.publish.inflight,
            _ => 8,
        };
        let target = Arc::new(Target::new(
            &global.url,
            global.ws_url.as_deref(),
            global.app_id.clone(),
            global.app_key.clone(),
            global.app_secret.clone(),
            global.source_ips,
            inflight,
        )?);
        if let Scenario::IdleWorker(a) = &scenario {
            idle::worker(target, a).await?;
            return Ok(true);
        }
        let pid = global
            .server_pid
            .or_else(|| proc::find_listener(target.ws_addr.port()));
        let pid_text = pid.map(|p| p.to_string());
        let mut forward = vec![
            format!("--url={}", global.url),
            format!("--source-ips={}", global.source_ips),
            "--threads=1".to_owned(),
        ];
        forward.extend(global.ws_url.as_ref().map(|w| format!("--ws-url={w}")));
        let context = RunContext::new(
            global.label.clone(),
            global.url.clone(),
            pid,
            global.threads,
        );
        let pid = pid_text.as_deref();
        let report = match &scenario {
            Scenario::Idle(a) => idle::run(target, a, pid, &forward).await,
            Scenario::Fanout(a) => fanout::run(target, a, pid).await,
            Scenario::Channels(a) => channels::run(target, a, pid).await,
            Scenario::Presence(a) => presence::run(target, a, pid).await,
            Scenario::Intake(a) => intake::run(target, a, pid).await,
            Scenario::Churn(a) => churn::run(target, a, pid).await,
            Scenario::IdleWorker(_) => return Ok(true),
        }
        .context("the run failed")?;
        report::emit(&report, &context, global.json.as_deref())?;
        Ok(!global.strict || report.failures.is_empty())
    })
}
