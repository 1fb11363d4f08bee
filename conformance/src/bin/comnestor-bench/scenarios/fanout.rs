//! Fan-out: many subscribers on one channel, events published through the HTTP API.
//!
//! `--other-channels` first fills the server with that many other occupied channels, each
//! with one subscription, to show whether a publish costs more on a busy server.

use std::sync::Arc;

use clap::Args;
use serde::Serialize;

use super::delivery::{self, Api};
use super::{PublishArgs, report_delivery};
use crate::report::Report;
use crate::target::Target;

#[derive(Debug, Clone, Args, Serialize)]
pub struct FanoutArgs {
    /// Subscribers on the channel.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    #[arg(long, default_value = "bench-fanout")]
    pub channel: String,
    /// Other occupied channels held open during the run (1,000 per extra connection).
    #[arg(long, default_value_t = 0)]
    pub other_channels: usize,
    #[command(flatten)]
    pub publish: PublishArgs,
}

pub async fn run(
    target: Arc<Target>,
    args: &FanoutArgs,
    server_pid: Option<&str>,
) -> anyhow::Result<Report> {
    let mut spec = args
        .publish
        .spec(vec![args.channel.clone()], args.subscribers, Api::Pusher, 2);
    spec.background_channels = args.other_channels;
    let outcome = delivery::run(target, &spec, server_pid).await?;
    let mut report = Report::new("fanout", args);
    if args.other_channels > 0 {
        report.row("other occupied channels", args.other_channels);
    }
    report_delivery(&mut report, &spec, &outcome);
    Ok(report)
}
