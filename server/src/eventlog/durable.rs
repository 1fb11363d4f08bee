//! Making an accepted event survive a power cut on SQLite without a disk sync for every commit.
//!
//! The embedded default keeps the event log and both job queues in one SQLite file, in WAL
//! mode, on one connection. With `synchronous = FULL` every commit waits for its own sync of the
//! WAL (about 0.4 ms on this project's machines), and an event costs seven commits between
//! intake and delivery; that capped the pipeline near 250 events/s. Only one of those commits
//! must be durable before anyone is told about it: the log insert, which the intake's `202`
//! promises. Queue and bookkeeping writes that a power cut takes back are redone by the sweeper
//! (an event still `accepted` or `queued` is queued again), so the worst they cost is a repeated
//! delivery, which at-least-once delivery allows.
//!
//! So the connection runs `synchronous = NORMAL` (in WAL mode: no sync at commit, a sync before
//! and after each checkpoint, never a corrupt file), and after a log insert commits,
//! [`WalSync::after_commit`] syncs the WAL file itself, which is what `FULL` would have done for
//! that commit. Inserts that commit while a sync runs share the next one, so under load one
//! sync covers many events (group commit).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

/// Syncs the WAL of one SQLite database after durable commits, sharing syncs between
/// commits that finish close together.
#[derive(Debug)]
pub struct WalSync {
    wal: PathBuf,
    /// Commits announced so far, numbered from 1.
    committed: AtomicU64,
    /// The highest commit number known to be on disk; held while a sync runs.
    synced: tokio::sync::Mutex<u64>,
}

impl WalSync {
    /// The WAL syncer `db` needs: one when it is a SQLite file in WAL mode whose connection does
    /// not already sync every commit; none for other databases, in-memory SQLite, rollback
    /// journals, or `synchronous = FULL`, where each commit is durable by itself.
    pub async fn for_database(db: &DatabaseConnection) -> Result<Option<Arc<Self>>, DbErr> {
        if db.get_database_backend() != DbBackend::Sqlite {
            return Ok(None);
        }
        let journal = pragma(db, "journal_mode").await?;
        let synchronous = pragma(db, "synchronous").await?;
        // 2 is FULL, 3 EXTRA.
        if !journal.eq_ignore_ascii_case("wal") || synchronous.parse::<u8>().unwrap_or(2) >= 2 {
            return Ok(None);
        }
        let options = db.get_sqlite_connection_pool().connect_options();
        let mut wal = options.get_filename().as_os_str().to_owned();
        wal.push("-wal");
        Ok(Some(Arc::new(Self {
            wal: PathBuf::from(wal),
            committed: AtomicU64::new(0),
            synced: tokio::sync::Mutex::new(0),
        })))
    }

    /// Returns once the commit that just finished on this database is on disk.
    ///
    /// Call it after the commit returns: a sync started after that covers it. The WAL is opened
    /// afresh for each sync, because SQLite may delete and recreate it; when it is missing, a
    /// checkpoint has already copied (and synced) its content into the database file.
    pub async fn after_commit(&self) -> Result<(), DbErr> {
        let mine = self.committed.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock().await;
        if *synced >= mine {
            return Ok(());
        }
        // Every commit numbered up to here had finished before this load, so this sync
        // covers them all.
        let upto = self.committed.load(Ordering::SeqCst);
        let wal = self.wal.clone();
        let result = tokio::task::spawn_blocking(move || match std::fs::File::open(&wal) {
            Ok(file) => file.sync_data(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        })
        .await;
        match result {
            Ok(Ok(())) => {
                *synced = upto;
                Ok(())
            }
            Ok(Err(error)) => Err(DbErr::Custom(format!(
                "cannot sync {}: {error}",
                self.wal.display()
            ))),
            Err(error) => Err(DbErr::Custom(format!("WAL sync task failed: {error}"))),
        }
    }
}

async fn pragma(db: &DatabaseConnection, name: &str) -> Result<String, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            format!("PRAGMA {name}"),
        ))
        .await?
        .ok_or_else(|| DbErr::Custom(format!("PRAGMA {name} returned no row")))?;
    // journal_mode is text, synchronous an integer.
    row.try_get_by_index::<String>(0)
        .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
        .map_err(|e| DbErr::Custom(format!("PRAGMA {name}: {e}")))
}
