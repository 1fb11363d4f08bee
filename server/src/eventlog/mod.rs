//! Stage 2, the event log: every accepted event is written here before the intake answers,
//! and each later stage stamps its time on the record.
//!
//! Statuses move `accepted` → `queued` → (`retrying` →)* `delivered` or `dead`. An event that
//! stays `accepted` (the process died between logging and queueing) is picked up by the
//! sweeper and queued again.

mod durable;
mod entities;

use std::collections::BTreeMap;
use std::sync::Arc;

use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Set, Statement, TransactionTrait,
};
use serde::Serialize;

pub use durable::WalSync;
pub use entities::attempt::Model as AttemptRecord;
use entities::{attempt, event, event_channel};

use crate::apps::now_millis;
use crate::transaction::SqlTx;

/// Where an event is on its way to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, poem_openapi::Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum EventStatus {
    /// Logged; not yet handed to the queue.
    Accepted,
    /// A delivery job is queued.
    Queued,
    /// A delivery attempt failed; another is scheduled.
    Retrying,
    /// The WebSocket server acknowledged it.
    Delivered,
    /// Every attempt failed.
    Dead,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Queued => "queued",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Accepted,
            Self::Queued,
            Self::Retrying,
            Self::Delivered,
            Self::Dead,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub id: String,
    pub app_id: String,
    pub channels: Vec<String>,
    pub event: String,
    pub data: String,
    pub socket_id: Option<String>,
    pub status: EventStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub replay_of: Option<String>,
    pub received_at: i64,
    pub logged_at: i64,
    pub queued_at: Option<i64>,
    pub sent_at: Option<i64>,
    pub acknowledged_at: Option<i64>,
}

/// What the intake hands to the log.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub app_id: String,
    pub channels: Vec<String>,
    pub event: String,
    pub data: String,
    pub socket_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub replay_of: Option<String>,
    pub received_at: i64,
}

/// Filters of [`EventLog::list`].
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub channel: Option<String>,
    pub event: Option<String>,
    pub status: Option<EventStatus>,
    /// Unix ms, inclusive.
    pub from: Option<i64>,
    /// Unix ms, exclusive.
    pub to: Option<i64>,
    /// Only events with a greater id (ids sort by time).
    pub after: Option<String>,
    pub limit: u64,
}

/// Reads and writes the event log.
#[derive(Debug, Clone)]
pub struct EventLog {
    db: DatabaseConnection,
    /// Makes inserts durable on SQLite, whose connection does not sync every commit.
    wal: Option<Arc<WalSync>>,
}

/// A new event id: a ULID, so ids sort by creation time.
pub fn new_event_id() -> String {
    ulid::Ulid::generate().to_string().to_ascii_lowercase()
}

/// The log's records of new events, logged now with `status`; a `queued` event was queued at
/// the same time.
fn new_records(news: Vec<NewEvent>, status: EventStatus) -> Vec<LoggedEvent> {
    let logged_at = now_millis();
    let queued_at = (status == EventStatus::Queued).then_some(logged_at);
    news.into_iter()
        .map(|new| LoggedEvent {
            id: new_event_id(),
            app_id: new.app_id,
            channels: new.channels,
            event: new.event,
            data: new.data,
            socket_id: new.socket_id,
            status,
            attempts: 0,
            last_error: None,
            idempotency_key: new.idempotency_key,
            request_hash: new.request_hash,
            replay_of: new.replay_of,
            received_at: new.received_at,
            logged_at,
            queued_at,
            sent_at: None,
            acknowledged_at: None,
        })
        .collect()
}

/// The two inserts that log `events` (not empty): their rows, then their channels. Nothing is
/// read back, since the rows are known. At most 64 events of 17 columns per statement stay well
/// under every backend's limit on bound parameters; callers batch fewer.
fn insert_statements(events: &[LoggedEvent], backend: DbBackend) -> [Statement; 2] {
    let rows = events.iter().map(|e| event::ActiveModel {
        id: Set(e.id.clone()),
        app_id: Set(e.app_id.clone()),
        event: Set(e.event.clone()),
        size: Set(e.data.len() as i32),
        data: Set(e.data.clone()),
        socket_id: Set(e.socket_id.clone()),
        status: Set(e.status.as_str().to_owned()),
        attempts: Set(0),
        last_error: Set(None),
        idempotency_key: Set(e.idempotency_key.clone()),
        request_hash: Set(e.request_hash.clone()),
        replay_of: Set(e.replay_of.clone()),
        received_at: Set(e.received_at),
        logged_at: Set(e.logged_at),
        queued_at: Set(e.queued_at),
        sent_at: Set(None),
        acknowledged_at: Set(None),
    });
    let channels = events.iter().flat_map(|e| {
        e.channels.iter().map(|channel| event_channel::ActiveModel {
            event_id: Set(e.id.clone()),
            app_id: Set(e.app_id.clone()),
            channel: Set(channel.clone()),
        })
    });
    [
        event::Entity::insert_many(rows).build(backend),
        event_channel::Entity::insert_many(channels).build(backend),
    ]
}

