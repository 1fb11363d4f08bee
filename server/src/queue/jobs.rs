//! One job queue on apalis, generic in its job type: SQLite or Postgres in the same database as
//! the event log, or Redis in production. The delivery queue ([`super::Queue`]) and the webhook
//! queue ([`crate::webhooks::WebhookQueue`]) are instances of it, each with its own job type
//! and [`QueueSettings`], so their jobs never wait behind each other.
//!
//! Pushing a job without a delay also wakes this process's worker at once, so the path from a
//! push to its handler adds no polling interval. Jobs pushed by other processes, and jobs
//! scheduled for later, are found by polling.

use std::future::Future;
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
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::claims::{self, Claimed, Claimer};
use crate::transaction::SqlTx;

/// Creates apalis's tables on `pool`, then gives back the durability its setup takes away:
/// apalis sets `PRAGMA synchronous = OFF` on whichever pooled connection it ran on, and that
/// pool also writes the event log. With `OFF` even a checkpoint skips its syncs, so a power cut
/// could lose events the intake answered `202` for. Every pooled connection is set back to the
/// level the pool was opened with (`NORMAL` for a SQLite file, see `server::connect_database`);
/// connections opened later get that level from the pool's options.
async fn setup_sqlite(pool: &sea_orm::sqlx::SqlitePool) -> anyhow::Result<()> {
    let level: i64 = sea_orm::sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(pool)
        .await?;
    let restore = match level {
        0 => "PRAGMA synchronous = OFF",
        1 => "PRAGMA synchronous = NORMAL",
        3 => "PRAGMA synchronous = EXTRA",
        _ => "PRAGMA synchronous = FULL",
    };
    SqliteStorage::setup(pool).await?;
    // Hold every connection at once, so each is visited; one still on its way back to the
    // pool is waited for briefly, one in use elsewhere is left alone.
    let mut held = Vec::new();
    for _ in 0..pool.size() {
        match tokio::time::timeout(Duration::from_millis(200), pool.acquire()).await {
            Ok(conn) => held.push(conn?),
            Err(_) => break,
        }
    }
    for conn in &mut held {
        sea_orm::sqlx::query(restore).execute(&mut **conn).await?;
    }
    drop(held);
    pin_job_statistics(pool).await
}

/// Tells SQLite's query planner what the `Jobs` table looks like under load, so that it plans
/// apalis's acknowledgement well from the start.
///
/// apalis acknowledges a group of jobs with `UPDATE Jobs … FROM json_each(?) WHERE Jobs.id =
/// task_id AND Jobs.lock_by = ?`. Without statistics SQLite guesses that few rows share a
/// `lock_by`, walks every job the worker ever locked, and parses the JSON group again for each:
/// work that grows with the table, which took SQLite's thread to 90 % of a core at 400 events/s.
/// With statistics saying `lock_by` is shared by many rows and `id` is unique, it looks each
/// acknowledged job up by id instead. Fixed statistics, rather than `ANALYZE` of a table that is
/// empty at start, are SQLite's documented way to get a plan that holds whatever the data.
async fn pin_job_statistics(pool: &sea_orm::sqlx::SqlitePool) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    // Creates `sqlite_stat1` when it does not exist yet.
    sea_orm::sqlx::query("ANALYZE Jobs")
        .execute(&mut *tx)
        .await?;
    sea_orm::sqlx::query(
        "DELETE FROM sqlite_stat1 WHERE tbl = 'Jobs' AND idx IN ('LIdx', 'sqlite_autoindex_Jobs_1')",
    )
    .execute(&mut *tx)
    .await?;
    sea_orm::sqlx::query(
        "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES \
         ('Jobs', 'LIdx', '1000000 100000'), ('Jobs', 'sqlite_autoindex_Jobs_1', '1000000 1')",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // Loads the statistics into the planner.
    sea_orm::sqlx::query("ANALYZE sqlite_schema")
        .execute(pool)
        .await?;
    Ok(())
}

