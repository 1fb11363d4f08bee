//! Stage 4, the delivery queue, on apalis: SQLite or Postgres in the same database as the event
//! log, or Redis in production.
//!
//! A job holds only an event id; the event itself lives in the log. Pushing a job also wakes
//! this process's worker at once ([`PushWake`]), so the embedded default adds no polling
//! interval to the path from intake to subscribers. Jobs pushed by other processes, and
//! retries scheduled for later, are found by polling every [`POLL_INTERVAL`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use futures::StreamExt;
use futures::channel::mpsc;
use sea_orm::{DatabaseConnection, DbBackend};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::delivery::Deliverer;

/// How often the worker looks for jobs it was not woken for, by default.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How often a worker tells the SQL queue it is alive. A job locked by a worker silent for
/// two of these (a process killed mid-delivery) goes back to the queue, so this bounds how
/// long such a delivery waits after a restart.
const HEARTBEAT: Duration = Duration::from_secs(3);

/// After a wake, how long until the worker looks once more; see [`PushWake`].
const RECHECK_AFTER: Duration = Duration::from_millis(10);

/// A delivery job: deliver the logged event with this id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub event_id: String,
}

/// Where jobs are stored.
#[derive(Clone)]
enum Storage {
    Sqlite(SqliteStorage<Delivery>),
    Postgres(PostgresStorage<Delivery>),
    Redis(RedisStorage<Delivery>),
}

/// The handle intake and worker use to queue deliveries.
#[derive(Clone)]
pub struct Queue {
    storage: Storage,
    wake: mpsc::UnboundedSender<()>,
    woken: Arc<std::sync::Mutex<Option<mpsc::UnboundedReceiver<()>>>>,
}

/// Failure to queue a job.
#[derive(Debug, thiserror::Error)]
#[error("cannot queue delivery job: {0}")]
pub struct QueueError(String);

