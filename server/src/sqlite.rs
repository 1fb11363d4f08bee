//! How the embedded default opens its SQLite file.
//!
//! - One connection. SQLite lets one connection write at a time, and in WAL mode every write by
//!   one connection empties the page cache of the others; measured here, four connections
//!   delivered no more than one and answered intake requests more slowly.
//! - WAL mode, so that readers never wait for the writer, with `synchronous = NORMAL`: see
//!   [`crate::eventlog::WalSync`] for why accepted events stay durable.
//! - Checkpoints off that connection. A checkpoint copies the WAL back into the database file
//!   and syncs both, which took the one connection away from intake and delivery for
//!   milliseconds at a time; [`run_checkpointer`] runs them on a connection of its own, in the
//!   `PASSIVE` mode that never waits for, or blocks, the writer. The main connection checkpoints
//!   by itself only if the WAL reaches [`WAL_SAFETY_PAGES`], should the checkpointer fall behind.
//! - No ping before each use. sqlx pings a pooled connection when it is taken from the pool (and
//!   again when it is given back), which on SQLite is a round trip to the connection's thread
//!   for a file that cannot hang up; each of the pipeline's transactions paid it.
//! - A busy handler that waits for a lock in microseconds. sqlx installs
//!   `sqlite3_busy_timeout`, whose handler sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries,
//!   which a second process on the file (the CLI changing an app) would otherwise cost the
//!   server's writers.

use std::ffi::c_int;
use std::time::Duration;

use futures::FutureExt;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::sqlx::{ConnectOptions as _, Connection as _};
use sea_orm::{ConnectOptions, DatabaseConnection, DbBackend};
use tokio::sync::watch;

/// How long a statement waits for a lock before it fails with `SQLITE_BUSY`, as sqlx's
/// default timeout does.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// WAL pages (4 KiB each) after which the main connection checkpoints by itself.
const WAL_SAFETY_PAGES: u32 = 20_000;

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Sets up `options` for a SQLite file, as the module describes.
pub fn tune_file(options: &mut ConnectOptions) {
    options
        .max_connections(1)
        .test_before_acquire(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .pragma("wal_autocheckpoint", WAL_SAFETY_PAGES.to_string())
        })
        .map_sqlx_sqlite_pool_opts(|pool| {
            pool.after_connect(|conn, _| {
                async move {
                    let mut handle = conn.lock_handle().await?;
                    install_busy_handler(handle.as_raw_handle())
                }
                .boxed()
            })
        });
}

fn install_busy_handler(
    db: std::ptr::NonNull<libsqlite3_sys::sqlite3>,
) -> Result<(), sea_orm::sqlx::Error> {
    // SAFETY: `db` is an open connection handle, locked by the caller for the call; the
    // handler touches no state and replaces the one sqlx installed.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_busy_handler(db.as_ptr(), Some(busy_handler), std::ptr::null_mut())
    };
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(sea_orm::sqlx::Error::Protocol(format!(
            "cannot install the SQLite busy handler (code {rc})"
        )));
    }
    Ok(())
}

/// Checkpoints `db`'s WAL every [`CHECKPOINT_EVERY`] on a connection of its own, until `stop`
/// turns true. Does nothing for other databases, or SQLite not in WAL mode.
pub async fn run_checkpointer(db: DatabaseConnection, stop: watch::Receiver<bool>) {
    if db.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    let options: SqliteConnectOptions =
        (*db.get_sqlite_connection_pool().connect_options()).clone();
    let mut conn = match options.connect().await {
        Ok(conn) => conn,
        Err(error) => {
            return tracing::warn!(%error, "cannot open the checkpoint connection; the main connection checkpoints by itself");
        }
    };
    let journal: Result<String, _> = sea_orm::sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await;
    if !journal.is_ok_and(|mode| mode.eq_ignore_ascii_case("wal")) {
        return;
    }
    if let Ok(mut handle) = conn.lock_handle().await
        && let Err(error) = install_busy_handler(handle.as_raw_handle())
    {
        tracing::warn!(%error, "checkpoints will wait for locks in milliseconds");
    }
    let mut every = crate::periodic::Every::new(CHECKPOINT_EVERY, stop);
    while every.tick().await {
        if let Err(error) = sea_orm::sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            tracing::warn!(%error, "WAL checkpoint failed");
        }
    }
    let _ = conn.close().await;
}

/// Tries after which [`busy_wait`] stays at its longest.
const BUSY_RAMP: u32 = 6;

/// The wait before try `n` (from 0) for a lock another connection holds: 20 µs doubling to
/// 1 ms, then 1 ms at a time.
fn busy_wait(n: u32) -> Duration {
    Duration::from_micros((20u64 << n.min(BUSY_RAMP)).min(1000))
}

/// The waits before tries 0 to `tries` − 1 together, without summing them one by one.
fn busy_waited(tries: u32) -> Duration {
    let ramp: Duration = (0..tries.min(BUSY_RAMP)).map(busy_wait).sum();
    ramp + busy_wait(BUSY_RAMP) * tries.saturating_sub(BUSY_RAMP)
}

/// Tries again after [`busy_wait`] until [`BUSY_TIMEOUT`] has passed. It runs on the
/// connection's own sqlx thread, so the sleep blocks no async task.
extern "C" fn busy_handler(_: *mut std::ffi::c_void, tries: c_int) -> c_int {
    let tries = tries.max(0) as u32;
    let waited = busy_waited(tries);
    if waited >= BUSY_TIMEOUT {
        return 0;
    }
    std::thread::sleep(busy_wait(tries));
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_then_stay_at_a_millisecond_and_stop_after_the_timeout() {
        assert_eq!(busy_wait(0), Duration::from_micros(20));
        assert_eq!(busy_wait(1), Duration::from_micros(40));
        assert_eq!(busy_wait(5), Duration::from_micros(640));
        assert_eq!(busy_wait(6), Duration::from_millis(1));
        assert_eq!(busy_wait(60), Duration::from_millis(1));
        let tries_until_timeout = (0..)
            .scan(Duration::ZERO, |waited, n| {
                *waited += busy_wait(n);
                Some(*waited)
            })
            .take_while(|w| *w < BUSY_TIMEOUT)
            .count();
        assert!((4990..5010).contains(&tries_until_timeout));
        for tries in [0, 1, 5, 6, 7, 100, 4999] {
            assert_eq!(
                busy_waited(tries),
                (0..tries).map(busy_wait).sum::<Duration>()
            );
        }
    }
}