/// One statement that inserts `tasks` into apalis's SQLite `Jobs` table as apalis's own
/// `push_tasks` would, row for row (pending, due now unless a time is set, at most 25 attempts,
/// default priority), or locked by the worker `lock_by` as apalis's fetch leaves the jobs it
/// takes; and the jobs' ids.
///
/// apalis inserts one statement per job, and on SQLite every statement is a round trip to the
/// connection's thread that the rest of the pipeline waits behind; a group of 64 events took 64
/// of them. The columns are those of apalis-sqlite 1.0's schema; a schema change breaks the
/// intake tests (the job must be fetched and delivered), not production silently.
fn sqlite_job_insert(
    queue: &str,
    tasks: &[Task<Vec<u8>>],
    lock_by: Option<&str>,
) -> (sea_orm::Statement, Vec<String>) {
    use sea_orm::sea_query::{Alias, Query};

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let status = if lock_by.is_some() {
        "Queued"
    } else {
        "Pending"
    };
    let lock_at = lock_by.map(|_| now);
    let mut insert = Query::insert();
    insert.into_table(Alias::new("Jobs")).columns(
        [
            "job",
            "id",
            "job_type",
            "status",
            "attempts",
            "max_attempts",
            "run_at",
            "priority",
            "metadata",
            "lock_by",
            "lock_at",
        ]
        .map(Alias::new),
    );
    let mut ids = Vec::with_capacity(tasks.len());
    for task in tasks {
        let id = task
            .task_id()
            .map(|id| id.to_string())
            .unwrap_or_else(|| ulid::Ulid::generate().to_string());
        let metadata = serde_json::to_string(task.metadata()).unwrap_or_default();
        insert.values_panic([
            task.args.clone().into(),
            id.clone().into(),
            queue.into(),
            status.into(),
            0i64.into(),
            (task.max_attempts().unwrap_or(25) as i64).into(),
            task.run_at().map_or(now, |at| at as i64).into(),
            (task.priority().unwrap_or_default() as i64).into(),
            metadata.into(),
            lock_by.map(str::to_owned).into(),
            lock_at.into(),
        ]);
        ids.push(id);
    }
    (DbBackend::Sqlite.build(&insert), ids)
}

/// After a wake, how long until the worker looks once more; see [`PushWake`].
const RECHECK_AFTER: Duration = Duration::from_millis(10);

/// What sets one queue apart from another, besides its job type.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// The kind of job, in errors and logs: "a {job} worker", "cannot queue {job} job".
    pub job: &'static str,
    /// The queue, in the error for a database with no queue backend.
    pub queue: &'static str,
    /// The Redis queue name, after the cluster's key prefix.
    pub redis_queue: &'static str,
    /// The start of each worker's name, before a fresh ULID.
    pub worker: &'static str,
    /// How often a worker tells the SQL queue it is alive, when not apalis's default.
    pub sql_heartbeat: Option<Duration>,
    /// Whether each wake is followed by one more look shortly after ([`PushWake`]), rather
    /// than one look per wake.
    pub recheck_wakes: bool,
}

/// A job type with a queue of its own.
pub trait QueueJob: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    const QUEUE: QueueSettings;
}

/// Runs one job. Failures are the handler's to record and retry, so the job always completes.
pub trait JobHandler<J>: Send + Sync + 'static {
    fn handle(&self, job: J) -> impl Future<Output = ()> + Send;
}

/// Where jobs are stored.
enum Storage<J> {
    Sqlite(SqliteStorage<J>),
    Postgres(PostgresStorage<J>),
    Redis(RedisStorage<J>),
}

// Not derived: a derive would ask for `J: Clone`, which the storages do not need.
impl<J> Clone for Storage<J> {
    fn clone(&self) -> Self {
        match self {
            Self::Sqlite(s) => Self::Sqlite(s.clone()),
            Self::Postgres(s) => Self::Postgres(s.clone()),
            Self::Redis(s) => Self::Redis(s.clone()),
        }
    }
}

/// The pool under a SQL queue, for the upkeep apalis leaves to its user.
#[derive(Clone)]
enum SqlPool {
    Sqlite(sea_orm::sqlx::SqlitePool),
    Postgres(sea_orm::sqlx::PgPool),
}

