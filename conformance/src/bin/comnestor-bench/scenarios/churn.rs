//! Connection churn: connections opened at a steady rate, each subscribing once and closing
//! again, to measure connects and disconnects per second and whether the server's memory
//! comes back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use clap::Args;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};

use super::secs;
use crate::client::Ws;
use crate::payload::now_us;
use crate::proc;
use crate::report::{Report, thousands};
use crate::stats::Histogram;
use crate::target::Target;

#[derive(Debug, Clone, Args, Serialize)]
pub struct ChurnArgs {
    /// Connections opened per second.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Seconds to keep opening them.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Skip the subscription: connect and close only.
    #[arg(long)]
    pub no_subscribe: bool,
    /// Most connections being opened or closed at once.
    #[arg(long, default_value_t = 512)]
    pub inflight: usize,
    /// Seconds to wait after the last close before reading the server's memory.
    #[arg(long, default_value_t = 3.0)]
    pub release_wait: f64,
}

#[derive(Default)]
struct Tally {
    open: Histogram,
    cycle: Histogram,
    completed: u64,
    errors: BTreeMap<String, u64>,
    last_done_us: u64,
}

async fn cycle(target: Arc<Target>, index: usize, subscribe: bool, tally: Arc<Mutex<Tally>>) {
    let started = now_us();
    let result = async {
        let mut ws = Ws::connect(&target, target.source(index), 1024).await?;
        let opened = now_us();
        if subscribe {
            ws.queue_subscribe("bench-churn", None, None);
            ws.flush().await?;
            ws.await_subscribed(&["bench-churn"]).await?;
        }
        ws.close().await;
        anyhow::Ok(opened)
    }
    .await;
    let done = now_us();
    let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(opened) => {
            tally.open.record(opened - started);
            tally.cycle.record(done - started);
            tally.completed += 1;
            tally.last_done_us = tally.last_done_us.max(done);
        }
        Err(error) => *tally.errors.entry(format!("{error:#}")).or_default() += 1,
    }
}

pub async fn run(
    target: Arc<Target>,
    args: &ChurnArgs,
    server_pid: Option<&str>,
) -> anyhow::Result<Report> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let permits = Arc::new(Semaphore::new(args.inflight.max(1)));
    let server_before = server_pid.and_then(proc::sample);
    let client_before = proc::sample("self");
    let total = (args.rate * args.duration).round() as u64;
    let started = Instant::now();
    let started_us = now_us();
    let mut ticker = tokio::time::interval(std::time::Duration::from_millis(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut next = 0u64;
    while next < total {
        ticker.tick().await;
        let due = ((started.elapsed().as_secs_f64() * args.rate) as u64 + 1).min(total);
        while next < due {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (target, tally) = (target.clone(), tally.clone());
            let subscribe = !args.no_subscribe;
            let index = next as usize;
            tokio::spawn(async move {
                cycle(target, index, subscribe, tally).await;
                drop(permit);
            });
            next += 1;
        }
    }
    let opening = started.elapsed();
    let _ = permits.acquire_many(args.inflight.max(1) as u32).await;
    let server_busy = server_pid.and_then(proc::sample);
    let client_after = proc::sample("self");
    tokio::time::sleep(secs(args.release_wait)).await;
    let server_after = server_pid.and_then(proc::sample);

    let tally = tally.lock().unwrap_or_else(|e| e.into_inner());
    let window = (tally.last_done_us.saturating_sub(started_us)) as f64 / 1e6;
    let per_sec = tally.completed as f64 / window.max(1e-9);
    let mut report = Report::new("churn", args);
    report.row(
        "cycles (connect, subscribe, close)",
        format!(
            "{} of {} completed in {window:.2} s = {per_sec:.0} connects/s and disconnects/s (asked {:.0}/s, scheduled over {:.2} s)",
            thousands(tally.completed),
            thousands(total),
            args.rate,
            opening.as_secs_f64()
        ),
    );
    for (error, count) in &tally.errors {
        report.row("  error", format!("{count} × {error}"));
    }
    report.row("connect to established", tally.open.summary().display_ms());
    report.row("whole cycle", tally.cycle.summary().display_ms());
    let client_cpu = client_before
        .zip(client_after)
        .map_or(0.0, |(a, b)| proc::cpu_percent(&a, &b));
    let server_cpu = server_before
        .zip(server_busy)
        .map(|(a, b)| proc::cpu_percent(&a, &b));
    report.row(
        "cpu: generator / server",
        format!(
            "{client_cpu:.0}% / {} of one core",
            server_cpu.map_or("n/a".to_owned(), |c| format!("{c:.0}%"))
        ),
    );
    if let (Some(before), Some(busy), Some(after)) = (server_before, server_busy, server_after) {
        report.row(
            "server RSS",
            format!(
                "{} KiB before, {} KiB at the end, {} KiB after {:.0} s",
                before.rss_kib, busy.rss_kib, after.rss_kib, args.release_wait
            ),
        );
        report.result(
            "server_rss_kib",
            [before.rss_kib, busy.rss_kib, after.rss_kib],
        );
    }
    report.result("attempted", total);
    report.result("completed", tally.completed);
    report.result("errors", &tally.errors);
    report.result("cycles_per_s", per_sec);
    report.result("open", tally.open.summary());
    report.result("cycle", tally.cycle.summary());
    report.result("generator_cpu_percent", client_cpu);
    report.result("server_cpu_percent", server_cpu);
    if tally.completed == 0 {
        report.fail("no connection completed");
    }
    if !tally.errors.is_empty() {
        report.fail("some connections failed");
    }
    Ok(report)
}
