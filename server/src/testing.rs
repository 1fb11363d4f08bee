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
        Self::start_configured(configure, |_| {}).await
    }

    /// Starts a server after `configure` adjusts the app's settings and `configure_server`
    /// the server's own (the shutdown grace period, for instance).
    pub async fn start_configured(
        configure: impl FnOnce(&mut AppSettings),
        configure_server: impl FnOnce(&mut Settings),
    ) -> Self {
        // The delivery worker's HTTP client needs a TLS provider, as `main` installs one.
        let _ = rustls::crypto::ring::default_provider().install_default();
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
        let mut config = Settings {
            host: [127, 0, 0, 1].into(),
            port: 0,
            app_refresh: std::time::Duration::from_millis(50),
            shutdown_grace: std::time::Duration::from_secs(2),
            ..Settings::default()
        };
        configure_server(&mut config);
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

    /// Creates another app and waits until the running server knows it.
    pub async fn create_app(&self, new: NewApp) -> App {
        let app = self.store().create(new).await.expect("app created");
        let id = app.id.clone();
        self.wait_for(|ctx| ctx.apps.by_id(&id).is_some()).await;
        app
    }

    /// Changes an app in the store, as the CLI does, and waits until the server's periodic
    /// refresh has applied the change to the app's live state.
    pub async fn update_app(&self, id: &str, change: impl FnOnce(&mut App)) -> App {
        let mut app = self.store().find(id).await.expect("app exists");
        change(&mut app);
        let app = self.store().update(&app).await.expect("app updated");
        let updated_at = app.updated_at;
        self.wait_for(|ctx| {
            let known = ctx
                .apps
                .by_id(id)
                .is_some_and(|a| a.updated_at == updated_at);
            let live = ctx
                .hub
                .existing(id)
                .is_none_or(|hub| hub.app().updated_at == updated_at);
            known && live
        })
        .await;
        app
    }

    /// Polls `done` until it holds; panics after five seconds.
    async fn wait_for(&self, done: impl Fn(&crate::Context) -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !done(&self.running.ctx) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not pick up the app change"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
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