/// How often a worker deletes the jobs it has finished, and how many at most per statement.
/// Often and small: on SQLite a delete holds the one connection every stage waits for, and a
/// thousand rows a second at once put a 5–10 ms stall in front of 1 % of events.
const PRUNE_EVERY: Duration = Duration::from_millis(100);
const PRUNE_BATCH: i64 = 250;

/// Runs `$op` on the storage that backs a queue, whichever it is, with its error as text.
macro_rules! on_storage {
    ($storage:expr, |$s:ident| $op:expr) => {
        match $storage {
            Storage::Sqlite(mut $s) => $op.await.map_err(|e| e.to_string()),
            Storage::Postgres(mut $s) => $op.await.map_err(|e| e.to_string()),
            Storage::Redis(mut $s) => $op.await.map_err(|e| e.to_string()),
        }
    };
}

/// The handle to push jobs of type `J` and run their worker.
pub struct JobQueue<J> {
    storage: Storage<J>,
    sql: Option<SqlPool>,
    wake: mpsc::UnboundedSender<()>,
    woken: Arc<std::sync::Mutex<Option<mpsc::UnboundedReceiver<()>>>>,
    /// Set while this process's worker claims jobs as they are written (SQLite only).
    claims: Arc<std::sync::RwLock<Option<Claimer<J>>>>,
}

impl<J> Clone for JobQueue<J> {
    fn clone(&self) -> Self {
        Self {
            storage: self.storage.clone(),
            sql: self.sql.clone(),
            wake: self.wake.clone(),
            woken: self.woken.clone(),
            claims: self.claims.clone(),
        }
    }
}

/// Jobs written by [`JobQueue::push_in`] in a transaction that has not committed yet.
#[must_use = "the worker learns of the jobs from `committed`"]
pub struct Pushed<J> {
    claimed: Vec<(tokio::sync::mpsc::OwnedPermit<Claimed<J>>, Claimed<J>)>,
    wake: Option<mpsc::UnboundedSender<()>>,
}

impl<J> Pushed<J> {
    /// Hands claimed jobs to this process's worker, or wakes it to fetch the others; call it
    /// once the transaction has committed. Dropped instead (the transaction failed), claimed
    /// jobs free their places in the worker's line.
    pub fn committed(self) {
        for (permit, claimed) in self.claimed {
            permit.send(claimed);
        }
        if let Some(wake) = self.wake {
            let _ = wake.unbounded_send(());
        }
    }
}

/// Failure to queue a job.
#[derive(Debug, thiserror::Error)]
#[error("cannot queue {job} job: {message}")]
pub struct QueueError {
    job: &'static str,
    message: String,
}

