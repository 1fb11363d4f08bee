//! The `comnestor apps webhooks …` and `comnestor webhooks …` commands.

use clap::Subcommand;
use sea_orm::DatabaseConnection;

use super::{BatchStatus, Endpoint, NewEndpoint, WebhookStore, parse_header};
use crate::apps::AppStore;

/// `comnestor apps webhooks …`: an app's webhook endpoints.
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Add an endpoint that receives the app's webhooks.
    Add {
        app_id: String,
        #[arg(long)]
        url: String,
        /// An event to send (channel_occupied, channel_vacated, member_added, member_removed,
        /// client_event, cache_miss, subscription_count); repeat for several. None sends all.
        #[arg(long = "event", value_name = "NAME")]
        events: Vec<String>,
        /// Send only events on channels whose name starts with this.
        #[arg(long)]
        prefix: Option<String>,
        /// An extra header as 'Name: value'; repeat for several.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
    },
    /// List the app's endpoints.
    List { app_id: String },
    /// Remove an endpoint.
    Remove { app_id: String, endpoint_id: String },
}

/// `comnestor webhooks …`: batches sent, their attempts, and re-sending dead ones.
#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// List an app's batches, newest last.
    Batches {
        app_id: String,
        /// Only batches with this status: queued, retrying, delivered or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// List an app's dead batches (every attempt failed).
    Dead {
        app_id: String,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Show a batch's body and every attempt to send it.
    Attempts { batch_id: String },
    /// Send dead batches again (a running server picks them up within a second); with
    /// --app, every dead batch of that app.
    Resend {
        batch_ids: Vec<String>,
        /// Re-send every dead batch of this app.
        #[arg(long = "app", value_name = "APP_ID")]
        app_id: Option<String>,
    },
}

pub async fn endpoints(db: DatabaseConnection, command: EndpointCommand) -> anyhow::Result<()> {
    let apps = AppStore::new(db.clone());
    let store = WebhookStore::new(db);
    match command {
        EndpointCommand::Add {
            app_id,
            url,
            events,
            prefix,
            headers,
        } => {
            apps.find(&app_id).await?;
            let headers = headers
                .iter()
                .map(|h| parse_header(h))
                .collect::<Result<Vec<_>, _>>()?;
            let new = NewEndpoint {
                app_id,
                url,
                events,
                channel_prefix: prefix,
                headers,
            };
            print_endpoint(&store.add_endpoint(new).await?);
        }
        EndpointCommand::List { app_id } => {
            for endpoint in store.endpoints(&app_id).await? {
                print_endpoint(&endpoint);
            }
        }
        EndpointCommand::Remove {
            app_id,
            endpoint_id,
        } => {
            if !store.remove_endpoint(&app_id, &endpoint_id).await? {
                anyhow::bail!("app {app_id} has no webhook endpoint {endpoint_id}");
            }
            println!("removed webhook endpoint {endpoint_id}");
        }
    }
    Ok(())
}

pub async fn batches(db: DatabaseConnection, command: BatchCommand) -> anyhow::Result<()> {
    let store = WebhookStore::new(db);
    match command {
        BatchCommand::Batches {
            app_id,
            status,
            limit,
        } => {
            let status = match status.as_deref() {
                Some(text) => Some(BatchStatus::parse(text).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown status `{text}`: use queued, retrying, delivered or dead"
                    )
                })?),
                None => None,
            };
            print_batches(&store, &app_id, status, limit).await?;
        }
        BatchCommand::Dead { app_id, limit } => {
            print_batches(&store, &app_id, Some(BatchStatus::Dead), limit).await?;
        }
        BatchCommand::Attempts { batch_id } => {
            let Some(batch) = store.batch(&batch_id).await? else {
                anyhow::bail!("webhook batch {batch_id} does not exist");
            };
            println!(
                "batch {} ({}), body:\n{}",
                batch.id,
                batch.status.as_str(),
                batch.body()
            );
            println!(
                "\n{:<8} {:<14} {:<8} {:<8} ERROR",
                "ATTEMPT", "STARTED_AT", "STATUS", "MS"
            );
            for attempt in store.attempts(&batch_id).await? {
                let status = attempt
                    .status_code
                    .map_or("-".to_owned(), |s| s.to_string());
                let error = attempt.error.unwrap_or_default();
                println!(
                    "{:<8} {:<14} {:<8} {:<8} {error}",
                    attempt.attempt, attempt.started_at, status, attempt.duration_ms
                );
            }
        }
        BatchCommand::Resend { batch_ids, app_id } => {
            let mut ids = batch_ids;
            if let Some(app_id) = app_id {
                let dead = store
                    .batches(&app_id, Some(BatchStatus::Dead), 10_000)
                    .await?;
                ids.extend(dead.into_iter().map(|b| b.id));
            }
            for id in ids {
                super::resend(&store, &id).await?;
                println!("webhook batch {id} will be sent again by the running server");
            }
        }
    }
    Ok(())
}

/// Makes sure the configured app has an endpoint at `url` sending `events` (empty: all).
pub async fn ensure_endpoint(
    store: &WebhookStore,
    app_id: &str,
    url: &str,
    events: &[String],
) -> anyhow::Result<()> {
    let existing = store.endpoints(app_id).await?;
    if existing.iter().any(|e| e.url == url && e.events == events) {
        return Ok(());
    }
    for stale in existing.iter().filter(|e| e.url == url) {
        store.remove_endpoint(app_id, &stale.id).await?;
    }
    let new = NewEndpoint {
        app_id: app_id.to_owned(),
        url: url.to_owned(),
        events: events.to_vec(),
        ..NewEndpoint::default()
    };
    let endpoint = store.add_endpoint(new).await?;
    tracing::info!(app_id, endpoint_id = %endpoint.id, url, "webhook endpoint configured");
    Ok(())
}

async fn print_batches(
    store: &WebhookStore,
    app_id: &str,
    status: Option<BatchStatus>,
    limit: u64,
) -> anyhow::Result<()> {
    println!(
        "{:<28} {:<10} {:<8} {:<6} {:<28} LAST ERROR",
        "BATCH", "STATUS", "ATTEMPTS", "EVENTS", "ENDPOINT"
    );
    for batch in store.batches(app_id, status, limit).await? {
        println!(
            "{:<28} {:<10} {:<8} {:<6} {:<28} {}",
            batch.id,
            batch.status.as_str(),
            batch.attempts,
            batch.event_count,
            batch.endpoint_id,
            batch.last_error.unwrap_or_default()
        );
    }
    Ok(())
}

fn print_endpoint(endpoint: &Endpoint) {
    let events = if endpoint.events.is_empty() {
        "all".to_owned()
    } else {
        endpoint.events.join(",")
    };
    let headers: Vec<String> = endpoint
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    println!(
        "{}  {}  events={}  prefix={}  headers=[{}]",
        endpoint.id,
        endpoint.url,
        events,
        endpoint.channel_prefix.as_deref().unwrap_or("-"),
        headers.join("; ")
    );
}
