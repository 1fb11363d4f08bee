//! The transactions the event log writes in, which a SQL queue in the same database can write
//! its jobs in too.
//!
//! sea-orm and apalis each open their own transactions on the pool they share, so an event and
//! its delivery job would commit separately: two commits, and on SQLite's one connection two
//! turns in the line of statements that every stage waits in. [`SqlTx`] is a transaction of
//! sqlx itself, which both can write in: the log adds the statements sea-orm builds for it,
//! and the queue adds its job insert ([`crate::queue::JobQueue::push_in`]). Either the event is
//! logged with its job, or neither is. The log's other writes (events without a job, attempt
//! records) use it as well, on every backend. The retention prune does not: it reports how
//! many events its delete removed, and a statement here reports nothing on SQLite until the
//! commit, so it keeps a sea-orm transaction.
//!
//! On SQLite the statements are not run one by one. Each would be a round trip to the
//! connection's thread, as would `BEGIN` and `COMMIT`, and the intake's next group waits for
//! all of them; so they are gathered and sent at [`SqlTx::commit`] as one command,
//! `BEGIN IMMEDIATE; …; COMMIT;`, which SQLite runs statement after statement, stopping at the
//! first that fails.

use sea_orm::sea_query::Values;
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, MySql, Postgres, Sqlite, SqlitePool, Transaction};
use sea_orm::{DatabaseConnection, DbBackend, DbErr, Statement};
use sea_query_sqlx::SqlxValues;

/// A transaction on a SQLite, Postgres or MySQL database. Dropped without [`SqlTx::commit`], it
/// rolls back: on SQLite nothing was written yet.
pub enum SqlTx {
    Sqlite(SqliteTx),
    Postgres(Transaction<'static, Postgres>),
    MySql(Transaction<'static, MySql>),
}

/// Statements for SQLite, run together at commit.
pub struct SqliteTx {
    pool: SqlitePool,
    sql: String,
    values: Vec<sea_orm::Value>,
}

impl SqlTx {
    /// Begins a transaction on `db`'s pool.
    pub async fn begin(db: &DatabaseConnection) -> Result<Self, DbErr> {
        let tx = match db.get_database_backend() {
            DbBackend::Sqlite => Self::Sqlite(SqliteTx {
                pool: db.get_sqlite_connection_pool().clone(),
                sql: String::new(),
                values: Vec::new(),
            }),
            DbBackend::Postgres => Self::Postgres(
                db.get_postgres_connection_pool()
                    .begin()
                    .await
                    .map_err(exec)?,
            ),
            DbBackend::MySql => {
                Self::MySql(db.get_mysql_connection_pool().begin().await.map_err(exec)?)
            }
            other => {
                return Err(DbErr::Custom(format!(
                    "no transactions for a {other:?} database"
                )));
            }
        };
        Ok(tx)
    }

    /// The backend to build statements for.
    pub fn backend(&self) -> DbBackend {
        match self {
            Self::Sqlite(_) => DbBackend::Sqlite,
            Self::Postgres(_) => DbBackend::Postgres,
            Self::MySql(_) => DbBackend::MySql,
        }
    }

    /// Writes with a statement built for [`SqlTx::backend`], whose result nobody reads. On
    /// Postgres and MySQL it runs now; on SQLite at [`SqlTx::commit`], where its errors are
    /// reported.
    pub async fn write(&mut self, statement: Statement) -> Result<(), DbErr> {
        match self {
            Self::Sqlite(tx) => {
                // A statement of sea-query's SQLite builder has anonymous `?` parameters, which
                // sqlx binds in order across the statements of one command.
                tx.sql.push_str(&statement.sql);
                tx.sql.push_str(";\n");
                if let Some(Values(values)) = statement.values {
                    tx.values.extend(values);
                }
            }
            Self::Postgres(tx) => execute::<Postgres>(&mut **tx, statement).await?,
            Self::MySql(tx) => execute::<MySql>(&mut **tx, statement).await?,
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), DbErr> {
        match self {
            Self::Sqlite(tx) => tx.commit().await,
            Self::Postgres(tx) => tx.commit().await.map_err(exec),
            Self::MySql(tx) => tx.commit().await.map_err(exec),
        }
    }
}

impl SqliteTx {
    async fn commit(self) -> Result<(), DbErr> {
        if self.sql.is_empty() {
            return Ok(());
        }
        let sql = format!("BEGIN IMMEDIATE;\n{}COMMIT;", self.sql);
        let mut conn = Closing::new(self.pool.acquire().await.map_err(exec)?);
        let values = SqlxValues(Values(self.values));
        let result = sqlx::query_with(sqlx::AssertSqlSafe(sql), values)
            .execute(&mut *conn.conn)
            .await;
        let Err(error) = result else {
            conn.keep();
            return Ok(());
        };
        // A statement failed and the transaction is still open; it must not be left so for the
        // connection's next user. When `BEGIN` itself failed, `ROLLBACK` fails too and the
        // connection is closed, which is as safe.
        if sqlx::query("ROLLBACK")
            .execute(&mut *conn.conn)
            .await
            .is_ok()
        {
            conn.keep();
        }
        Err(exec(error))
    }
}

/// A pooled connection that is closed, not given back, unless [`Closing::keep`] is called:
/// a command abandoned halfway (its future dropped) can leave a transaction open, and closing
/// the connection is what rolls it back.
struct Closing {
    conn: PoolConnection<Sqlite>,
    keep: bool,
}

impl Closing {
    fn new(conn: PoolConnection<Sqlite>) -> Self {
        Self { conn, keep: false }
    }

    /// The connection is in autocommit again; it goes back to the pool when dropped.
    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        if !self.keep {
            self.conn.close_on_drop();
        }
    }
}

/// Runs `statement` on `conn` now.
async fn execute<DB>(conn: &mut DB::Connection, statement: Statement) -> Result<(), DbErr>
where
    DB: sqlx::Database,
    SqlxValues: for<'q> sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    let values = SqlxValues(statement.values.unwrap_or(Values(Vec::new())));
    sqlx::query_with(sqlx::AssertSqlSafe(statement.sql), values)
        .execute(conn)
        .await
        .map_err(exec)?;
    Ok(())
}

fn exec(error: sqlx::Error) -> DbErr {
    DbErr::Exec(sea_orm::RuntimeErr::SqlxError(error.into()))
}

#[cfg(test)]
mod tests {
    use sea_orm::sea_query::{Alias, Query};
    use sea_orm::{ConnectOptions, ConnectionTrait, Database};

