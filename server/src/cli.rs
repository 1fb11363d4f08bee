//! The `comnestor` command line: `serve` (the default) and `apps` management.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::apps::{App, AppSettings, AppStore, NewApp, SETTING_NAMES, parse_bool};
use crate::config::Settings;
use crate::server::{self, DefaultAppOutcome};
use crate::webhooks;

/// Comnestor Realtime: a Pusher-compatible realtime server.
#[derive(Debug, Parser)]
#[command(name = "comnestor", version)]
pub struct Cli {
    /// A TOML configuration file; `COMNESTOR_*` variables override it.
    #[arg(long, global = true, env = "COMNESTOR_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Manage apps: their credentials and settings.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// Webhook batches: list them and their attempts, re-send dead ones.
    #[command(subcommand)]
    Webhooks(webhooks::cli::BatchCommand),
    /// Print the OpenAPI document of the `/api` endpoints (what `openapi/openapi.json` holds).
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Create an app; credentials not given are generated.
    Create {
        #[arg(long)]
        name: Option<String>,
        /// A numeric app id.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        secret: Option<String>,
        /// A setting as NAME=VALUE; repeat for several.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        settings: Vec<String>,
    },
    /// List apps.
    List,
    /// Show one app with its settings and secret.
    Show { id: String },
    /// Change an app's name, key, enabled flag or settings.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        key: Option<String>,
        /// A setting as NAME=VALUE (`enabled=false` disables the app); repeat for several.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        settings: Vec<String>,
    },
    /// Replace an app's secret with a new random one.
    RotateSecret { id: String },
    /// Delete an app; its connections are closed.
    Delete { id: String },
    /// Manage an app's webhook endpoints.
    #[command(subcommand)]
    Webhooks(webhooks::cli::EndpointCommand),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        // Needs no configuration and no database: the spec comes from the code alone.
        println!("{}", crate::intake::openapi_json());
        return Ok(());
    }
    let settings = Settings::load(cli.config.as_deref(), std::env::vars())?;
    init_logging(&settings.log);
    for name in &settings.ignored_variables {
        tracing::warn!(variable = %name, "ignoring a COMNESTOR_ variable that names no setting");
    }
    match command {
        Command::Serve => serve(settings).await,
        Command::Apps(command) => apps(settings, command).await,
        Command::Webhooks(command) => {
            let db = server::connect_database(&settings.database_url).await?;
            webhooks::cli::batches(db, command).await
        }
        Command::Openapi => Ok(()),
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let db = server::connect_database(&settings.database_url).await?;
    let store = AppStore::new(db.clone());
    let outcome = server::ensure_default_app(&store, settings.default_app.as_ref()).await?;
    if let (DefaultAppOutcome::Configured(app), Some(configured)) =
        (&outcome, settings.default_app.as_ref())
        && let Some(url) = &configured.webhook_url
    {
        let store = webhooks::WebhookStore::new(db.clone());
        webhooks::cli::ensure_endpoint(&store, &app.id, url, &configured.webhook_events).await?;
    }
    let running = server::start(&settings, db).await?;
    let shown_host = if settings.host.is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        settings.host.to_string()
    };
    let port = running.addr.port();
    print_welcome(&outcome, &shown_host, port, &settings.database_url);
    let stop = running.stop_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop.send(true);
    });
    running.wait().await.context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return ctrl_c.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or_default();
}

fn print_welcome(outcome: &DefaultAppOutcome, host: &str, port: u16, database_url: &str) {
    println!(
        "Comnestor Realtime listening on http://{host}:{port} (database: {})",
        server::redact(database_url)
    );
    match outcome {
        DefaultAppOutcome::Generated(app) => {
            println!("\nNo app existed, so one was created. Its secret is shown only this once:\n");
            println!(
                "  app id:  {}\n  key:     {}\n  secret:  {}",
                app.id, app.key, app.secret
            );
            print_client_config(app, host, port);
        }
        DefaultAppOutcome::Configured(app) => {
            println!(
                "\nApp {} (key {}) is configured from the environment or config file.",
                app.id, app.key
            );
            print_client_config(app, host, port);
        }
        DefaultAppOutcome::Existing(apps) => {
            let ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
            println!("Apps: {} (see `comnestor apps list`)", ids.join(", "));
        }
    }
}

