//! The scenarios, one module each, and the table rows the delivery scenarios share.

pub mod channels;
pub mod churn;
pub mod delivery;
pub mod fanout;
pub mod idle;
pub mod intake;
pub mod presence;

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::report::{Report, thousands};
use delivery::{Api, DeliveryOutcome, DeliverySpec, rate};

/// How events are published, shared by every delivery scenario.
#[derive(Debug, Clone, Args, Serialize)]
pub struct PublishArgs {
    /// Events published per second (each reaches every subscriber of its channel).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds to publish for.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes of event data.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Most events per HTTP request (at most 10): events due at the same moment, or waiting
    /// because every request slot was busy, go together to /batch_events; a lone event goes
    /// to /events.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Most publish requests outstanding at once.
    #[arg(long, default_value_t = 64)]
    pub inflight: usize,
    /// Seconds at the start whose events are counted but not timed.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds to wait after the last publish for the last deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// The subscribers' read buffer, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub read_buffer: usize,
    /// Subscribers connecting at the same time.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Threads that read the subscribers that only listen, once subscribed (see
    /// `reader.rs`); 0 keeps a task per subscriber on the runtime. The default is 2 for
    /// `fanout`, whose deliveries come thousands at a time, and 0 for the others.
    #[arg(long)]
    pub readers: Option<usize>,
    /// Microseconds a reader thread sleeps when none of its sockets was ready.
    #[arg(long, default_value_t = 200)]
    pub reader_idle_us: u64,
}

impl PublishArgs {
    /// The run to make; `readers` is the scenario's default for `--readers`.
    pub fn spec(
        &self,
        channels: Vec<String>,
        subscribers: usize,
        api: Api,
        readers: usize,
    ) -> DeliverySpec {
        DeliverySpec {
            channels,
            subscribers,
            stable_every: 1,
            churn_rate: 0.0,
            rate: self.rate,
            duration: secs(self.duration),
            payload: self.payload,
            batch: self.batch,
            inflight: self.inflight,
            api,
            warmup: secs(self.warmup),
            drain: secs(self.drain),
            background_channels: 0,
            buffer: self.read_buffer,
            connect_concurrency: self.connect_concurrency,
            readers: self.readers.unwrap_or(readers),
            reader_idle: Duration::from_micros(self.reader_idle_us),
        }
    }
}

pub fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0))
}

/// The rows and fields every delivery scenario reports, and the `--strict` checks.
pub fn report_delivery(report: &mut Report, spec: &DeliverySpec, outcome: &DeliveryOutcome) {
    let publish = &outcome.publish;
    report.row(
        "setup",
        format!(
            "{} subscribers connected in {:.2} s, {} failed{}",
            thousands(spec.subscribers as u64 - outcome.connect_failures),
            outcome.setup.as_secs_f64(),
            outcome.connect_failures,
            outcome
                .first_failure
                .as_ref()
                .map(|f| format!(" (first: {f})"))
                .unwrap_or_default()
        ),
    );
    report.row(
        "publishes",
        format!(
            "{} of {} accepted in {:.2} s = {:.0}/s (asked {:.0}/s)",
            thousands(publish.ok),
            thousands(publish.attempted),
            publish.elapsed.as_secs_f64(),
            publish.achieved_rate(),
            spec.rate
        ),
    );
    for (error, count) in &publish.errors {
        report.row("  publish error", format!("{count} × {error}"));
    }
    report.row("publish request latency", publish.http.display_ms());
    let delivery_rate = rate(outcome.deliveries, outcome.window);
    report.row(
        "deliveries",
        format!(
            "{} in {:.2} s = {:.0}/s",
            thousands(outcome.deliveries),
            outcome.window.as_secs_f64(),
            delivery_rate
        ),
    );
    report.row(
        "lost / duplicated",
        format!(
            "{} of {} expected / {}",
            thousands(outcome.lost),
            thousands(outcome.expected),
            outcome.duplicates
        ),
    );
    if outcome.delivered_unconfirmed > 0 {
        report.row(
            "delivered, publish unconfirmed",
            outcome.delivered_unconfirmed,
        );
    }
    if outcome.disconnected > 0 {
        let why: Vec<String> = outcome
            .close_codes
            .iter()
            .map(|(why, n)| format!("{n} × {why}"))
            .collect();
        report.row("subscribers disconnected", why.join(", "));
    }
    report.row("latency p50/p90/p99/max", outcome.latency.display_ms());
    report.row(
        "to last subscriber, per event",
        outcome.last_subscriber.display_ms(),
    );
    report.row(
        "generator reads with",
        match spec.readers {
            0 => "a task per subscriber".to_owned(),
            n => format!(
                "{n} reader threads, idle {} µs (subscribers that churn: a task each)",
                spec.reader_idle.as_micros()
            ),
        },
    );
    report.row(
        "cpu: generator / server",
        format!(
            "{:.0}% / {} of one core",
            outcome.client_cpu,
            outcome
                .server_cpu
                .map_or("n/a (no --server-pid)".to_owned(), |c| format!("{c:.0}%"))
        ),
    );
    if let Some((before, after)) = outcome.server_rss_kib {
        report.row(
            "server RSS",
            format!("{} KiB before, {} KiB after", before, after),
        );
    }

    report.result("subscribers", spec.subscribers);
    report.result("generator_readers", spec.readers);
    report.result("channels", spec.channels.len());
    report.result("setup_s", outcome.setup.as_secs_f64());
    report.result("connect_failures", outcome.connect_failures);
    report.result("publishes_attempted", publish.attempted);
    report.result("publishes_ok", publish.ok);
    report.result("publish_errors", &publish.errors);
    report.result("publish_rate", publish.achieved_rate());
    report.result("publish_http", publish.http);
    report.result("deliveries", outcome.deliveries);
    report.result("window_s", outcome.window.as_secs_f64());
    report.result("deliveries_per_s", delivery_rate);
    report.result("expected", outcome.expected);
    report.result("lost", outcome.lost);
    report.result("duplicated", outcome.duplicates);
    report.result("delivered_unconfirmed", outcome.delivered_unconfirmed);
    report.result("disconnected", outcome.disconnected);
    report.result("close_reasons", &outcome.close_codes);
    report.result("latency", outcome.latency);
    report.result("last_subscriber", outcome.last_subscriber);
    report.result("generator_cpu_percent", outcome.client_cpu);
    report.result("server_cpu_percent", outcome.server_cpu);
    report.result("server_rss_kib", outcome.server_rss_kib);

    if outcome.deliveries == 0 {
        report.fail("nothing was delivered");
    }
    if outcome.lost > 0 || outcome.duplicates > 0 {
        report.fail(format!(
            "{} lost and {} duplicated messages",
            outcome.lost, outcome.duplicates
        ));
    }
    if outcome.connect_failures > 0 {
        report.fail(format!(
            "{} subscribers failed to connect",
            outcome.connect_failures
        ));
    }
    if !publish.errors.is_empty() {
        report.fail("some publishes failed");
    }
}
