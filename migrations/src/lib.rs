//! The Comnestor database schema, applied on start by `comnestor serve` and the CLI.
//!
//! Migrations are written with sea-query so one definition works on SQLite, Postgres and
//! MySQL/MariaDB (the intake tests apply them to all three).

pub use sea_orm_migration::prelude::*;

mod m20261203_000001_create_apps;
mod m20261203_000002_create_event_log;
mod m20261203_000003_create_webhooks;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261203_000001_create_apps::Migration),
            Box::new(m20261203_000002_create_event_log::Migration),
            Box::new(m20261203_000003_create_webhooks::Migration),
        ]
    }
}