fn print_client_config(app: &App, host: &str, port: u16) {
    println!(
        r#"
pusher-js:
  new Pusher('{key}', {{ cluster: 'mt1', wsHost: '{host}', wsPort: {port}, wssPort: {port},
    forceTLS: false, enabledTransports: ['ws', 'wss'] }})

Laravel (.env):
  BROADCAST_CONNECTION=reverb
  REVERB_APP_ID={id}
  REVERB_APP_KEY={key}
  REVERB_APP_SECRET=<the secret>
  REVERB_HOST={host}
  REVERB_PORT={port}
  REVERB_SCHEME=http
"#,
        key = app.key,
        id = app.id,
    );
}

async fn apps(settings: Settings, command: AppsCommand) -> anyhow::Result<()> {
    let store = AppStore::new(server::connect_database(&settings.database_url).await?);
    match command {
        AppsCommand::Create {
            name,
            id,
            key,
            secret,
            settings,
        } => {
            let (enabled, app_settings) = parse_settings(AppSettings::default(), true, &settings)?;
            let new = NewApp {
                id,
                key,
                secret,
                name,
                enabled,
                settings: app_settings,
            };
            let app = store.create(new).await?;
            print_app(&app, true);
        }
        AppsCommand::List => {
            let apps = store.list().await?;
            println!("{:<12} {:<24} {:<8} NAME", "ID", "KEY", "ENABLED");
            for app in apps {
                println!(
                    "{:<12} {:<24} {:<8} {}",
                    app.id, app.key, app.enabled, app.name
                );
            }
        }
        AppsCommand::Show { id } => print_app(&store.find(&id).await?, true),
        AppsCommand::Update {
            id,
            name,
            key,
            settings,
        } => {
            let mut app = store.find(&id).await?;
            let (enabled, app_settings) =
                parse_settings(app.settings.clone(), app.enabled, &settings)?;
            app.enabled = enabled;
            app.settings = app_settings;
            app.name = name.unwrap_or(app.name);
            app.key = key.unwrap_or(app.key);
            print_app(&store.update(&app).await?, false);
        }
        AppsCommand::RotateSecret { id } => print_app(&store.rotate_secret(&id).await?, true),
        AppsCommand::Delete { id } => {
            store.delete(&id).await?;
            println!("deleted app {id}");
        }
        AppsCommand::Webhooks(command) => {
            let db = server::connect_database(&settings.database_url).await?;
            webhooks::cli::endpoints(db, command).await?;
        }
    }
    Ok(())
}

/// Applies `NAME=VALUE` pairs, reporting every bad one at once.
fn parse_settings(
    mut settings: AppSettings,
    mut enabled: bool,
    pairs: &[String],
) -> anyhow::Result<(bool, AppSettings)> {
    let mut problems = Vec::new();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            problems.push(format!(
                "`{pair}` is not NAME=VALUE (names: {})",
                SETTING_NAMES.join(", ")
            ));
            continue;
        };
        let result = if name == "enabled" {
            parse_bool(value).map(|b| enabled = b)
        } else {
            settings.set(name, value)
        };
        if let Err(reason) = result {
            problems.push(format!("{name}: {reason}"));
        }
    }
    if problems.is_empty() {
        Ok((enabled, settings))
    } else {
        anyhow::bail!("invalid settings:\n  - {}", problems.join("\n  - "))
    }
}

fn print_app(app: &App, with_secret: bool) {
    println!("id:       {}\nkey:      {}", app.id, app.key);
    if with_secret {
        println!("secret:   {}", app.secret);
    }
    println!("name:     {}\nenabled:  {}", app.name, app.enabled);
    let settings = serde_json::to_string_pretty(&app.settings).unwrap_or_default();
    println!("settings: {settings}");
}
