//! A server the tests can restart on the same port, and waiting helpers.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use comnestor::{ChannelEvent, Client, Credentials, Subscription};
use comnestor_server::apps::{AppSettings, AppStore, NewApp};
use comnestor_server::config::Settings;
use comnestor_server::server::{self, RunningServer};

pub const APP_ID: &str = comnestor_server::testing::APP_ID;
pub const APP_KEY: &str = comnestor_server::testing::APP_KEY;
pub const APP_SECRET: &str = comnestor_server::testing::APP_SECRET;
pub const MASTER_KEY: &str = "zyrm8pvV2C9fJcBfhyXzvxbJVN/H7QLmbe0xJi1GhPU=";

/// Long enough for a loaded CI machine; tests only hit it when something is broken.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running server with the test app; [`Server::restart`] brings it back on the same port.
pub struct Server {
    running: Option<RunningServer>,
    pub addr: SocketAddr,
}

impl Server {
    pub async fn start() -> Self {
        let running = boot(0).await;
        Self {
            addr: running.addr,
            running: Some(running),
        }
    }

    /// Shuts the server down gracefully (clients are told to reconnect) and starts a fresh one
    /// on the same address, with the same app credentials and an empty database.
    pub async fn restart(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("clean shutdown");
        }
        self.running = Some(boot(self.addr.port()).await);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> Client {
        Client::new(credentials(), self.url()).expect("client")
    }

    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("clean shutdown");
        }
    }
}

pub fn credentials() -> Credentials {
    Credentials::new(APP_ID, APP_KEY, APP_SECRET)
        .with_master_key_base64(MASTER_KEY)
        .expect("master key")
}

async fn boot(port: u16) -> RunningServer {
    comnestor::ensure_crypto_provider();
    let db = server::connect_database("sqlite::memory:")
        .await
        .expect("in-memory database");
    let app = NewApp {
        id: Some(APP_ID.to_owned()),
        key: Some(APP_KEY.to_owned()),
        secret: Some(APP_SECRET.to_owned()),
        name: Some("sdk-rust".to_owned()),
        enabled: true,
        settings: AppSettings::default(),
    };
    AppStore::new(db.clone())
        .create(app)
        .await
        .expect("test app");
    let settings = Settings {
        host: [127, 0, 0, 1].into(),
        port,
        app_refresh: Duration::from_millis(50),
        shutdown_grace: Duration::from_secs(2),
        ..Settings::default()
    };
    server::start(&settings, db).await.expect("server starts")
}

/// Awaits `future`, failing the test with `what` if it takes longer than [`PATIENCE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The next event named `name` on `subscription`, skipping others.
pub async fn next_named(subscription: &mut Subscription, name: &str) -> ChannelEvent {
    let what = format!("{name} on {}", subscription.channel());
    let wait = async {
        loop {
            match subscription.next_event().await {
                Some(event) if event.event == name => return event,
                Some(_) => {}
                None => panic!("the stream ended while waiting for {name}"),
            }
        }
    };
    within(&what, wait).await
}

/// A channel name no other test uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
