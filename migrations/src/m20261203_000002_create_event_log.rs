//! The event log: every event accepted by `POST /api/events`, the channels it names, and each
//! delivery attempt, so slow or failed deliveries can be diagnosed from the record.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum Events {
    Table,
    Id,
    AppId,
    Event,
    Data,
    SocketId,
    Size,
    Status,
    Attempts,
    LastError,
    IdempotencyKey,
    RequestHash,
    ReplayOf,
    ReceivedAt,
    LoggedAt,
    QueuedAt,
    SentAt,
    AcknowledgedAt,
}

#[derive(Iden)]
enum EventChannels {
    Table,
    EventId,
    AppId,
    Channel,
}

#[derive(Iden)]
enum EventAttempts {
    Table,
    Id,
    EventId,
    Attempt,
    StartedAt,
    DurationMs,
    StatusCode,
    Error,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(events()).await?;
        manager.create_table(event_channels()).await?;
        manager.create_table(event_attempts()).await?;
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EventAttempts::Table.into_iden(),
            EventChannels::Table.into_iden(),
            Events::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

fn events() -> TableCreateStatement {
    Table::create()
        .table(Events::Table)
        .if_not_exists()
        .col(string(Events::Id).primary_key())
        .col(string(Events::AppId))
        .col(string(Events::Event))
        .col(text(Events::Data))
        .col(string_null(Events::SocketId))
        .col(integer(Events::Size))
        .col(string(Events::Status))
        .col(integer(Events::Attempts))
        .col(text_null(Events::LastError))
        .col(string_null(Events::IdempotencyKey))
        .col(string(Events::RequestHash))
        .col(string_null(Events::ReplayOf))
        .col(big_integer(Events::ReceivedAt))
        .col(big_integer(Events::LoggedAt))
        .col(big_integer_null(Events::QueuedAt))
        .col(big_integer_null(Events::SentAt))
        .col(big_integer_null(Events::AcknowledgedAt))
        .to_owned()
}

fn event_channels() -> TableCreateStatement {
    Table::create()
        .table(EventChannels::Table)
        .if_not_exists()
        .col(string(EventChannels::EventId))
        .col(string(EventChannels::AppId))
        .col(string(EventChannels::Channel))
        .primary_key(
            Index::create()
                .col(EventChannels::EventId)
                .col(EventChannels::Channel),
        )
        .to_owned()
}

fn event_attempts() -> TableCreateStatement {
    Table::create()
        .table(EventAttempts::Table)
        .if_not_exists()
        .col(pk_auto(EventAttempts::Id))
        .col(string(EventAttempts::EventId))
        .col(integer(EventAttempts::Attempt))
        .col(big_integer(EventAttempts::StartedAt))
        .col(big_integer(EventAttempts::DurationMs))
        .col(integer_null(EventAttempts::StatusCode))
        .col(text_null(EventAttempts::Error))
        .to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("events_app_received")
            .table(Events::Table)
            .col(Events::AppId)
            .col(Events::Id)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("events_app_idempotency")
            .table(Events::Table)
            .col(Events::AppId)
            .col(Events::IdempotencyKey)
            .unique()
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("events_status")
            .table(Events::Table)
            .col(Events::Status)
            .col(Events::LoggedAt)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("event_channels_app_channel")
            .table(EventChannels::Table)
            .col(EventChannels::AppId)
            .col(EventChannels::Channel)
            .col(EventChannels::EventId)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("event_attempts_event")
            .table(EventAttempts::Table)
            .col(EventAttempts::EventId)
            .if_not_exists()
            .to_owned(),
    ]
}
