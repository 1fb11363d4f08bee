//! A real server on `127.0.0.1:0` with an in-memory database, for tests.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::apps::{App, AppSettings, AppStore, NewApp};
use crate::config::Settings;
use crate::server::{self, RunningServer};

/// Credentials of the app a [`TestServer`] starts with.
pub const APP_ID: &str = "100";
pub const APP_KEY: &str = "test-key";
pub const APP_SECRET: &str = "test-secret";

/// A server with one app (`100` / `test-key` / `test-secret`).
pub struct TestServer {
    pub addr: SocketAddr,
    pub app: App,
    running: RunningServer,
}

impl TestServer {
    /// Starts a server whose app has the default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `configure` adjusts the app's settings.
    pub async fn start_with(configure: impl FnOnce(&mut AppSettings)) -> Self {
        let mut settings = AppSettings::default();
        configure(&mut settings);
        let db = server::connect_database("sqlite::memory:")
            .await
            .expect("in-memory database");
        let store = AppStore::new(db.clone());
        let new = NewApp {
            id: Some(APP_ID.to_owned()),
            key: Some(APP_KEY.to_owned()),
            secret: Some(APP_SECRET.to_owned()),
            name: Some("test".to_owned()),
            enabled: true,
            settings,
        };
        let app = store.create(new).await.expect("test app");
        let config = Settings {
            host: [127, 0, 0, 1].into(),
            port: 0,
            app_refresh: std::time::Duration::from_millis(50),
            shutdown_grace: std::time::Duration::from_secs(2),
            ..Settings::default()
        };
        let running = server::start(&config, db).await.expect("server starts");
        Self {
            addr: running.addr,
            app,
            running,
        }
    }

    /// The app store, to change apps while the server runs.
    pub fn store(&self) -> &AppStore {
        self.running.ctx.apps.store()
    }

    pub fn context(&self) -> &Arc<crate::Context> {
        &self.running.ctx
    }

    /// `ws://…/app/{key}` with the query pusher-js sends.
    pub fn ws_url(&self) -> String {
        format!(
            "ws://{}/app/{}?protocol=7&client=js&version=8.6.0&flash=false",
            self.addr, self.app.key
        )
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown, as on SIGTERM.
    pub async fn shutdown(self) {
        self.running.shutdown().await.expect("clean shutdown");
    }
}
