//! Storage: the webhook endpoints of each app, the batches sent to them, and every attempt.
//!
//! Batch statuses move `queued` → (`retrying` →)* `delivered` or `dead`. A dead batch can be
//! marked `resend` by hand ([`WebhookStore::requeue`], from any process); a running server
//! claims it (`resend` → `queued`) and queues it with a fresh set of attempts.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::Serialize;

use super::WebhookEvent;
use crate::apps::now_millis;
use crate::eventlog::AttemptOutcome;

/// The event names an endpoint can ask for.
pub const EVENT_NAMES: &[&str] = &[
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

/// Headers a custom header may not replace: the ones webhook validators check.
const RESERVED_HEADERS: &[&str] = &[
    "x-pusher-key",
    "x-pusher-signature",
    "content-type",
    "content-length",
    "host",
];

/// Where one app's webhooks go, and which of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub id: String,
    pub app_id: String,
    pub url: String,
    /// Event names sent to this endpoint; empty sends every kind.
    pub events: Vec<String>,
    /// Only events on channels whose name starts with this are sent.
    pub channel_prefix: Option<String>,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
    pub created_at: i64,
}

impl Endpoint {
    /// Whether `event` passes this endpoint's filters.
    pub fn wants(&self, event: &WebhookEvent) -> bool {
        let kind = self.events.is_empty() || self.events.iter().any(|e| e == event.name());
        let prefix = self
            .channel_prefix
            .as_deref()
            .is_none_or(|p| event.channel().starts_with(p));
        kind && prefix
    }
}

