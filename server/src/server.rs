//! Starting and stopping the server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use comnestor_migrations::{Migrator, MigratorTrait};
use poem::Server;
use poem::listener::Acceptor;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Context;
use crate::apps::{App, AppRegistry, AppSettings, AppStore, AppStoreError, NewApp};
use crate::config::{DefaultApp, QueueKind, Settings};
use crate::delivery::{Deliverer, RetryPolicy};
use crate::eventlog::EventLog;
use crate::http;
use crate::hub::{Cluster, ClusterConfig, Hub, cluster};
use crate::intake::{self, Intake};
use crate::listener;
use crate::pubsub::Bus;
use crate::queue::Queue;
use crate::webhooks::{self, WebhookStore, Webhooks};

/// How often events left unqueued by a crash are looked for.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// How often old events are pruned.
const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Connects to the database and applies pending migrations.
pub async fn connect_database(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.sqlx_logging(false);
    if url.starts_with("sqlite:") && url.contains(":memory:") {
        // Every pooled connection to `:memory:` would be a separate, empty database.
        options.max_connections(1).min_connections(1);
    } else if url.starts_with("sqlite:") {
        crate::sqlite::tune_file(&mut options);
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

/// Builds the intake pipeline: event log, operator bus and delivery queue.
async fn build_intake(
    settings: &Settings,
    db: DatabaseConnection,
    apps: AppRegistry,
) -> anyhow::Result<Arc<Intake>> {
    let bus = match &settings.redis_url {
        Some(url) => Bus::redis(url, &settings.redis_prefix)
            .await
            .with_context(|| format!("cannot connect to Redis at {url}"))?,
        None => Bus::in_process(),
    };
    let queue = match (settings.queue, &settings.redis_url) {
        (QueueKind::Redis, Some(url)) => Queue::redis(url, &settings.redis_prefix)
            .await
            .context("cannot open the Redis queue")?,
        _ => Queue::in_database(&db)
            .await
            .context("cannot open the delivery queue")?,
    };
    tracing::info!(
        queue = queue.backend_name(),
        redis = settings.redis_url.is_some(),
        "intake pipeline ready"
    );
    let log = EventLog::open(db)
        .await
        .context("cannot open the event log")?;
    Ok(Intake::new(log, queue, bus, apps))
}

/// `hub`, sharing its state with the other nodes through Redis when `cluster` is on.
async fn join_cluster(settings: &Settings, hub: Hub) -> anyhow::Result<Hub> {
    let Some(url) = settings.redis_url.as_ref().filter(|_| settings.cluster) else {
        return Ok(hub);
    };
    let config = ClusterConfig {
        redis_url: url.clone(),
        prefix: settings.redis_prefix.clone(),
        node_ttl: settings.cluster_node_ttl,
    };
    let cluster = Cluster::join(&config)
        .await
        .with_context(|| format!("cannot join the cluster through Redis at {}", redact(url)))?;
    tracing::info!(node = cluster.node_id(), prefix = %config.prefix, "joined the cluster");
    Ok(hub.clustered(Arc::new(cluster)))
}

/// Binds the listener and starts serving, with the apps in `db`.
pub async fn start(settings: &Settings, db: DatabaseConnection) -> anyhow::Result<RunningServer> {
    let registry = AppRegistry::load(AppStore::new(db.clone()))
        .await
        .context("cannot load apps")?;
    let webhooks = Webhooks::new(
        WebhookStore::new(db.clone()),
        webhooks::open_queue(settings, &db)
            .await
            .context("cannot open the webhook queue")?,
        registry.clone(),
        settings.webhooks,
    );
    let checkpoint_db = db.clone();
    let intake = build_intake(settings, db, registry.clone()).await?;
    let ctx = Arc::new(Context {
        apps: registry.clone(),
        hub: Arc::new(join_cluster(settings, Hub::with_webhooks(webhooks.clone())).await?),
        intake: intake.clone(),
        webhooks: webhooks.clone(),
    });
    if let Some(cluster) = ctx.hub.cluster() {
        webhooks.use_cluster(cluster.clone());
    }
    let acceptor = listener::bind(SocketAddr::new(settings.host, settings.port))
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
    let mut background = spawn_pipeline(settings, addr, &intake, stopped.clone());
    background.extend(webhooks.spawn(stopped.clone()));
    background.push(tokio::spawn(crate::sqlite::run_checkpointer(
        checkpoint_db,
        stopped.clone(),
    )));
    background.push(tokio::spawn(crate::memory::trim_after_disconnects(
        ctx.hub.clone(),
        stopped.clone(),
    )));
    let cluster_tasks = cluster::spawn(&ctx.hub, &stopped);
    let routes = http::routes(ctx.clone());
    let grace = settings.shutdown_grace;
    let hub = ctx.hub.clone();
    let task = tokio::spawn(async move {
        let mut signal = stopped.clone();
        let cluster_hub = hub.clone();
        // Connections drain before the listener closes, so that during the drain `/up`
        // answers 503 to load balancers and late clients are told to reconnect (4200)
        // instead of finding the port closed.
        let drain = async move {
            let _ = signal.wait_for(|stop| *stop).await;
            tracing::info!(
                connections = hub.live_connections(),
                "shutting down; asking clients to reconnect"
            );
            hub.shutdown(grace).await;
        };
        let result = Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(routes, drain, Some(grace))
            .await;
        tracing::info!("no longer accepting");
        if let Some(cluster) = cluster_hub.cluster() {
            cluster.leave(&cluster_hub).await;
        }
        for task in cluster_tasks {
            let _ = tokio::time::timeout(grace, task).await;
        }
        refresher.abort();
        for task in background {
            let _ = tokio::time::timeout(grace, task).await;
        }
        result
    });
    Ok(RunningServer {
        addr,
        ctx,
        stop,
        task,
    })
}

/// Starts the delivery worker, the sweeper and the retention job.
fn spawn_pipeline(
    settings: &Settings,
    addr: SocketAddr,
    intake: &Arc<Intake>,
    stopped: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    let own_base_url = format!("http://{host}:{}", addr.port());
    let retry = RetryPolicy {
        max_attempts: settings.delivery_max_attempts,
        base_delay: settings.delivery_backoff,
        ..RetryPolicy::default()
    };
    let mut tasks = Vec::new();
    if settings.delivery_workers > 0 {
        let deliverer = Deliverer::new(
            intake.log.clone(),
            intake.apps.clone(),
            intake.queue.clone(),
            own_base_url,
            retry,
        );
        let queue = intake.queue.clone();
        let workers = settings.delivery_workers;
        let poll = settings.queue_poll;
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            queue.run_worker(deliverer, workers, poll, stopped).await
        }));
    } else {
        tracing::warn!(
            "delivery_workers = 0: events are accepted and queued but not delivered by this process"
        );
    }
    tasks.push(tokio::spawn(intake::run_sweeper(
        intake.clone(),
        SWEEP_INTERVAL,
        stopped.clone(),
    )));
    tasks.push(tokio::spawn(intake::run_retention(
        intake.clone(),
        RETENTION_INTERVAL,
        stopped,
    )));
    tasks
}

/// Re-reads the apps table every `every`, applying changes to live connections.
async fn refresh_apps(
    ctx: Arc<Context>,
    every: std::time::Duration,
    stopped: watch::Receiver<bool>,
) {
    let mut every = crate::periodic::Every::new(every, stopped);
    while every.tick().await {
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
