//! Runs the selected cases and collects their results.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;

use crate::cases::{self, Case, Ctx};
use crate::config::Config;
use crate::report::{CaseResult, Report, Status};
use crate::webhook::Receiver;

/// Runs every selected case against the server in `cfg` and returns the report. Never panics
/// on a misbehaving server: every problem becomes a failed case.
pub async fn run(cfg: Config) -> Report {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut report = Report {
        target: format!(
            "{} (app {}){}",
            cfg.primary.http,
            cfg.app_id,
            if cfg.others.is_empty() {
                String::new()
            } else {
                format!(", {} more node(s)", cfg.others.len())
            }
        ),
        ..Report::default()
    };

    let webhooks = if cfg.webhooks {
        match Receiver::start(cfg.webhook_listen, &cfg.key, &cfg.secret).await {
            Ok(receiver) => {
                let url = cfg
                    .webhook_url
                    .clone()
                    .unwrap_or_else(|| receiver.url.clone());
                report.notes.push(format!(
                    "webhooks: the receiver listens on {}; the app's webhook URL must be {url}",
                    receiver.url
                ));
                Some(receiver)
            }
            Err(error) => {
                report.notes.push(format!("webhooks: {error:#}"));
                None
            }
        }
    } else {
        report
            .notes
            .push("webhooks area off (pass --webhooks to run it)".into());
        None
    };
    for note in &report.notes {
        eprintln!("note: {note}");
    }

    let receiver_failed = cfg.webhooks && webhooks.is_none();
    let concurrency = cfg.concurrency.max(1);
    let ctx = Arc::new(Ctx::new(cfg, webhooks));
    let results: Vec<CaseResult> = futures_util::stream::iter(cases::all())
        .map(|case| run_case(ctx.clone(), case, receiver_failed))
        .buffered(concurrency)
        .collect()
        .await;
    report.results = results;
    report
}

async fn run_case(ctx: Arc<Ctx>, case: Case, receiver_failed: bool) -> CaseResult {
    let id = case.id();
    let mut result = CaseResult {
        id: id.clone(),
        area: case.area.id().into(),
        area_title: case.area.title().into(),
        name: case.name.into(),
        rule: case.rule.into(),
        status: Status::Skipped,
        message: None,
        duration_ms: 0,
    };
    if let Err(reason) = ctx.cfg.selects(case.area.id(), &id) {
        result.message = Some(reason);
        return result;
    }
    if let Some(reason) = case.needs.unmet(&ctx.cfg) {
        result.message = Some(reason.into());
        return result;
    }
    let started = Instant::now();
    let outcome = if receiver_failed && case.needs == cases::Need::Webhooks {
        Err(anyhow::anyhow!("the webhook receiver could not start"))
    } else {
        let mut timeout = ctx.cfg.case_timeout;
        if case.needs == cases::Need::ActivityWait {
            timeout += ctx.cfg.activity_timeout_wait.unwrap_or_default();
        }
        match tokio::time::timeout(timeout, (case.run)(ctx.clone())).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!(
                "the case did not finish within {timeout:?}"
            )),
        }
    };
    result.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(()) => result.status = Status::Passed,
        Err(error) => {
            result.status = Status::Failed;
            result.message = Some(format!("{error:#}"));
        }
    }
    result
}