impl EventLog {
    /// The log in `db`, syncing SQLite's WAL after inserts when its connection does not.
    pub async fn open(db: DatabaseConnection) -> Result<Self, DbErr> {
        let wal = WalSync::for_database(&db).await?;
        Ok(Self { db, wal })
    }

    /// Writes an event and its channels in one transaction, with status `accepted`, and
    /// returns once that is on disk.
    pub async fn insert(&self, new: NewEvent) -> Result<LoggedEvent, DbErr> {
        let mut events = self.insert_many(vec![new]).await?;
        events
            .pop()
            .ok_or_else(|| DbErr::Custom("insert wrote no event".into()))
    }

    /// Writes events and their channels in one transaction, with status `accepted`, and
    /// returns once that is on disk. All or none: one failing row (a repeated idempotency
    /// key) fails them all.
    pub async fn insert_many(&self, news: Vec<NewEvent>) -> Result<Vec<LoggedEvent>, DbErr> {
        if news.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = SqlTx::begin(&self.db).await?;
        let events = self.insert_in(&mut tx, news, EventStatus::Accepted).await?;
        tx.commit().await?;
        self.make_durable().await?;
        Ok(events)
    }

    /// Writes events and their channels in `tx`, with status `queued`: the caller queues
    /// their jobs in the same transaction, commits it, then calls [`EventLog::make_durable`].
    /// `tx` must be on this log's database.
    pub async fn insert_queued_in(
        &self,
        tx: &mut SqlTx,
        news: Vec<NewEvent>,
    ) -> Result<Vec<LoggedEvent>, DbErr> {
        self.insert_in(tx, news, EventStatus::Queued).await
    }

    async fn insert_in(
        &self,
        tx: &mut SqlTx,
        news: Vec<NewEvent>,
        status: EventStatus,
    ) -> Result<Vec<LoggedEvent>, DbErr> {
        let events = new_records(news, status);
        if events.is_empty() {
            return Ok(events);
        }
        for statement in insert_statements(&events, tx.backend()) {
            tx.write(statement).await?;
        }
        Ok(events)
    }

    /// Returns once every insert committed so far is on disk. Only SQLite, whose connection
    /// does not sync each commit, has anything to do.
    pub async fn make_durable(&self) -> Result<(), DbErr> {
        match &self.wal {
            Some(wal) => wal.after_commit().await,
            None => Ok(()),
        }
    }

