//! Webhooks with the production backends: the batches on Postgres, the jobs on Redis.

use std::time::Duration;

use comnestor_server::apps::{AppStore, NewApp};
use comnestor_server::config::{QueueKind, Settings};
use comnestor_server::server;
use comnestor_server::webhooks::{BatchStatus, NewEndpoint};

use crate::receiver::{Receiver, event};
use crate::support::Client;

/// The app this test owns in the shared database; removed and created afresh each run.
const APP_ID: &str = "9100";

pub fn service_url(variable: &str, service: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!(
            "{variable} is not set, so the {service} test cannot run. Start the services with \
             `bash -c 'source .ci/services.sh; start_redis; start_postgres; env | grep COMNESTOR_TEST'` \
             and export the variables it prints (or run .ci/test)."
        )
    })
}

#[tokio::test]
async fn webhooks_on_postgres_with_jobs_on_redis() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let database_url = service_url("COMNESTOR_TEST_POSTGRES_URL", "PostgreSQL");
    let redis_url = service_url("COMNESTOR_TEST_REDIS_URL", "Redis");
    let run = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    let db = server::connect_database(&database_url).await.unwrap();
    let apps = AppStore::new(db.clone());
    let _ = apps.delete(APP_ID).await;
    let new = NewApp {
        id: Some(APP_ID.to_owned()),
        key: Some(format!("webhooks-{run}")),
        secret: Some(format!("secret-{run}")),
        enabled: true,
        ..NewApp::default()
    };
    let app = apps.create(new).await.unwrap();
    let mut settings = Settings {
        host: [127, 0, 0, 1].into(),
        port: 0,
        database_url,
        redis_url: Some(redis_url),
        redis_prefix: format!("comnestor-webhooks-{run}:"),
        queue: QueueKind::Redis,
        app_refresh: Duration::from_millis(50),
        shutdown_grace: Duration::from_secs(2),
        ..Settings::default()
    };
    settings.webhooks.timing.window = Duration::from_millis(20);
    settings.webhooks.sender.retry.base_delay = Duration::from_millis(20);
    let running = server::start(&settings, db).await.unwrap();
    let webhooks = &running.ctx.webhooks;
    for stale in webhooks.store().endpoints(APP_ID).await.unwrap() {
        webhooks.remove_endpoint(APP_ID, &stale.id).await.unwrap();
    }
    let receiver = Receiver::for_app(&app.key, &app.secret, 1).await;
    let new = NewEndpoint {
        app_id: APP_ID.to_owned(),
        url: receiver.url.clone(),
        ..NewEndpoint::default()
    };
    webhooks.add_endpoint(new).await.unwrap();

    let url = format!("ws://{}/app/{}?protocol=7", running.addr, app.key);
    let mut client = Client::connect_to(&url).await;
    let channel = format!("pg-room-{run}");
    client.subscribe_public(&channel).await;
    assert_eq!(receiver.next().await.status, 500);
    let hook = receiver.next().await;
    assert_eq!(hook.status, 200);
    assert_eq!(hook.events(), [event("channel_occupied", &channel)]);

    let store = webhooks.store();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let batch = loop {
        let delivered = store
            .batches(APP_ID, Some(BatchStatus::Delivered), 10_000)
            .await
            .unwrap();
        if let Some(batch) = delivered.into_iter().find(|b| b.events.contains(&channel)) {
            break batch;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch was recorded delivered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let codes: Vec<Option<i32>> = store
        .attempts(&batch.id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.status_code)
        .collect();
    assert_eq!(codes, [Some(500), Some(200)]);
    drop(client);
    running.shutdown().await.unwrap();
}
