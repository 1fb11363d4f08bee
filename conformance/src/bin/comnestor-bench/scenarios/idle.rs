//! Idle connections: open N, subscribe each, hold them, and read the server's resident memory
//! before, while held, and after they are gone.
//!
//! The memory per connection is `(held - before) / N` of the server's RSS. The kernel's own
//! socket buffers are outside that figure; `/proc/net/sockstat` reports them machine-wide
//! (both ends of each loopback connection), and the table shows that separately.
//!
//! The clients run in this process, or with `--processes K` in K copies of it (the hidden
//! `idle-worker` command), when one process's open-file limit is too low for them all.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::secs;
use crate::client::{Status, Ws};
use crate::payload::now_us;
use crate::proc;
use crate::report::{Report, thousands};
use crate::stats::Histogram;
use crate::target::Target;

#[derive(Debug, Clone, Args, Serialize)]
pub struct IdleArgs {
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Channels the connections subscribe to (connection i joins channel i mod N).
    #[arg(long, default_value_t = 100)]
    pub channels: usize,
    /// Seconds to hold the connections once all are subscribed.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Seconds to wait after connecting before reading memory.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Seconds to wait after disconnecting before reading memory again.
    #[arg(long, default_value_t = 5.0)]
    pub release_wait: f64,
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Processes the clients are spread over, when one process's open-file limit is too low
    /// for them all. The generator's own memory is then not reported.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
}

enum Ready {
    Subscribed(u64),
    Failed(String),
}

async fn hold_one(
    target: Arc<Target>,
    index: usize,
    channel: String,
    gate: Arc<Semaphore>,
    ready: mpsc::Sender<Ready>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let Ok(permit) = gate.acquire().await else {
        return false;
    };
    let started = now_us();
    let setup = async {
        let mut ws = Ws::connect(&target, target.source(index), 2048).await?;
        ws.queue_subscribe(&channel, None, None);
        ws.flush().await?;
        ws.await_subscribed(&[&channel]).await?;
        anyhow::Ok(ws)
    };
    let mut ws = match setup.await {
        Ok(ws) => ws,
        Err(error) => {
            let _ = ready.send(Ready::Failed(format!("{error:#}"))).await;
            return false;
        }
    };
    drop(permit);
    let _ = ready.send(Ready::Subscribed(now_us() - started)).await;
    drop(ready);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            status = ws.read_some(|text, out| {
                if text.windows(11).any(|w| w == b"pusher:ping") {
                    out.text(r#"{"event":"pusher:pong","data":{}}"#);
                }
            }) => {
                if !matches!(status, Ok(Status::Open)) {
                    // Closed by the server while idle.
                    return false;
                }
            }
        }
    }
    ws.close().await;
    true
}

/// What opening the connections gave.
#[derive(Default, Serialize, serde::Deserialize)]
struct Opened {
    handshakes_us: Vec<u64>,
    failures: u64,
    first_failure: Option<String>,
}

/// Connections held open, by this process or by worker processes.
enum Fleet {
    Local {
        tasks: JoinSet<bool>,
        stop: watch::Sender<bool>,
    },
    Workers(Vec<Worker>),
}