impl Queue {
    /// A queue in the database itself (SQLite or Postgres), sharing its connection pool.
    pub async fn in_database(db: &DatabaseConnection) -> anyhow::Result<Self> {
        let storage = match db.get_database_backend() {
            DbBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool().clone();
                SqliteStorage::setup(&pool).await?;
                let config = apalis_sqlite::Config::default()
                    .queue(std::any::type_name::<Delivery>())
                    .heartbeat_interval(HEARTBEAT);
                Storage::Sqlite(SqliteStorage::new(&pool).with_config(config))
            }
            DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool().clone();
                PostgresStorage::setup(&pool).await?;
                let config = apalis_postgres::Config::default()
                    .queue(std::any::type_name::<Delivery>())
                    .heartbeat_interval(HEARTBEAT);
                Storage::Postgres(PostgresStorage::new(&pool).with_config(config))
            }
            other => anyhow::bail!("no queue backend for {other:?}; use Redis"),
        };
        Ok(Self::with_storage(storage))
    }

    /// A queue on Redis, shared by every node of a cluster. Its keys start with `prefix`, so
    /// clusters (and tests) sharing one Redis never take each other's jobs.
    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let conn = apalis_redis::connect(url).await?;
        let config = apalis_redis::Config::default().queue(format!("{prefix}deliveries"));
        let storage = RedisStorage::new(conn).with_config(config);
        Ok(Self::with_storage(Storage::Redis(storage)))
    }

    fn with_storage(storage: Storage) -> Self {
        let (wake, woken) = mpsc::unbounded();
        Self {
            storage,
            wake,
            woken: Arc::new(std::sync::Mutex::new(Some(woken))),
        }
    }

    /// Which backend holds the jobs, for logs and `/up`.
    pub fn backend_name(&self) -> &'static str {
        match self.storage {
            Storage::Sqlite(_) => "sqlite",
            Storage::Postgres(_) => "postgres",
            Storage::Redis(_) => "redis",
        }
    }

    /// Queues a delivery, to run after `delay` when one is given.
    pub async fn push(&self, event_id: &str, delay: Option<Duration>) -> Result<(), QueueError> {
        let job = Delivery {
            event_id: event_id.to_owned(),
        };
        let mut task = TaskBuilder::new(job);
        if let Some(delay) = delay {
            task = task.run_after(delay);
        }
        let task = task.build();
        let result = match self.storage.clone() {
            Storage::Sqlite(mut s) => s.push_task(task).await.map_err(|e| e.to_string()),
            Storage::Postgres(mut s) => s.push_task(task).await.map_err(|e| e.to_string()),
            Storage::Redis(mut s) => s.push_task(task).await.map_err(|e| e.to_string()),
        };
        result.map_err(QueueError)?;
        if delay.is_none() {
            let _ = self.wake.unbounded_send(());
        }
        Ok(())
    }

    /// Runs a worker with `concurrency` parallel deliveries until `stop` turns true. It is
    /// woken at once by this process's pushes and looks for other jobs every `poll_interval`.
    pub async fn run_worker(
        &self,
        deliverer: Arc<Deliverer>,
        concurrency: usize,
        poll_interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let woken = self.woken.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(woken) = woken else {
            tracing::error!("a delivery worker is already running for this queue");
            return;
        };
        let strategy = Strategy::new()
            .apply(PushWake::new(woken))
            .interval(poll_interval);
        let name = format!("delivery-{}", ulid::Ulid::generate());
        let signal = async move {
            let _ = stop.wait_for(|s| *s).await;
            Ok::<(), std::io::Error>(())
        };
        // The worker types differ per backend, so each arm builds its own.
        macro_rules! run {
            ($backend:expr) => {
                WorkerBuilder::new(name)
                    .backend($backend)
                    .data(deliverer)
                    .concurrency(concurrency)
                    .build(deliver)
                    .run_until(signal)
                    .await
            };
        }
        let result = match self.storage.clone() {
            Storage::Sqlite(s) => run!(s.poll_with_strategy(strategy)),
            Storage::Postgres(s) => run!(s.poll_with_strategy(strategy)),
            Storage::Redis(s) => run!(s.poll_with_strategy(strategy)),
        };
        if let Err(error) = result {
            tracing::error!(%error, "delivery worker stopped with an error");
        }
    }
}

/// Wakes the worker when this process pushes a job.
///
/// Every push sends one message; the worker fetches when it is woken. A push that commits
/// while a fetch is already running may not be in that fetch's result, and if that fetch comes
/// back empty the worker would sleep until the next poll. So after each wake the strategy
/// wakes the worker once more, [`RECHECK_AFTER`] later: at worst such a push waits that long,
/// never a poll interval.
struct PushWake {
    woken: mpsc::UnboundedReceiver<()>,
    recheck: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl PushWake {
    fn new(woken: mpsc::UnboundedReceiver<()>) -> Self {
        Self {
            woken,
            recheck: None,
        }
    }
}

impl PollStrategy for PushWake {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        // Drain every pending wake, which also leaves the waker registered for the next one.
        let mut woken = false;
        while let Poll::Ready(Some(())) = self.woken.poll_next_unpin(cx) {
            woken = true;
        }
        if woken {
            let mut recheck = Box::pin(tokio::time::sleep(RECHECK_AFTER));
            let _ = recheck.as_mut().poll(cx);
            self.recheck = Some(recheck);
            return Poll::Ready(Some(()));
        }
        match self.recheck.as_mut().map(|r| r.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                self.recheck = None;
                Poll::Ready(Some(()))
            }
            _ => Poll::Pending,
        }
    }
}

/// The job handler: one delivery attempt. Failures are recorded and retried by the deliverer,
/// so the job itself always completes.
async fn deliver(job: Delivery, deliverer: Data<Arc<Deliverer>>) -> Result<(), BoxDynError> {
    deliverer.deliver(&job.event_id).await;
    Ok(())
}