    /// The event `app_id` logged under `key`, if any.
    pub async fn find_by_idempotency_key(
        &self,
        app_id: &str,
        key: &str,
    ) -> Result<Option<LoggedEvent>, DbErr> {
        let row = event::Entity::find()
            .filter(event::Column::AppId.eq(app_id))
            .filter(event::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?;
        self.with_channels(row).await
    }

    pub async fn find(&self, id: &str) -> Result<Option<LoggedEvent>, DbErr> {
        let row = event::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?;
        self.with_channels(row).await
    }

    async fn with_channels(&self, row: Option<event::Model>) -> Result<Option<LoggedEvent>, DbErr> {
        let Some(row) = row else {
            return Ok(None);
        };
        let mut events = self.attach_channels(vec![row]).await?;
        Ok(events.pop())
    }

    async fn attach_channels(&self, rows: Vec<event::Model>) -> Result<Vec<LoggedEvent>, DbErr> {
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut channels: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for chunk in ids.chunks(500) {
            let found = event_channel::Entity::find()
                .filter(event_channel::Column::EventId.is_in(chunk.to_vec()))
                .all(&self.db)
                .await?;
            for row in found {
                channels.entry(row.event_id).or_default().push(row.channel);
            }
        }
        Ok(rows
            .into_iter()
            .map(|row| {
                let channels = channels.remove(&row.id).unwrap_or_default();
                logged(row, channels)
            })
            .collect())
    }

    /// Events of `app_id` matching `filter`, oldest first.
    pub async fn list(
        &self,
        app_id: &str,
        filter: &EventFilter,
    ) -> Result<Vec<LoggedEvent>, DbErr> {
        let mut query = event::Entity::find().filter(event::Column::AppId.eq(app_id));
        if let Some(channel) = &filter.channel {
            let ids = Query::select()
                .column(event_channel::Column::EventId)
                .from(event_channel::Entity)
                .and_where(event_channel::Column::AppId.eq(app_id))
                .and_where(event_channel::Column::Channel.eq(channel.as_str()))
                .to_owned();
            query = query.filter(event::Column::Id.in_subquery(ids));
        }
        if let Some(name) = &filter.event {
            query = query.filter(event::Column::Event.eq(name.as_str()));
        }
        if let Some(status) = filter.status {
            query = query.filter(event::Column::Status.eq(status.as_str()));
        }
        if let Some(from) = filter.from {
            query = query.filter(event::Column::ReceivedAt.gte(from));
        }
        if let Some(to) = filter.to {
            query = query.filter(event::Column::ReceivedAt.lt(to));
        }
        if let Some(after) = &filter.after {
            query = query.filter(event::Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(event::Column::Id)
            .limit(filter.limit)
            .all(&self.db)
            .await?;
        self.attach_channels(rows).await
    }

    /// Delivery attempts of an event, oldest first.
    pub async fn attempts(&self, event_id: &str) -> Result<Vec<AttemptRecord>, DbErr> {
        attempt::Entity::find()
            .filter(attempt::Column::EventId.eq(event_id))
            .order_by_asc(attempt::Column::Id)
            .all(&self.db)
            .await
    }

    /// Marks an event queued.
    pub async fn mark_queued(&self, id: &str) -> Result<i64, DbErr> {
        self.mark_queued_many(&[id.to_owned()]).await
    }

    /// Marks events queued, in one statement; returns the time it recorded.
    pub async fn mark_queued_many(&self, ids: &[String]) -> Result<i64, DbErr> {
        let now = now_millis();
        let row = event::ActiveModel {
            status: Set(EventStatus::Queued.as_str().to_owned()),
            queued_at: Set(Some(now)),
            ..Default::default()
        };
        event::Entity::update_many()
            .set(row)
            .filter(event::Column::Id.is_in(ids.iter().map(String::as_str)))
            .exec(&self.db)
            .await?;
        Ok(now)
    }

    /// Records an attempt's outcome and the event's new status.
    pub async fn record_attempt(
        &self,
        id: &str,
        outcome: AttemptOutcome,
        status: EventStatus,
    ) -> Result<(), DbErr> {
        self.record_attempts(&[AttemptRecordNew {
            event_id: id.to_owned(),
            outcome,
            status,
        }])
        .await
    }

    /// Records attempts' outcomes and their events' new statuses (attempt count, time sent,
    /// last error, and the time acknowledged for a delivered one), in one transaction.
    pub async fn record_attempts(&self, records: &[AttemptRecordNew]) -> Result<(), DbErr> {
        if records.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = records
            .iter()
            .map(|r| attempt::ActiveModel {
                event_id: Set(r.event_id.clone()),
                attempt: Set(r.outcome.attempt),
                started_at: Set(r.outcome.started_at),
                duration_ms: Set(r.outcome.duration_ms),
                status_code: Set(r.outcome.status_code),
                error: Set(r.outcome.error.clone()),
                ..Default::default()
            })
            .collect();
        // One UPDATE for the whole group, each column chosen per row by id.
        let per_row = |column: event::Column, value: &dyn Fn(&AttemptRecordNew) -> Option<Expr>| {
            let mut case = CaseStatement::new();
            let mut arms = 0;
            for record in records {
                if let Some(value) = value(record) {
                    case = case.case(event::Column::Id.eq(record.event_id.as_str()), value);
                    arms += 1;
                }
            }
            // `CASE ELSE x END` is not SQL: with no row to change, the column keeps its value.
            if arms == 0 {
                return Expr::col(column);
            }
            Expr::Case(Box::new(case.finally(Expr::col(column))))
        };
        let update = event::Entity::update_many()
            .col_expr(
                event::Column::Status,
                per_row(event::Column::Status, &|r| {
                    Some(Expr::val(r.status.as_str()))
                }),
            )
            .col_expr(
                event::Column::Attempts,
                per_row(event::Column::Attempts, &|r| {
                    Some(Expr::val(r.outcome.attempt))
                }),
            )
            .col_expr(
                event::Column::SentAt,
                per_row(event::Column::SentAt, &|r| {
                    Some(Expr::val(r.outcome.started_at))
                }),
            )
            .col_expr(
                event::Column::LastError,
                per_row(event::Column::LastError, &|r| {
                    Some(Expr::val(r.outcome.error.clone()))
                }),
            )
            .col_expr(
                event::Column::AcknowledgedAt,
                // When the target answered, not when the record is written.
                per_row(event::Column::AcknowledgedAt, &|r| {
                    (r.status == EventStatus::Delivered)
                        .then(|| Expr::val(r.outcome.started_at + r.outcome.duration_ms))
                }),
            )
            .filter(event::Column::Id.is_in(records.iter().map(|r| r.event_id.as_str())));
        let mut tx = SqlTx::begin(&self.db).await?;
        let backend = tx.backend();
        tx.write(attempt::Entity::insert_many(rows).build(backend))
            .await?;
        tx.write(update.build(backend)).await?;
        tx.commit().await
    }

    /// Events still `accepted` that were logged before `before` (Unix ms).
    pub async fn stuck(&self, before: i64, limit: u64) -> Result<Vec<LoggedEvent>, DbErr> {
        let rows = event::Entity::find()
            .filter(event::Column::Status.eq(EventStatus::Accepted.as_str()))
            .filter(event::Column::LoggedAt.lt(before))
            .order_by_asc(event::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        self.attach_channels(rows).await
    }

    /// Events `queued` or `retrying` with no sign of life since `before` (Unix ms): neither
    /// queued nor attempted since. Their job was lost (a failed retry push, a flushed Redis)
    /// or is far behind in a backlog.
    pub async fn stalled(&self, before: i64, limit: u64) -> Result<Vec<LoggedEvent>, DbErr> {
        let waiting = [EventStatus::Queued.as_str(), EventStatus::Retrying.as_str()];
        let rows = event::Entity::find()
            .filter(event::Column::Status.is_in(waiting))
            .filter(
                event::Column::QueuedAt
                    .is_null()
                    .or(event::Column::QueuedAt.lt(before)),
            )
            .filter(
                event::Column::SentAt
                    .is_null()
                    .or(event::Column::SentAt.lt(before)),
            )
            .order_by_asc(event::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        self.attach_channels(rows).await
    }

    /// Deletes up to `batch` events of `app_id` received before `before`; returns how many.
    pub async fn prune(&self, app_id: &str, before: i64, batch: u64) -> Result<u64, DbErr> {
        let ids: Vec<String> = event::Entity::find()
            .select_only()
            .column(event::Column::Id)
            .filter(event::Column::AppId.eq(app_id))
            .filter(event::Column::ReceivedAt.lt(before))
            .order_by_asc(event::Column::Id)
            .limit(batch)
            .into_tuple()
            .all(&self.db)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let txn = self.db.begin().await?;
        attempt::Entity::delete_many()
            .filter(attempt::Column::EventId.is_in(ids.clone()))
            .exec(&txn)
            .await?;
        event_channel::Entity::delete_many()
            .filter(event_channel::Column::EventId.is_in(ids.clone()))
            .exec(&txn)
            .await?;
        let deleted = event::Entity::delete_many()
            .filter(event::Column::Id.is_in(ids))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(deleted.rows_affected)
    }

    /// How many events `app_id` has logged.
    pub async fn count(&self, app_id: &str) -> Result<u64, DbErr> {
        event::Entity::find()
            .filter(event::Column::AppId.eq(app_id))
            .count(&self.db)
            .await
    }

    /// The database the log is in, for statements of its own and for a transaction
    /// ([`SqlTx`]) that writes other rows with the log's.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}

/// An attempt to record, with the status it leaves its event in.
#[derive(Debug, Clone)]
pub struct AttemptRecordNew {
    pub event_id: String,
    pub outcome: AttemptOutcome,
    pub status: EventStatus,
}

/// One delivery attempt's result.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub attempt: i32,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

fn logged(row: event::Model, channels: Vec<String>) -> LoggedEvent {
    LoggedEvent {
        status: EventStatus::parse(&row.status).unwrap_or(EventStatus::Accepted),
        id: row.id,
        app_id: row.app_id,
        channels,
        event: row.event,
        data: row.data,
        socket_id: row.socket_id,
        attempts: row.attempts,
        last_error: row.last_error,
        idempotency_key: row.idempotency_key,
        request_hash: row.request_hash,
        replay_of: row.replay_of,
        received_at: row.received_at,
        logged_at: row.logged_at,
        queued_at: row.queued_at,
        sent_at: row.sent_at,
        acknowledged_at: row.acknowledged_at,
    }
}