struct Worker {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

/// Opens connections `offset..offset + count` in this process.
async fn open_local(
    target: Arc<Target>,
    offset: usize,
    count: usize,
    channels: usize,
    concurrency: usize,
) -> (Fleet, Opened) {
    let (stop, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::channel(4096);
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for index in offset..offset + count {
        let channel = format!("bench-idle-{}", index % channels.max(1));
        tasks.spawn(hold_one(
            target.clone(),
            index,
            channel,
            gate.clone(),
            ready_tx.clone(),
            stop_rx.clone(),
        ));
    }
    drop(ready_tx);
    let mut opened = Opened::default();
    while let Some(ready) = ready_rx.recv().await {
        match ready {
            Ready::Subscribed(us) => opened.handshakes_us.push(us),
            Ready::Failed(error) => {
                opened.failures += 1;
                opened.first_failure.get_or_insert(error);
            }
        }
    }
    (Fleet::Local { tasks, stop }, opened)
}

/// Starts `processes` copies of this program, each opening its share, and waits until every
/// one has reported.
async fn open_workers(
    target: &Target,
    args: &IdleArgs,
    forward: &[String],
) -> anyhow::Result<(Fleet, Opened)> {
    use tokio::io::AsyncBufReadExt;

    let processes = args.processes.max(1);
    let mut workers = Vec::new();
    for p in 0..processes {
        let offset = args.connections * p / processes;
        let count = args.connections * (p + 1) / processes - offset;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(forward)
            .arg("idle-worker")
            .args([
                "--offset",
                &offset.to_string(),
                "--connections",
                &count.to_string(),
            ])
            .args(["--channels", &args.channels.to_string()])
            .args([
                "--connect-concurrency",
                &(args.connect_concurrency / processes).max(1).to_string(),
            ])
            .env("COMNESTOR_APP_ID", &target.app_id)
            .env("COMNESTOR_APP_KEY", &target.key)
            .env("COMNESTOR_APP_SECRET", &target.secret)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = tokio::io::BufReader::new(child.stdout.take().context("worker stdout")?);
        workers.push(Worker {
            child,
            stdin,
            stdout: stdout.lines(),
        });
    }
    let mut opened = Opened::default();
    for worker in &mut workers {
        let line = worker
            .stdout
            .next_line()
            .await?
            .context("a worker exited early")?;
        let part: Opened = serde_json::from_str(&line)?;
        opened.handshakes_us.extend(part.handshakes_us);
        opened.failures += part.failures;
        if opened.first_failure.is_none() {
            opened.first_failure = part.first_failure;
        }
    }
    Ok((Fleet::Workers(workers), opened))
}

/// Closes every connection; returns how many had been closed by the server before (of the
/// connections that opened; `failures` did not).
async fn close(fleet: Fleet, failures: u64) -> anyhow::Result<u64> {
    use tokio::io::AsyncWriteExt;

    match fleet {
        Fleet::Local { mut tasks, stop } => {
            let _ = stop.send(true);
            let mut dropped = 0;
            while let Some(result) = tasks.join_next().await {
                dropped += u64::from(matches!(result, Ok(false)));
            }
            Ok(dropped.saturating_sub(failures))
        }
        Fleet::Workers(mut workers) => {
            for worker in &mut workers {
                worker.stdin.write_all(b"close\n").await?;
                worker.stdin.flush().await?;
            }
            let mut dropped = 0;
            for worker in &mut workers {
                let line = worker.stdout.next_line().await?.unwrap_or_default();
                dropped += line.trim().parse::<u64>().unwrap_or(0);
                let _ = worker.child.wait().await;
            }
            Ok(dropped)
        }
    }
}

/// `idle-worker`: one process's share of an `idle --processes` run. Prints what it opened as
/// one JSON line, holds until a line arrives on stdin, closes, and prints how many the server
/// had closed before that.
pub async fn worker(target: Arc<Target>, args: &IdleWorkerArgs) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;

    let (fleet, opened) = open_local(
        target,
        args.offset,
        args.connections,
        args.channels,
        args.connect_concurrency,
    )
    .await;
    println!("{}", serde_json::to_string(&opened)?);
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let _ = stdin.next_line().await;
    println!("{}", close(fleet, opened.failures).await?);
    Ok(())
}

/// The hidden arguments of `idle-worker`.
#[derive(Debug, Clone, Args)]
pub struct IdleWorkerArgs {
    #[arg(long)]
    pub offset: usize,
    #[arg(long)]
    pub connections: usize,
    #[arg(long)]
    pub channels: usize,
    #[arg(long)]
    pub connect_concurrency: usize,
}

/// Runs the scenario. `forward` holds the global flags a worker process needs.
pub async fn run(
    target: Arc<Target>,
    args: &IdleArgs,
    server_pid: Option<&str>,
    forward: &[String],
) -> anyhow::Result<Report> {
    let before = server_pid.and_then(proc::sample);
    let kernel_before = proc::tcp_kernel_kib();
    let client_before = proc::sample("self");
    let started = Instant::now();
    let (fleet, opened) = if args.processes > 1 {
        open_workers(&target, args, forward).await?
    } else {
        open_local(
            target.clone(),
            0,
            args.connections,
            args.channels,
            args.connect_concurrency,
        )
        .await
    };
    let connect_time = started.elapsed();
    let mut handshakes = Histogram::new();
    for &us in &opened.handshakes_us {
        handshakes.record(us);
    }
    let (failures, first_failure) = (opened.failures, opened.first_failure);
    let connected = handshakes.count();

    tokio::time::sleep(secs(args.settle)).await;
    let held = server_pid.and_then(proc::sample);
    let kernel_held = proc::tcp_kernel_kib();
    let client_held = proc::sample("self");
    let remaining = secs(args.hold).saturating_sub(secs(args.settle));
    tokio::time::sleep(remaining).await;
    let held_end = server_pid.and_then(proc::sample);

    let closing = Instant::now();
    let lost_while_idle = close(fleet, failures).await?;
    let close_time = closing.elapsed();
    tokio::time::sleep(secs(args.release_wait)).await;
    let after = server_pid.and_then(proc::sample);

    let mut report = Report::new("idle", args);
    report.row(
        "connected and subscribed",
        format!(
            "{} of {} in {:.2} s = {:.0} connections/s, {} failed{}",
            thousands(connected),
            thousands(args.connections as u64),
            connect_time.as_secs_f64(),
            connected as f64 / connect_time.as_secs_f64().max(1e-9),
            failures,
            first_failure
                .as_ref()
                .map(|f| format!(" (first: {f})"))
                .unwrap_or_default()
        ),
    );
    report.row(
        "connect + subscribe latency",
        handshakes.summary().display_ms(),
    );
    report.row("closed by the server while idle", lost_while_idle);
    report.row(
        "all closed in",
        format!("{:.2} s", close_time.as_secs_f64()),
    );
    report.result("connections", args.connections);
    report.result("connected", connected);
    report.result("connect_failures", failures);
    report.result("connect_s", connect_time.as_secs_f64());
    report.result(
        "connects_per_s",
        connected as f64 / connect_time.as_secs_f64().max(1e-9),
    );
    report.result("handshake", handshakes.summary());
    report.result("closed_while_idle", lost_while_idle);
    report.result("close_s", close_time.as_secs_f64());

    if let (Some(before), Some(held), Some(after)) = (before, held, after) {
        let grown = held.rss_kib.saturating_sub(before.rss_kib);
        let per_conn = grown as f64 / connected.max(1) as f64;
        let returned = if grown > 0 {
            100.0 * held.rss_kib.saturating_sub(after.rss_kib) as f64 / grown as f64
        } else {
            100.0
        };
        let million_gib = (before.rss_kib as f64 + per_conn * 1e6) / 1024.0 / 1024.0;
        report.row(
            "server RSS",
            format!(
                "{} KiB before, {} KiB held ({} at the end of the hold), {} KiB after closing",
                before.rss_kib,
                held.rss_kib,
                held_end.map_or(0, |s| s.rss_kib),
                after.rss_kib
            ),
        );
        report.row("server memory per connection", format!("{per_conn:.2} KiB"));
        report.row(
            "memory returned after closing",
            format!("{returned:.0}% of the growth"),
        );
        report.row(
            "projected for 1,000,000 connections",
            format!("{million_gib:.2} GiB (RSS only)"),
        );
        report.row("server threads", held.threads);
        report.result(
            "server_rss_kib",
            [before.rss_kib, held.rss_kib, after.rss_kib],
        );
        report.result("server_kib_per_connection", per_conn);
        report.result("returned_percent", returned);
        report.result("projected_million_gib", million_gib);
    } else {
        report.row("server RSS", "n/a (no --server-pid)");
    }
    if let (Some(k0), Some(k1)) = (kernel_before, kernel_held) {
        let per = k1.saturating_sub(k0) as f64 / connected.max(1) as f64;
        report.row(
            "kernel TCP memory per connection",
            format!("{per:.2} KiB (both ends, machine-wide)"),
        );
        report.result("kernel_tcp_kib_per_connection", per);
    }
    if let (Some(c0), Some(c1), 1) = (client_before, client_held, args.processes.max(1)) {
        let per = c1.rss_kib.saturating_sub(c0.rss_kib) as f64 / connected.max(1) as f64;
        report.row("generator memory per connection", format!("{per:.2} KiB"));
    }
    if failures > 0 {
        report.fail(format!("{failures} connections failed"));
    }
    if lost_while_idle > 0 {
        report.fail(format!(
            "{lost_while_idle} connections were closed while idle"
        ));
    }
    if connected == 0 {
        report.fail("no connection succeeded");
    }
    Ok(report)
}
