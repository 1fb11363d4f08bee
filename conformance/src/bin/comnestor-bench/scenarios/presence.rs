//! Presence churn: members on presence channels, half of them leaving and rejoining while
//! events flow. The members that stay must receive every event; the others report how long a
//! rejoin takes (`pusher:subscribe` to `subscription_succeeded`).

use std::sync::Arc;

use clap::Args;
use serde::Serialize;

use super::delivery::{self, Api};
use super::{PublishArgs, report_delivery};
use crate::report::{Report, thousands};
use crate::target::Target;

#[derive(Debug, Clone, Args, Serialize)]
pub struct PresenceArgs {
    /// Members in total, each with its own user id.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Presence channels they are spread over. Pusher allows 100 members per channel.
    #[arg(long, default_value_t = 20)]
    pub channels: usize,
    /// Every Nth member stays for the whole run; the others churn.
    #[arg(long, default_value_t = 2)]
    pub stable_every: usize,
    /// Rejoins (leave, then join again) per second, over all churning members.
    #[arg(long, default_value_t = 100.0)]
    pub churn_rate: f64,
    #[command(flatten)]
    pub publish: PublishArgs,
}

pub async fn run(
    target: Arc<Target>,
    args: &PresenceArgs,
    server_pid: Option<&str>,
) -> anyhow::Result<Report> {
    let channels = (0..args.channels.max(1))
        .map(|i| format!("presence-bench-{i}"))
        .collect();
    let mut spec = args.publish.spec(channels, args.members, Api::Pusher, 0);
    spec.stable_every = args.stable_every.max(1);
    spec.churn_rate = args.churn_rate;
    let outcome = delivery::run(target, &spec, server_pid).await?;
    let mut report = Report::new("presence", args);
    report.row(
        "rejoins (subscribe to succeeded)",
        outcome.joins.display_ms(),
    );
    report.row(
        "member_added/removed received",
        thousands(outcome.member_events),
    );
    report.result("rejoin_latency", outcome.joins);
    report.result("member_events", outcome.member_events);
    report_delivery(&mut report, &spec, &outcome);
    Ok(report)
}
