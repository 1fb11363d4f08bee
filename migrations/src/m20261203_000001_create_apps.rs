//! Apps: credentials plus a JSON document of per-app settings, so adding a setting needs no
//! schema change.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(Iden)]
enum Apps {
    Table,
    Id,
    Key,
    Secret,
    Name,
    Enabled,
    Settings,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Table::create()
            .table(Apps::Table)
            .if_not_exists()
            .col(string(Apps::Id).primary_key())
            .col(string_uniq(Apps::Key))
            .col(string(Apps::Secret))
            .col(string(Apps::Name))
            .col(boolean(Apps::Enabled))
            .col(text(Apps::Settings))
            .col(big_integer(Apps::CreatedAt))
            .col(big_integer(Apps::UpdatedAt))
            .to_owned();
        manager.create_table(table).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Apps::Table).to_owned())
            .await
    }
}
