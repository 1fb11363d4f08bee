//! sea-orm entities of the event log tables.

pub mod event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub app_id: String,
        pub event: String,
        #[sea_orm(column_type = "Text")]
        pub data: String,
        pub socket_id: Option<String>,
        pub size: i32,
        pub status: String,
        pub attempts: i32,
        #[sea_orm(column_type = "Text", nullable)]
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

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod event_channel {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "event_channels")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub app_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub channel: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod attempt {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "event_attempts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub event_id: String,
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
