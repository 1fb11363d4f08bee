//! Webhooks: the endpoints each app sends Pusher webhooks to, every batch of events sent, and
//! each attempt to send one, so a failing endpoint can be diagnosed and its dead batches
//! re-sent.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum WebhookEndpoints {
    Table,
    Id,
    AppId,
    Url,
    Events,
    ChannelPrefix,
    Headers,
    CreatedAt,
}

#[derive(Iden)]
enum WebhookBatches {
    Table,
    Id,
    AppId,
    EndpointId,
    TimeMs,
    Events,
    EventCount,
    Status,
    Attempts,
    LastError,
    CreatedAt,
    DeliveredAt,
}

#[derive(Iden)]
enum WebhookAttempts {
    Table,
    Id,
    BatchId,
    Attempt,
    StartedAt,
    DurationMs,
    StatusCode,
    Error,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(endpoints()).await?;
        manager.create_table(batches()).await?;
        manager.create_table(attempts()).await?;
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookAttempts::Table.into_iden(),
            WebhookBatches::Table.into_iden(),
            WebhookEndpoints::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

fn endpoints() -> TableCreateStatement {
    Table::create()
        .table(WebhookEndpoints::Table)
        .if_not_exists()
        .col(string(WebhookEndpoints::Id).primary_key())
        .col(string(WebhookEndpoints::AppId))
        .col(text(WebhookEndpoints::Url))
        .col(text(WebhookEndpoints::Events))
        .col(string_null(WebhookEndpoints::ChannelPrefix))
        .col(text(WebhookEndpoints::Headers))
        .col(big_integer(WebhookEndpoints::CreatedAt))
        .to_owned()
}

fn batches() -> TableCreateStatement {
    Table::create()
        .table(WebhookBatches::Table)
        .if_not_exists()
        .col(string(WebhookBatches::Id).primary_key())
        .col(string(WebhookBatches::AppId))
        .col(string(WebhookBatches::EndpointId))
        .col(big_integer(WebhookBatches::TimeMs))
        .col(text(WebhookBatches::Events))
        .col(integer(WebhookBatches::EventCount))
        .col(string(WebhookBatches::Status))
        .col(integer(WebhookBatches::Attempts))
        .col(text_null(WebhookBatches::LastError))
        .col(big_integer(WebhookBatches::CreatedAt))
        .col(big_integer_null(WebhookBatches::DeliveredAt))
        .to_owned()
}

fn attempts() -> TableCreateStatement {
    Table::create()
        .table(WebhookAttempts::Table)
        .if_not_exists()
        .col(pk_auto(WebhookAttempts::Id))
        .col(string(WebhookAttempts::BatchId))
        .col(integer(WebhookAttempts::Attempt))
        .col(big_integer(WebhookAttempts::StartedAt))
        .col(big_integer(WebhookAttempts::DurationMs))
        .col(integer_null(WebhookAttempts::StatusCode))
        .col(text_null(WebhookAttempts::Error))
        .to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("webhook_endpoints_app")
            .table(WebhookEndpoints::Table)
            .col(WebhookEndpoints::AppId)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("webhook_batches_app_status")
            .table(WebhookBatches::Table)
            .col(WebhookBatches::AppId)
            .col(WebhookBatches::Status)
            .col(WebhookBatches::Id)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("webhook_attempts_batch")
            .table(WebhookAttempts::Table)
            .col(WebhookAttempts::BatchId)
            .if_not_exists()
            .to_owned(),
    ]
}
