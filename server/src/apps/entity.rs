//! The `apps` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "apps")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(unique)]
    pub key: String,
    pub secret: String,
    pub name: String,
    pub enabled: bool,
    /// [`super::AppSettings`] as JSON.
    #[sea_orm(column_type = "Text")]
    pub settings: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds; bumped on every change so nodes can tell their cache is stale.
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
