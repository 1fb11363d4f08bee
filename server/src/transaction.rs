//! One transaction for rows of the event log and jobs of a SQL queue in the same database.
//!
//! sea-orm and apalis each open their own transactions on the pool they share, so an event and
//! its delivery job would commit separately: two commits, and on SQLite's one connection two
//! turns in the line of statements that every stage waits in. [`SqlTx`] is a transaction of
//! sqlx itself, which both can write in: the log executes the statements sea-orm builds for it,
//! and the queue runs apalis's own insert ([`crate::queue::JobQueue::push_in`]). Either the
//! event is logged with its job, or neither is.

use sea_orm::sea_query::Values;
use sea_orm::sqlx::{self, Postgres, Sqlite, Transaction};
use sea_orm::{DatabaseConnection, DbBackend, DbErr, Statement};
use sea_query_sqlx::SqlxValues;

/// A transaction on a SQLite or Postgres database. Dropped without [`SqlTx::commit`], it rolls
/// back.
pub enum SqlTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl SqlTx {
    /// Begins a transaction on `db`'s pool; `None` for a backend apalis keeps no queue in
    /// (MySQL).
    pub async fn begin(db: &DatabaseConnection) -> Result<Option<Self>, DbErr> {
        let tx = match db.get_database_backend() {
            DbBackend::Sqlite => Self::Sqlite(
                db.get_sqlite_connection_pool()
                    .begin()
                    .await
                    .map_err(exec)?,
            ),
            DbBackend::Postgres => Self::Postgres(
                db.get_postgres_connection_pool()
                    .begin()
                    .await
                    .map_err(exec)?,
            ),
            _ => return Ok(None),
        };
        Ok(Some(tx))
    }

    /// The backend to build statements for.
    pub fn backend(&self) -> DbBackend {
        match self {
            Self::Sqlite(_) => DbBackend::Sqlite,
            Self::Postgres(_) => DbBackend::Postgres,
        }
    }

    /// Runs a statement built for [`SqlTx::backend`]; returns the rows it changed.
    pub async fn execute(&mut self, statement: Statement) -> Result<u64, DbErr> {
        let values = SqlxValues(statement.values.unwrap_or(Values(Vec::new())));
        let sql = sqlx::AssertSqlSafe(statement.sql);
        let changed = match self {
            Self::Sqlite(tx) => sqlx::query_with(sql, values)
                .execute(&mut **tx)
                .await
                .map_err(exec)?
                .rows_affected(),
            Self::Postgres(tx) => sqlx::query_with(sql, values)
                .execute(&mut **tx)
                .await
                .map_err(exec)?
                .rows_affected(),
        };
        Ok(changed)
    }

    pub async fn commit(self) -> Result<(), DbErr> {
        match self {
            Self::Sqlite(tx) => tx.commit().await,
            Self::Postgres(tx) => tx.commit().await,
        }
        .map_err(exec)
    }
}

fn exec(error: sqlx::Error) -> DbErr {
    DbErr::Exec(sea_orm::RuntimeErr::SqlxError(error.into()))
}