    use super::*;

    /// A SQLite file with two tables, on a pool of one connection as the server opens it, and
    /// a second pool on the same file to look from outside.
    async fn databases(name: &str) -> (DatabaseConnection, DatabaseConnection, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("comnestor-tx-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("tx.db").display());
        let mut options = ConnectOptions::new(url.clone());
        options.sqlx_logging(false);
        crate::sqlite::tune_file(&mut options);
        let db = Database::connect(options).await.unwrap();
        for table in ["a", "b"] {
            db.execute_unprepared(&format!(
                "CREATE TABLE {table} (id INTEGER PRIMARY KEY, label TEXT NOT NULL)"
            ))
            .await
            .unwrap();
        }
        let outside = Database::connect(url).await.unwrap();
        (db, outside, dir)
    }

    fn insert(table: &str, id: i64, label: &str) -> Statement {
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new(table))
            .columns([Alias::new("id"), Alias::new("label")])
            .values_panic([id.into(), label.into()]);
        DbBackend::Sqlite.build(&insert)
    }

    async fn rows(db: &DatabaseConnection, table: &str) -> Vec<(i64, String)> {
        let sql = format!("SELECT id, label FROM {table} ORDER BY id");
        db.query_all_raw(Statement::from_string(DbBackend::Sqlite, sql))
            .await
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row.try_get_by_index(0).unwrap(),
                    row.try_get_by_index(1).unwrap(),
                )
            })
            .collect()
    }

    /// What the pool's connection writes next is committed at once, as seen from another
    /// connection: it is not left inside an open transaction.
    async fn assert_out_of_transaction(db: &DatabaseConnection, outside: &DatabaseConnection) {
        db.execute_unprepared("INSERT INTO b (id, label) VALUES (99, 'after')")
            .await
            .unwrap();
        assert_eq!(rows(outside, "b").await, [(99, "after".into())]);
    }

    #[tokio::test]
    async fn sqlite_statements_commit_together_with_their_own_values() {
        let (db, outside, dir) = databases("commit").await;
        let mut tx = SqlTx::begin(&db).await.unwrap();
        tx.write(insert("a", 1, "first")).await.unwrap();
        tx.write(insert("b", 7, "second")).await.unwrap();
        tx.write(insert("a", 2, "third")).await.unwrap();
        assert!(
            rows(&outside, "a").await.is_empty(),
            "nothing is written before the commit"
        );
        tx.commit().await.unwrap();
        assert_eq!(
            rows(&outside, "a").await,
            [(1, "first".into()), (2, "third".into())]
        );
        assert_eq!(rows(&outside, "b").await, [(7, "second".into())]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_failed_sqlite_statement_undoes_the_others_and_frees_the_connection() {
        let (db, outside, dir) = databases("rollback").await;
        let mut tx = SqlTx::begin(&db).await.unwrap();
        tx.write(insert("a", 1, "kept")).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = SqlTx::begin(&db).await.unwrap();
        tx.write(insert("b", 1, "undone")).await.unwrap();
        // The same key again: this statement fails.
        tx.write(insert("a", 1, "duplicate")).await.unwrap();
        assert!(tx.commit().await.is_err());
        assert!(rows(&outside, "b").await.is_empty());

        // The connection is out of the failed transaction.
        assert_out_of_transaction(&db, &outside).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn an_abandoned_sqlite_commit_writes_all_or_nothing_and_frees_the_connection() {
        let (db, outside, dir) = databases("abandoned").await;
        let mut tx = SqlTx::begin(&db).await.unwrap();
        for id in 0..200 {
            tx.write(insert("a", id, "maybe")).await.unwrap();
        }
        // Polled once, then dropped while the command is on its way.
        let abandoned = tokio::time::timeout(std::time::Duration::ZERO, tx.commit()).await;
        assert!(abandoned.is_err(), "the commit was still running");
        assert_out_of_transaction(&db, &outside).await;
        let written = rows(&outside, "a").await.len();
        assert!(written == 0 || written == 200, "{written} of 200 rows");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn an_empty_sqlite_transaction_commits_nothing() {
        let (db, _outside, dir) = databases("empty").await;
        let tx = SqlTx::begin(&db).await.unwrap();
        tx.commit().await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
