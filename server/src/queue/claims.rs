//! Jobs this process's worker claims as they are written, on SQLite.
//!
//! On the embedded default every statement waits its turn on SQLite's one connection, and a job
//! queued the usual way costs three more turns before it runs: the worker's fetch, its lock,
//! and its acknowledgement. When the process that writes a job also runs the queue's worker,
//! it writes the job already locked by that worker (`Queued`, `lock_by` the worker's name,
//! exactly as apalis's fetch leaves a job it took) and hands it to the worker in memory once
//! the transaction commits. The job is as durable as any other: if the process dies first, the
//! worker stops sending heartbeats, and the next process's worker puts the job back to
//! `Pending` as it does with every job of a dead worker, then runs it. Acknowledgements are
//! written in groups.
//!
//! A job is claimed only while the worker is registered in apalis's `Workers` table (the
//! `lock_by` column refers to it) and has room: at most [`CLAIM_CAPACITY`] claimed jobs wait or
//! run at once; beyond that, jobs are written `Pending` and fetched as usual.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::{self, SqlitePool};
use tokio::sync::{Semaphore, mpsc, watch};

use super::jobs::JobHandler;
use crate::batch::Batcher;

/// Claimed jobs waiting for the worker or running, at most.
pub const CLAIM_CAPACITY: usize = 1024;

/// Most acknowledgements written in one statement.
const ACK_BATCH: usize = 256;

/// How long acknowledgements gather before they are written. Nothing waits for one (a job lost
/// unacknowledged in a crash runs again, which at-least-once delivery allows), and each write is
/// a turn on the connection the intake waits for: at 1,000 events/s this makes about 20 writes
/// a second instead of one per group of deliveries.
const ACK_LINGER: Duration = Duration::from_millis(50);

/// A job written locked by this process's worker, with its apalis id.
pub struct Claimed<J> {
    pub id: String,
    pub job: J,
}

/// Where a writer sends the jobs it claimed: the worker's name, to lock them with, and a slot
/// reserved in the worker's line for each.
pub struct Claimer<J> {
    pub worker: String,
    line: mpsc::Sender<Claimed<J>>,
}

impl<J> Clone for Claimer<J> {
    fn clone(&self) -> Self {
        Self {
            worker: self.worker.clone(),
            line: self.line.clone(),
        }
    }
}

impl<J: Send + 'static> Claimer<J> {
    /// Reserves a place in the worker's line for each of `n` jobs, or none when the line lacks
    /// room for all.
    pub fn reserve(&self, n: usize) -> Option<Vec<mpsc::OwnedPermit<Claimed<J>>>> {
        let mut permits = Vec::with_capacity(n);
        for _ in 0..n {
            permits.push(self.line.clone().try_reserve_owned().ok()?);
        }
        Some(permits)
    }
}

/// Runs claimed jobs, each holding a permit of `running` (shared with the jobs the worker
/// fetches), and acknowledges them in groups, until `stop` turns true and the line is empty.
/// Claims start once `worker` appears in apalis's `Workers` table and end when `stop` turns
/// true; `slot` holds the claimer meanwhile.
pub async fn run<J, H>(
    pool: SqlitePool,
    worker: String,
    slot: Arc<std::sync::RwLock<Option<Claimer<J>>>>,
    handler: Arc<H>,
    running: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) where
    J: Send + 'static,
    H: JobHandler<J>,
{
    let (line, mut claimed) = mpsc::channel::<Claimed<J>>(CLAIM_CAPACITY);
    // apalis registers its worker when it first runs; a job locked by a worker that is not in
    // `Workers` would break the table's foreign key.
    loop {
        if *stop.borrow() {
            return;
        }
        let registered: Result<Option<i64>, _> =
            sqlx::query_scalar("SELECT 1 FROM Workers WHERE id = ?1")
                .bind(&worker)
                .fetch_optional(&pool)
                .await;
        if let Ok(Some(_)) = registered {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            changed = stop.changed() => if changed.is_err() {
                return;
            },
        }
    }
    *slot.write().unwrap_or_else(|e| e.into_inner()) = Some(Claimer {
        worker: worker.clone(),
        line,
    });
    let acks = {
        let (pool, worker) = (pool.clone(), worker.clone());
        Batcher::spawn_lingering(ACK_BATCH, ACK_LINGER, move |ids: Vec<String>| {
            let (pool, worker) = (pool.clone(), worker.clone());
            async move {
                if let Err(error) = acknowledge(&pool, &worker, &ids).await {
                    // The jobs stay locked by this worker: after a restart they run again,
                    // which at-least-once delivery allows.
                    tracing::warn!(%error, jobs = ids.len(), "cannot acknowledge claimed jobs");
                }
                vec![(); ids.len()]
            }
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let next = tokio::select! {
            next = claimed.recv() => next,
            () = stopped(&mut stop) => {
                // No more claims; run what is already in line.
                slot.write().unwrap_or_else(|e| e.into_inner()).take();
                claimed.close();
                claimed.recv().await
            }
        };
        let Some(Claimed { id, job }) = next else {
            break;
        };
        let Ok(permit) = running.clone().acquire_owned().await else {
            break;
        };
        let (handler, acks) = (handler.clone(), acks.clone());
        tasks.spawn(async move {
            handler.handle(job).await;
            acks.send(id).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    slot.write().unwrap_or_else(|e| e.into_inner()).take();
    while tasks.join_next().await.is_some() {}
    // Groups are written in order: once this empty one is, every acknowledgement is.
    acks.submit(String::new()).await;
}

/// Returns once `stop` is true, holding no borrow of it.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Marks claimed jobs done, as apalis's acknowledgement does for the jobs it fetched.
async fn acknowledge(pool: &SqlitePool, worker: &str, ids: &[String]) -> Result<(), sqlx::Error> {
    let ids = serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "UPDATE Jobs SET status = 'Done', attempts = attempts + 1, done_at = strftime('%s', 'now'), \
         last_result = '{\"Ok\":null}' \
         WHERE id IN (SELECT value FROM json_each(?1)) AND lock_by = ?2",
    )
    .bind(ids)
    .bind(worker)
    .execute(pool)
    .await?;
    Ok(())
}
