//! Intake end to end: events posted to Comnestor's `POST /api/events` at a steady rate, timed
//! from the POST to their arrival at the subscribers, and split into the stages the event log
//! records (received, logged, queued, sent to the WebSocket server, acknowledged).
//!
//! Only Comnestor has this API; against another server the scenario refuses to start.

use std::sync::Arc;

use clap::Args;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;

use super::delivery::{self, Api};
use super::{PublishArgs, report_delivery};
use crate::report::Report;
use crate::target::Target;

#[derive(Debug, Clone, Args, Serialize)]
pub struct IntakeArgs {
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    #[arg(long, default_value = "bench-intake")]
    pub channel: String,
    /// Events whose stages are read back from the event log afterwards, spread over the run.
    #[arg(long, default_value_t = 200)]
    pub stage_samples: usize,
    #[command(flatten)]
    pub publish: PublishArgs,
}

/// The stages, as (name, from field, to field); `client` is the generator's own clock.
const STAGES: &[(&str, &str, &str)] = &[
    ("POST sent to received", "client_sent", "received_at"),
    ("received to logged", "received_at", "logged_at"),
    ("logged to queued", "logged_at", "queued_at"),
    ("queued to sent", "queued_at", "sent_at"),
    ("sent to acknowledged", "sent_at", "acknowledged_at"),
    ("sent to subscriber", "sent_at", "client_received"),
];

pub async fn run(
    target: Arc<Target>,
    args: &IntakeArgs,
    server_pid: Option<&str>,
) -> anyhow::Result<Report> {
    let spec = args
        .publish
        .spec(vec![args.channel.clone()], args.subscribers, Api::Intake, 0);
    let outcome = delivery::run(target.clone(), &spec, server_pid).await?;
    let mut report = Report::new("intake", args);
    report_delivery(&mut report, &spec, &outcome);

    let samples = sample(&outcome.ids, args.stage_samples);
    let fetched: Vec<(u64, Option<Value>)> = futures_util::stream::iter(samples)
        .map(|(seq, id)| {
            let target = target.clone();
            async move { (seq, target.logged_event(&id).await.ok()) }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut stages: Vec<Vec<i64>> = vec![Vec::new(); STAGES.len()];
    for (seq, record) in &fetched {
        let Some(record) = record else { continue };
        let Some(&(sent_ms, to_last_us)) = outcome.per_event.get(*seq as usize) else {
            continue;
        };
        let time = |field: &str| match field {
            "client_sent" => Some(sent_ms),
            "client_received" => (to_last_us > 0).then(|| sent_ms + i64::from(to_last_us) / 1000),
            _ => record.get("stages")?.get(field)?.as_i64(),
        };
        for (i, (_, from, to)) in STAGES.iter().enumerate() {
            if let (Some(from), Some(to)) = (time(from), time(to)) {
                stages[i].push(to - from);
            }
        }
    }
    report.row("", "");
    report.row(
        "stages (ms, p50 / p99 / max)",
        format!("from {} events read back", fetched.len()),
    );
    let mut json = serde_json::Map::new();
    for ((name, _, _), values) in STAGES.iter().zip(&mut stages) {
        values.sort_unstable();
        let at = |q: f64| values.get(((values.len() as f64 * q).ceil() as usize).saturating_sub(1));
        let cell = match (at(0.5), at(0.99), values.last()) {
            (Some(p50), Some(p99), Some(max)) => format!("{p50} / {p99} / {max}"),
            _ => "no samples".to_owned(),
        };
        report.row(&format!("  {name}"), cell);
        json.insert(
            (*name).to_owned(),
            serde_json::json!({ "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": values.last(), "n": values.len() }),
        );
    }
    report.result("stages", json);
    Ok(report)
}

/// Up to `count` ids, evenly spaced.
fn sample(ids: &[(u64, String)], count: usize) -> Vec<(u64, String)> {
    if ids.len() <= count {
        return ids.to_vec();
    }
    let step = ids.len() as f64 / count as f64;
    (0..count)
        .map(|i| ids[(i as f64 * step) as usize].clone())
        .collect()
}
