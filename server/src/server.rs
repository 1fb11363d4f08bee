//! Starting and stopping the server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use comnestor_migrations::{Migrator, MigratorTrait};
use poem::Server;
use poem::listener::{Acceptor, Listener, TcpListener};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Context;
use crate::apps::{App, AppRegistry, AppSettings, AppStore, AppStoreError, NewApp};
use crate::config::{DefaultApp, Settings};
use crate::http;
use crate::hub::Hub;

/// Connects to the database and applies pending migrations.
pub async fn connect_database(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.sqlx_logging(false);
    if url.starts_with("sqlite:") && url.contains(":memory:") {
        // Every pooled connection to `:memory:` would be a separate, empty database.
        options.max_connections(1).min_connections(1);
    }
    let db = Database::connect(options)
        .await
        .with_context(|| format!("cannot open database {}", redact(url)))?;
    Migrator::up(&db, None)
        .await
        .context("cannot apply database migrations")?;
    Ok(db)
}

/// Hides a password in a database URL before it is printed.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// What happened to the default app on start.
#[derive(Debug)]
pub enum DefaultAppOutcome {
    /// No app existed, so one was generated; its secret is shown this once.
    Generated(App),
    /// The configured app was created or brought up to date.
    Configured(App),
    /// Apps exist and none is configured.
    Existing(Vec<App>),
}

/// Creates or updates the configured app, or generates one when the database has none.
pub async fn ensure_default_app(
    store: &AppStore,
    configured: Option<&DefaultApp>,
) -> Result<DefaultAppOutcome, AppStoreError> {
    let Some(configured) = configured else {
        let apps = store.list().await?;
        if apps.is_empty() {
            let new = NewApp {
                enabled: true,
                ..NewApp::default()
            };
            return Ok(DefaultAppOutcome::Generated(store.create(new).await?));
        }
        return Ok(DefaultAppOutcome::Existing(apps));
    };
    let id = configured.id.clone().unwrap_or_default();
    let app = match store.find(&id).await {
        Ok(mut app) => {
            let before = app.clone();
            app.key = configured.key.clone().unwrap_or(app.key);
            app.secret = configured.secret.clone().unwrap_or(app.secret);
            app.name = configured.name.clone().unwrap_or(app.name);
            app.enabled = configured.enabled.unwrap_or(app.enabled);
            configured.apply(&mut app.settings);
            if app == before {
                app
            } else {
                store.update(&app).await?
            }
        }
        Err(AppStoreError::NotFound(_)) => {
            let mut settings = AppSettings::default();
            configured.apply(&mut settings);
            let new = NewApp {
                id: configured.id.clone(),
                key: configured.key.clone(),
                secret: configured.secret.clone(),
                name: configured.name.clone(),
                enabled: configured.enabled.unwrap_or(true),
                settings,
            };
            store.create(new).await?
        }
        Err(error) => return Err(error),
    };
    Ok(DefaultAppOutcome::Configured(app))
}

/// A running server.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, tells connections to reconnect (4200), waits for them to drain.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Waits until the server stops on its own (after [`RunningServer::stop_handle`] fires).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// A handle that starts a graceful shutdown when sent `true`.
    pub fn stop_handle(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Binds the listener and starts serving, with the apps in `db`.
pub async fn start(settings: &Settings, db: DatabaseConnection) -> anyhow::Result<RunningServer> {
    let registry = AppRegistry::load(AppStore::new(db))
        .await
        .context("cannot load apps")?;
    let ctx = Arc::new(Context {
        apps: registry,
        hub: Arc::new(Hub::new()),
    });
    let acceptor = TcpListener::bind(SocketAddr::new(settings.host, settings.port))
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))?;
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .context("listener has no socket address")?;

    let (stop, stopped) = watch::channel(false);
    let refresher = tokio::spawn(refresh_apps(
        ctx.clone(),
        settings.app_refresh,
        stopped.clone(),
    ));
    let routes = http::routes(ctx.clone());
    let grace = settings.shutdown_grace;
    let hub = ctx.hub.clone();
    let task = tokio::spawn(async move {
        let mut signal = stopped.clone();
        let result = Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(
                routes,
                async move {
                    let _ = signal.wait_for(|stop| *stop).await;
                },
                Some(grace),
            )
            .await;
        tracing::info!(
            connections = hub.live_connections(),
            "no longer accepting; asking clients to reconnect"
        );
        hub.shutdown(grace).await;
        refresher.abort();
        result
    });
    Ok(RunningServer {
        addr,
        ctx,
        stop,
        task,
    })
}

/// Re-reads the apps table every `every`, applying changes to live connections.
async fn refresh_apps(
    ctx: Arc<Context>,
    every: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        match ctx.apps.reload().await {
            Ok(changed) => {
                for (old, new) in changed {
                    tracing::info!(app_id = %old.id, deleted = new.is_none(), "app changed");
                    ctx.hub.app_changed(&old, new.as_ref());
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot reload apps; keeping the cached ones")
            }
        }
    }
}
