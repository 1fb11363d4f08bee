//! Apps: their credentials and settings, stored in the database and cached in memory.
//!
//! [`AppStore`] reads and writes the `apps` table. [`AppRegistry`] is the in-memory view the
//! server answers from; it reloads the table periodically, so a change made with the CLI takes
//! effect without a restart.

mod entity;
mod registry;
mod settings;

use rand::Rng;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde::Serialize;

pub use registry::AppRegistry;
pub use settings::{AppSettings, SETTING_NAMES, parse_bool};

/// One app: credentials, whether it is enabled, and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    pub id: String,
    pub key: String,
    #[serde(skip_serializing)]
    pub secret: String,
    pub name: String,
    pub enabled: bool,
    pub settings: AppSettings,
    pub updated_at: i64,
}

/// A failure to read or change apps.
#[derive(Debug, thiserror::Error)]
pub enum AppStoreError {
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),
    #[error("app {0} does not exist")]
    NotFound(String),
    #[error("an app with {field} `{value}` already exists")]
    Conflict { field: &'static str, value: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// What `create` needs; absent credentials are generated.
#[derive(Debug, Clone, Default)]
pub struct NewApp {
    pub id: Option<String>,
    pub key: Option<String>,
    pub secret: Option<String>,
    pub name: Option<String>,
    pub enabled: bool,
    pub settings: AppSettings,
}

/// Reads and writes apps in the database.
#[derive(Debug, Clone)]
pub struct AppStore {
    db: DatabaseConnection,
}

impl AppStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub async fn list(&self) -> Result<Vec<App>, AppStoreError> {
        let rows = entity::Entity::find()
            .order_by_asc(entity::Column::CreatedAt)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(App::from).collect())
    }

    pub async fn find(&self, id: &str) -> Result<App, AppStoreError> {
        let row = entity::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?;
        row.map(App::from)
            .ok_or_else(|| AppStoreError::NotFound(id.to_owned()))
    }

    async fn find_by_key(&self, key: &str) -> Result<Option<App>, AppStoreError> {
        let row = entity::Entity::find()
            .filter(entity::Column::Key.eq(key))
            .one(&self.db)
            .await?;
        Ok(row.map(App::from))
    }

    /// Creates an app. Generated ids are numeric, as Pusher's are.
    pub async fn create(&self, new: NewApp) -> Result<App, AppStoreError> {
        let id = new.id.unwrap_or_else(generate_id);
        let key = new.key.unwrap_or_else(|| generate_token(20));
        let secret = new.secret.unwrap_or_else(|| generate_token(32));
        validate_credential("id", &id)?;
        validate_credential("key", &key)?;
        validate_credential("secret", &secret)?;
        if entity::Entity::find_by_id(id.clone())
            .one(&self.db)
            .await?
            .is_some()
        {
            return Err(AppStoreError::Conflict {
                field: "id",
                value: id,
            });
        }
        if self.find_by_key(&key).await?.is_some() {
            return Err(AppStoreError::Conflict {
                field: "key",
                value: key,
            });
        }
        let now = now_millis();
        let row = entity::ActiveModel {
            id: Set(id.clone()),
            key: Set(key),
            secret: Set(secret),
            name: Set(new.name.unwrap_or_else(|| format!("app-{id}"))),
            enabled: Set(new.enabled),
            settings: Set(settings_json(&new.settings)),
            created_at: Set(now),
            updated_at: Set(now),
        };
        Ok(row.insert(&self.db).await?.into())
    }

    /// Saves every field of `app` (looked up by id) and bumps `updated_at`.
    pub async fn update(&self, app: &App) -> Result<App, AppStoreError> {
        validate_credential("key", &app.key)?;
        validate_credential("secret", &app.secret)?;
        if let Some(other) = self.find_by_key(&app.key).await?
            && other.id != app.id
        {
            return Err(AppStoreError::Conflict {
                field: "key",
                value: app.key.clone(),
            });
        }
        let existing = entity::Entity::find_by_id(app.id.clone())
            .one(&self.db)
            .await?
            .ok_or_else(|| AppStoreError::NotFound(app.id.clone()))?;
        let mut row: entity::ActiveModel = existing.into();
        row.key = Set(app.key.clone());
        row.secret = Set(app.secret.clone());
        row.name = Set(app.name.clone());
        row.enabled = Set(app.enabled);
        row.settings = Set(settings_json(&app.settings));
        row.updated_at = Set(now_millis().max(app.updated_at + 1));
        Ok(row.update(&self.db).await?.into())
    }

    /// Replaces the secret with a new random one and returns the updated app.
    pub async fn rotate_secret(&self, id: &str) -> Result<App, AppStoreError> {
        let mut app = self.find(id).await?;
        app.secret = generate_token(32);
        self.update(&app).await
    }

    pub async fn delete(&self, id: &str) -> Result<(), AppStoreError> {
        let result = entity::Entity::delete_by_id(id.to_owned())
            .exec(&self.db)
            .await?;
        if result.rows_affected == 0 {
            return Err(AppStoreError::NotFound(id.to_owned()));
        }
        Ok(())
    }
}

impl From<entity::Model> for App {
    fn from(row: entity::Model) -> Self {
        // A settings document that no longer parses falls back to defaults field by field
        // (serde `default`), and to all defaults when it is not JSON at all.
        let settings = serde_json::from_str(&row.settings).unwrap_or_default();
        Self {
            id: row.id,
            key: row.key,
            secret: row.secret,
            name: row.name,
            enabled: row.enabled,
            settings,
            updated_at: row.updated_at,
        }
    }
}

fn settings_json(settings: &AppSettings) -> String {
    serde_json::to_string(settings).unwrap_or_else(|_| "{}".to_owned())
}

/// Ids, keys and secrets travel in URLs and signed strings: keep them to URL-safe characters
/// and free of `:`, which separates the key from the signature in `auth` values.
fn validate_credential(field: &'static str, value: &str) -> Result<(), AppStoreError> {
    let valid = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(AppStoreError::Invalid {
            field,
            reason: "use 1 to 128 characters from A-Z a-z 0-9 - _ .".to_owned(),
        })
    }
}

fn generate_id() -> String {
    rand::rng().random_range(100_000..10_000_000u32).to_string()
}

fn generate_token(length: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..length)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub(crate) fn now_millis() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as i64)
}