/// What [`WebhookStore::add_endpoint`] needs.
#[derive(Debug, Clone, Default)]
pub struct NewEndpoint {
    pub app_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub channel_prefix: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// Where a batch is on its way to its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Queued,
    Retrying,
    Delivered,
    Dead,
    /// Dead, and asked to be sent again; a running server queues it.
    Resend,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Resend => "resend",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Retrying,
            Self::Delivered,
            Self::Dead,
            Self::Resend,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Events sent together to one endpoint in one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Batch {
    pub id: String,
    pub app_id: String,
    pub endpoint_id: String,
    /// The body's `time_ms`: when the webhook was created (or re-sent by hand).
    pub time_ms: i64,
    /// The body's `events` array, as JSON text.
    pub events: String,
    pub event_count: i32,
    pub status: BatchStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

impl Batch {
    /// The exact body that is signed and sent.
    pub fn body(&self) -> String {
        format!(
            "{{\"time_ms\":{},\"events\":{}}}",
            self.time_ms, self.events
        )
    }
}

pub use entities::attempt::Model as WebhookAttempt;

/// A rejected endpoint definition.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid webhook url `{0}`: use http:// or https://")]
    Url(String),
    #[error("unknown webhook event `{0}` (known: {known})", known = EVENT_NAMES.join(", "))]
    Event(String),
    #[error("header `{0}` is set by the server and cannot be overridden")]
    ReservedHeader(String),
    #[error("invalid header `{0}`")]
    Header(String),
    #[error("database error")]
    Database(#[from] DbErr),
}

/// Reads and writes endpoints, batches and attempts.
#[derive(Debug, Clone)]
pub struct WebhookStore {
    db: DatabaseConnection,
}

fn new_id() -> String {
    ulid::Ulid::generate().to_string().to_ascii_lowercase()
}

impl WebhookStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Checks and stores a new endpoint.
    pub async fn add_endpoint(&self, new: NewEndpoint) -> Result<Endpoint, EndpointError> {
        validate(&new)?;
        let endpoint = Endpoint {
            id: new_id(),
            app_id: new.app_id,
            url: new.url,
            events: new.events,
            channel_prefix: new.channel_prefix.filter(|p| !p.is_empty()),
            headers: new.headers,
            created_at: now_millis(),
        };
        entities::endpoint::ActiveModel {
            id: Set(endpoint.id.clone()),
            app_id: Set(endpoint.app_id.clone()),
            url: Set(endpoint.url.clone()),
            events: Set(serde_json::to_string(&endpoint.events).unwrap_or_default()),
            channel_prefix: Set(endpoint.channel_prefix.clone()),
            headers: Set(serde_json::to_string(&endpoint.headers).unwrap_or_default()),
            created_at: Set(endpoint.created_at),
        }
        .insert(&self.db)
        .await?;
        Ok(endpoint)
    }

    /// The endpoints of `app_id`, oldest first.
    pub async fn endpoints(&self, app_id: &str) -> Result<Vec<Endpoint>, DbErr> {
        let rows = entities::endpoint::Entity::find()
            .filter(entities::endpoint::Column::AppId.eq(app_id))
            .order_by_asc(entities::endpoint::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(endpoint).collect())
    }

    pub async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, DbErr> {
        let row = entities::endpoint::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?;
        Ok(row.map(endpoint))
    }

    /// Removes an endpoint of `app_id`; returns whether it existed.
    pub async fn remove_endpoint(&self, app_id: &str, id: &str) -> Result<bool, DbErr> {
        let deleted = entities::endpoint::Entity::delete_many()
            .filter(entities::endpoint::Column::AppId.eq(app_id))
            .filter(entities::endpoint::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected > 0)
    }

    /// Stores a new batch, `queued`.
    pub async fn insert_batch(
        &self,
        endpoint: &Endpoint,
        time_ms: i64,
        events: String,
        event_count: usize,
    ) -> Result<Batch, DbErr> {
        let batch = Batch {
            id: new_id(),
            app_id: endpoint.app_id.clone(),
            endpoint_id: endpoint.id.clone(),
            time_ms,
            events,
            event_count: event_count as i32,
            status: BatchStatus::Queued,
            attempts: 0,
            last_error: None,
            created_at: now_millis(),
            delivered_at: None,
        };
        entities::batch::ActiveModel {
            id: Set(batch.id.clone()),
            app_id: Set(batch.app_id.clone()),
            endpoint_id: Set(batch.endpoint_id.clone()),
            time_ms: Set(batch.time_ms),
            events: Set(batch.events.clone()),
            event_count: Set(batch.event_count),
            status: Set(batch.status.as_str().to_owned()),
            attempts: Set(0),
            last_error: Set(None),
            created_at: Set(batch.created_at),
            delivered_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok(batch)
    }

    pub async fn batch(&self, id: &str) -> Result<Option<Batch>, DbErr> {
        let row = entities::batch::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?;
        Ok(row.map(batch))
    }

    /// Batches of `app_id`, optionally with one status, oldest first.
    pub async fn batches(
        &self,
        app_id: &str,
        status: Option<BatchStatus>,
        limit: u64,
    ) -> Result<Vec<Batch>, DbErr> {
        let mut query =
            entities::batch::Entity::find().filter(entities::batch::Column::AppId.eq(app_id));
        if let Some(status) = status {
            query = query.filter(entities::batch::Column::Status.eq(status.as_str()));
        }
        let rows = query
            .order_by_asc(entities::batch::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(batch).collect())
    }

    /// Attempts to send a batch, oldest first.
    pub async fn attempts(&self, batch_id: &str) -> Result<Vec<WebhookAttempt>, DbErr> {
        entities::attempt::Entity::find()
            .filter(entities::attempt::Column::BatchId.eq(batch_id))
            .order_by_asc(entities::attempt::Column::Id)
            .all(&self.db)
            .await
    }

    /// Counts an attempt that is about to be sent; returns its number.
    pub async fn mark_sending(&self, batch: &Batch) -> Result<i32, DbErr> {
        let attempt = batch.attempts + 1;
        self.update(&batch.id, |row| row.attempts = Set(attempt))
            .await?;
        Ok(attempt)
    }

    /// Records an attempt and the batch's new status.
    pub async fn record_attempt(
        &self,
        batch_id: &str,
        outcome: AttemptOutcome,
        status: BatchStatus,
    ) -> Result<(), DbErr> {
        entities::attempt::ActiveModel {
            batch_id: Set(batch_id.to_owned()),
            attempt: Set(outcome.attempt),
            started_at: Set(outcome.started_at),
            duration_ms: Set(outcome.duration_ms),
            status_code: Set(outcome.status_code),
            error: Set(outcome.error.clone()),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        let delivered = (status == BatchStatus::Delivered).then(now_millis);
        self.update(batch_id, |row| {
            row.status = Set(status.as_str().to_owned());
            row.last_error = Set(outcome.error.clone());
            if delivered.is_some() {
                row.delivered_at = Set(delivered);
            }
        })
        .await
    }

    /// Marks a batch dead without an attempt (its endpoint or app is gone).
    pub async fn mark_dead(&self, batch_id: &str, reason: &str) -> Result<(), DbErr> {
        self.update(batch_id, |row| {
            row.status = Set(BatchStatus::Dead.as_str().to_owned());
            row.last_error = Set(Some(reason.to_owned()));
        })
        .await
    }

    /// Marks a dead batch to be sent again, with a fresh `time_ms` (validators such as the
    /// Python SDK's reject webhooks older than five minutes) and a fresh set of attempts, so
    /// attempt numbers start again at 1 in its record. Returns whether it was dead.
    pub async fn requeue(&self, batch_id: &str) -> Result<bool, DbErr> {
        let now = now_millis();
        let changed = entities::batch::Entity::update_many()
            .col_expr(
                entities::batch::Column::Status,
                Expr::value(BatchStatus::Resend.as_str()),
            )
            .col_expr(entities::batch::Column::TimeMs, Expr::value(now))
            .col_expr(entities::batch::Column::Attempts, Expr::value(0))
            .filter(entities::batch::Column::Id.eq(batch_id))
            .filter(entities::batch::Column::Status.eq(BatchStatus::Dead.as_str()))
            .exec(&self.db)
            .await?;
        Ok(changed.rows_affected == 1)
    }

    /// Takes a batch marked `resend` for this process to queue; false when another took it.
    pub async fn claim_resend(&self, batch_id: &str) -> Result<bool, DbErr> {
        let changed = entities::batch::Entity::update_many()
            .col_expr(
                entities::batch::Column::Status,
                Expr::value(BatchStatus::Queued.as_str()),
            )
            .filter(entities::batch::Column::Id.eq(batch_id))
            .filter(entities::batch::Column::Status.eq(BatchStatus::Resend.as_str()))
            .exec(&self.db)
            .await?;
        Ok(changed.rows_affected == 1)
    }

    /// Batches of any app marked `resend`, oldest first.
    pub async fn awaiting_resend(&self, limit: u64) -> Result<Vec<Batch>, DbErr> {
        let rows = entities::batch::Entity::find()
            .filter(entities::batch::Column::Status.eq(BatchStatus::Resend.as_str()))
            .order_by_asc(entities::batch::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(batch).collect())
    }

    async fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut entities::batch::ActiveModel),
    ) -> Result<(), DbErr> {
        let mut row = entities::batch::ActiveModel {
            id: sea_orm::Unchanged(id.to_owned()),
            ..Default::default()
        };
        change(&mut row);
        entities::batch::Entity::update(row)
            .exec(&self.db)
            .await
            .map(|_| ())
    }
}

fn validate(new: &NewEndpoint) -> Result<(), EndpointError> {
    let url_ok = url_scheme_ok(&new.url);
    if !url_ok {
        return Err(EndpointError::Url(new.url.clone()));
    }
    if let Some(unknown) = new
        .events
        .iter()
        .find(|e| !EVENT_NAMES.contains(&e.as_str()))
    {
        return Err(EndpointError::Event(unknown.clone()));
    }
    for (name, value) in &new.headers {
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(EndpointError::ReservedHeader(name.clone()));
        }
        let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(value).is_ok();
        if !valid {
            return Err(EndpointError::Header(name.clone()));
        }
    }
    Ok(())
}