impl<J: QueueJob> JobQueue<J> {
    /// A queue in the database itself (SQLite or Postgres), sharing its connection pool.
    pub async fn in_database(db: &DatabaseConnection) -> anyhow::Result<Self> {
        let settings = J::QUEUE;
        let (storage, sql) = match db.get_database_backend() {
            DbBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool().clone();
                setup_sqlite(&pool).await?;
                let mut config = apalis_sqlite::Config::default().queue(Self::sql_queue());
                if let Some(heartbeat) = settings.sql_heartbeat {
                    config = config.heartbeat_interval(heartbeat);
                }
                let storage = Storage::Sqlite(SqliteStorage::new(&pool).with_config(config));
                (storage, SqlPool::Sqlite(pool))
            }
            DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool().clone();
                PostgresStorage::setup(&pool).await?;
                let mut config = apalis_postgres::Config::default().queue(Self::sql_queue());
                if let Some(heartbeat) = settings.sql_heartbeat {
                    config = config.heartbeat_interval(heartbeat);
                }
                let storage = Storage::Postgres(PostgresStorage::new(&pool).with_config(config));
                (storage, SqlPool::Postgres(pool))
            }
            other => anyhow::bail!("no {} backend for {other:?}; use Redis", settings.queue),
        };
        let mut queue = Self::with_storage(storage);
        queue.sql = Some(sql);
        Ok(queue)
    }

    /// A queue on Redis, shared by every node of a cluster. Its keys start with `prefix`, so
    /// clusters (and tests) sharing one Redis never take each other's jobs.
    pub async fn redis(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let conn = apalis_redis::connect(url).await?;
        let queue = format!("{prefix}{}", J::QUEUE.redis_queue);
        let config = apalis_redis::Config::default().queue(queue);
        let storage = RedisStorage::new(conn).with_config(config);
        Ok(Self::with_storage(Storage::Redis(storage)))
    }

    fn with_storage(storage: Storage<J>) -> Self {
        let (wake, woken) = mpsc::unbounded();
        Self {
            storage,
            sql: None,
            wake,
            woken: Arc::new(std::sync::Mutex::new(Some(woken))),
            claims: Arc::new(std::sync::RwLock::new(None)),
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

    /// Queues a job, to run after `delay` when one is given; without one, this process's
    /// worker is woken at once.
    pub async fn enqueue(&self, job: J, delay: Option<Duration>) -> Result<(), QueueError> {
        let mut task = TaskBuilder::new(job);
        if let Some(delay) = delay {
            task = task.run_after(delay);
        }
        let task = task.build();
        on_storage!(self.storage.clone(), |s| s.push_task(task)).map_err(Self::error)?;
        if delay.is_none() {
            let _ = self.wake.unbounded_send(());
        }
        Ok(())
    }

    /// The queue's name in apalis's SQL tables (`job_type`): one per job type.
    fn sql_queue() -> &'static str {
        std::any::type_name::<J>()
    }

    fn error(message: String) -> QueueError {
        QueueError {
            job: J::QUEUE.job,
            message,
        }
    }

    /// Queues jobs to run now, in one write (one transaction on SQL backends), and wakes this
    /// process's worker.
    pub async fn enqueue_many(&self, jobs: Vec<J>) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        on_storage!(self.storage.clone(), |s| s.push_bulk(jobs)).map_err(Self::error)?;
        let _ = self.wake.unbounded_send(());
        Ok(())
    }

    /// Whether this process's worker is claiming the jobs written now ([`super::claims`]).
    /// It starts a moment after the worker, once apalis has registered it; jobs written before
    /// are fetched as usual.
    pub fn is_claiming(&self) -> bool {
        self.claims
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Whether this queue's jobs are rows of the database it was opened in, so that they can be
    /// written in a [`SqlTx`] with other rows ([`JobQueue::push_in`]).
    pub fn is_in_database(&self) -> bool {
        self.sql.is_some()
    }

    /// Writes jobs to run now in `tx`, a transaction on the database this queue was opened in
    /// ([`JobQueue::in_database`]). They become visible when the caller commits; then
    /// [`Pushed::committed`] starts this process's worker on them. On SQLite, while this
    /// process runs the queue's worker, the jobs are written claimed by it ([`super::claims`]).
    pub async fn push_in(&self, tx: &mut SqlTx, jobs: Vec<J>) -> Result<Pushed<J>, QueueError> {
        let mut pushed = Pushed {
            claimed: Vec::new(),
            wake: None,
        };
        if jobs.is_empty() {
            return Ok(pushed);
        }
        // The codec both SQL storages decode jobs with.
        let codec = apalis_sqlite::JsonCodec::<Vec<u8>>::default();
        let tasks = jobs
            .iter()
            .map(|job| codec.encode(job).map(|args| TaskBuilder::new(args).build()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Self::error(e.to_string()))?;
        let queue = Self::sql_queue();
        match (tx, &self.storage) {
            (tx @ SqlTx::Sqlite(_), Storage::Sqlite(_)) => {
                let claimer = self
                    .claims
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let claim = claimer
                    .as_ref()
                    .and_then(|c| Some((c.worker.as_str(), c.reserve(jobs.len())?)));
                let lock_by = claim.as_ref().map(|(worker, _)| *worker);
                let (insert, ids) = sqlite_job_insert(queue, &tasks, lock_by);
                tx.write(insert)
                    .await
                    .map_err(|e| Self::error(e.to_string()))?;
                match claim {
                    Some((_, permits)) => {
                        pushed.claimed = permits
                            .into_iter()
                            .zip(ids.into_iter().zip(jobs))
                            .map(|(permit, (id, job))| (permit, Claimed { id, job }))
                            .collect();
                    }
                    None => pushed.wake = Some(self.wake.clone()),
                }
            }
            (SqlTx::Postgres(tx), Storage::Postgres(_)) => {
                apalis_postgres::queries::push_tasks(&mut **tx, queue, tasks)
                    .await
                    .map_err(|e| Self::error(e.to_string()))?;
                pushed.wake = Some(self.wake.clone());
            }
            (tx, _) => {
                return Err(Self::error(format!(
                    "a {:?} transaction cannot hold jobs of a {} queue",
                    tx.backend(),
                    self.backend_name()
                )));
            }
        }
        Ok(pushed)
    }

    /// Deletes up to [`PRUNE_BATCH`] finished jobs of this queue from a SQL backend; returns
    /// how many. The handler records each job's outcome where it belongs (the event log, the
    /// webhook batches), so a finished job is of no further use, and apalis never deletes one
    /// by itself: without this the table would grow by a row per event for ever.
    pub async fn prune_done(&self) -> Result<u64, sea_orm::sqlx::Error> {
        let queue = Self::sql_queue();
        let result = match &self.sql {
            None => return Ok(0),
            Some(SqlPool::Sqlite(pool)) => sea_orm::sqlx::query(
                "DELETE FROM Jobs WHERE rowid IN (SELECT rowid FROM Jobs \
                     WHERE job_type = ?1 AND status = 'Done' LIMIT ?2)",
            )
            .bind(queue)
            .bind(PRUNE_BATCH)
            .execute(pool)
            .await?
            .rows_affected(),
            Some(SqlPool::Postgres(pool)) => sea_orm::sqlx::query(
                "DELETE FROM apalis.jobs WHERE id IN (SELECT id FROM apalis.jobs \
                     WHERE job_type = $1 AND status = 'Done' LIMIT $2)",
            )
            .bind(queue)
            .bind(PRUNE_BATCH)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(result)
    }

    /// Deletes finished jobs every [`PRUNE_EVERY`] until `stop` turns true.
    async fn prune_until(&self, stop: watch::Receiver<bool>) {
        if self.sql.is_none() {
            return;
        }
        let mut every = crate::periodic::Every::new(PRUNE_EVERY, stop);
        while every.tick().await {
            loop {
                match self.prune_done().await {
                    Ok(n) if n as i64 == PRUNE_BATCH => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "cannot delete finished {} jobs", J::QUEUE.job);
                        break;
                    }
                }
            }
        }
    }

    /// Runs a worker with `concurrency` jobs in parallel, each given to `handler`, until
    /// `stop` turns true. It is woken at once by this process's pushes and looks for other
    /// jobs every `poll_interval`. A queue runs one worker per process.
    pub async fn work<H: JobHandler<J>>(
        &self,
        handler: Arc<H>,
        concurrency: usize,
        poll_interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let settings = J::QUEUE;
        let woken = self.woken.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(woken) = woken else {
            tracing::error!(
                "a {} worker is already running for this queue",
                settings.job
            );
            return;
        };
        let strategy = if settings.recheck_wakes {
            Strategy::new().apply(PushWake::new(woken))
        } else {
            Strategy::new().stream(woken)
        };
        let strategy = strategy.interval(poll_interval);
        let name = format!("{}-{}", settings.worker, ulid::Ulid::generate());
        // The pruner and the claims run as tasks of their own (ended with the worker if this
        // future is dropped). apalis fetches each time its worker is polled after an empty
        // fetch, and futures joined in one task are all polled whenever one of them is woken:
        // joined, every claimed job and every prune cost a fetch (one `UPDATE Jobs …` per event
        // on SQLite).
        let mut helpers = tokio::task::JoinSet::new();
        helpers.spawn({
            let (queue, stop) = (self.clone(), stop.clone());
            async move { queue.prune_until(stop).await }
        });
        // Fetched and claimed jobs share one limit, so that `concurrency` holds for both.
        let running = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        helpers.spawn({
            let (claims, handler, stop) = (self.claims.clone(), handler.clone(), stop.clone());
            let (pool, worker, running) = (self.sql.clone(), name.clone(), running.clone());
            async move {
                if let Some(SqlPool::Sqlite(pool)) = pool {
                    claims::run(pool, worker, claims, handler, running, stop).await;
                }
            }
        });
        let signal = async move {
            let _ = stop.wait_for(|s| *s).await;
            Ok::<(), std::io::Error>(())
        };
        // The worker types differ per backend, so each arm builds its own.
        macro_rules! run {
            ($backend:expr) => {
                WorkerBuilder::new(name)
                    .backend($backend)
                    .data(handler)
                    .data(running)
                    .concurrency(concurrency)
                    .build(handle::<J, H>)
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
            tracing::error!(%error, "{} worker stopped with an error", settings.job);
        }
        while let Some(ended) = helpers.join_next().await {
            if let Err(error) = ended {
                tracing::error!(%error, "the {} worker's pruner or claims failed", settings.job);
            }
        }
    }
}

/// The apalis job handler: hands the job to the queue's [`JobHandler`]. Failures are recorded
/// and retried by that handler, so the job itself always completes.
async fn handle<J, H: JobHandler<J>>(
    job: J,
    handler: Data<Arc<H>>,
    running: Data<Arc<tokio::sync::Semaphore>>,
) -> Result<(), BoxDynError> {
    // Never closed, so a permit always comes.
    let _permit = running.acquire().await;
    handler.handle(job).await;
    Ok(())
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

#[cfg(test)]
mod tests {
    use sea_orm::sqlx::Row;

    use super::*;

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct Probe;

    impl QueueJob for Probe {
        const QUEUE: QueueSettings = QueueSettings {
            job: "probe",
            queue: "probe queue",
            redis_queue: "probes",
            worker: "probe-",
            sql_heartbeat: None,
            recheck_wakes: false,
        };
    }

    /// A SQLite file in a folder of its own, opened as the server opens one; remove the
    /// folder when done.
    async fn file_database(name: &str) -> (DatabaseConnection, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("comnestor-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("jobs.db").display());
        (crate::server::connect_database(&url).await.unwrap(), dir)
    }

    #[tokio::test]
    async fn sqlite_connections_stay_synchronous_after_setup() {
        let (db, dir) = file_database("queue").await;
        JobQueue::<Probe>::in_database(&db).await.unwrap();
        let pool = db.get_sqlite_connection_pool();
        let mut held = Vec::new();
        for _ in 0..pool.size() {
            held.push(pool.acquire().await.unwrap());
        }
        for conn in &mut held {
            let row = sea_orm::sqlx::query("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            // 1 is NORMAL, what `connect_database` opens a SQLite file with; apalis's setup
            // had set 0, OFF.
            assert_eq!(row.get::<i64, _>(0), 1);
        }
        drop(held);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn finished_jobs_are_pruned_and_others_are_kept() {
        let (db, dir) = file_database("prune").await;
        let queue = JobQueue::<Probe>::in_database(&db).await.unwrap();
        queue.enqueue_many(vec![Probe, Probe, Probe]).await.unwrap();
        let pool = db.get_sqlite_connection_pool();
        // Two of the three finish.
        sea_orm::sqlx::query(
            "UPDATE Jobs SET status = 'Done' WHERE rowid IN (SELECT rowid FROM Jobs LIMIT 2)",
        )
        .execute(pool)
        .await
        .unwrap();
        assert_eq!(queue.prune_done().await.unwrap(), 2);
        assert_eq!(queue.prune_done().await.unwrap(), 0);
        let left: i64 =
            sea_orm::sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE status = 'Pending'")
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(left, 1);
        std::fs::remove_dir_all(&dir).ok();
    }
}
