//! Many channels: subscribers spread evenly over many channels, events published to the
//! channels in turn.

use std::sync::Arc;

use clap::Args;
use serde::Serialize;

use super::delivery::{self, Api};
use super::{PublishArgs, report_delivery};
use crate::report::Report;
use crate::target::Target;

#[derive(Debug, Clone, Args, Serialize)]
pub struct ChannelsArgs {
    /// Channels the subscribers are spread over (subscriber i joins channel i mod N).
    #[arg(long, default_value_t = 1000)]
    pub channels: usize,
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    #[command(flatten)]
    pub publish: PublishArgs,
}

pub async fn run(
    target: Arc<Target>,
    args: &ChannelsArgs,
    server_pid: Option<&str>,
) -> anyhow::Result<Report> {
    let channels = (0..args.channels.max(1))
        .map(|i| format!("bench-channel-{i}"))
        .collect();
    let spec = args
        .publish
        .spec(channels, args.subscribers, Api::Pusher, 0);
    let outcome = delivery::run(target, &spec, server_pid).await?;
    let mut report = Report::new("channels", args);
    report_delivery(&mut report, &spec, &outcome);
    Ok(report)
}