fn url_scheme_ok(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty())
}

/// Parses `Name: value` (as curl takes headers).
pub fn parse_header(text: &str) -> Result<(String, String), EndpointError> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| EndpointError::Header(text.to_owned()))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

fn endpoint(row: entities::endpoint::Model) -> Endpoint {
    Endpoint {
        id: row.id,
        app_id: row.app_id,
        url: row.url,
        events: serde_json::from_str(&row.events).unwrap_or_default(),
        channel_prefix: row.channel_prefix,
        headers: serde_json::from_str(&row.headers).unwrap_or_default(),
        created_at: row.created_at,
    }
}

fn batch(row: entities::batch::Model) -> Batch {
    Batch {
        status: BatchStatus::parse(&row.status).unwrap_or(BatchStatus::Queued),
        id: row.id,
        app_id: row.app_id,
        endpoint_id: row.endpoint_id,
        time_ms: row.time_ms,
        events: row.events,
        event_count: row.event_count,
        attempts: row.attempts,
        last_error: row.last_error,
        created_at: row.created_at,
        delivered_at: row.delivered_at,
    }
}

mod entities {
    pub mod endpoint {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "webhook_endpoints")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: String,
            pub app_id: String,
            #[sea_orm(column_type = "Text")]
            pub url: String,
            #[sea_orm(column_type = "Text")]
            pub events: String,
            pub channel_prefix: Option<String>,
            #[sea_orm(column_type = "Text")]
            pub headers: String,
            pub created_at: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod batch {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "webhook_batches")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: String,
            pub app_id: String,
            pub endpoint_id: String,
            pub time_ms: i64,
            #[sea_orm(column_type = "Text")]
            pub events: String,
            pub event_count: i32,
            pub status: String,
            pub attempts: i32,
            #[sea_orm(column_type = "Text", nullable)]
            pub last_error: Option<String>,
            pub created_at: i64,
            pub delivered_at: Option<i64>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod attempt {
        use sea_orm::entity::prelude::*;
        use serde::Serialize;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
        #[sea_orm(table_name = "webhook_attempts")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i32,
            pub batch_id: String,
            pub attempt: i32,
            pub started_at: i64,
            pub duration_ms: i64,
            pub status_code: Option<i32>,
            #[sea_orm(column_type = "Text", nullable)]
            pub error: Option<String>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}
