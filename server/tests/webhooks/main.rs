//! Integration tests of webhooks: real clients on a real server, and a local receiver that
//! checks every request the way the Pusher SDKs' webhook validators do.
//!
//! Run with `cargo test -p comnestor-server --test webhooks`.

#[path = "../core/support.rs"]
#[allow(dead_code)]
mod support;

mod cluster;
mod delivery;
mod events;
mod filters;
mod receiver;
mod services;

use std::time::Duration;

use comnestor_server::apps::AppSettings;
use comnestor_server::testing::{APP_ID, TestServer};
use comnestor_server::webhooks::{Endpoint, NewEndpoint, WebhookSettings};

/// A server whose app has client events on, with webhook timing adjusted by `tune` (a short
/// window, rejoin delay and backoff to begin with).
pub async fn server(tune: impl FnOnce(&mut WebhookSettings)) -> TestServer {
    server_with(false, tune).await
}

/// [`server`], with `subscription_count` events on or off.
pub async fn server_with(
    subscription_count: bool,
    tune: impl FnOnce(&mut WebhookSettings),
) -> TestServer {
    let app = move |settings: &mut AppSettings| {
        settings.client_events = true;
        settings.subscription_count = subscription_count;
    };
    TestServer::start_configured(app, |settings| {
        settings.webhooks.timing.window = Duration::from_millis(20);
        settings.webhooks.timing.removal_delay = Duration::from_millis(50);
        settings.webhooks.sender.retry.base_delay = Duration::from_millis(20);
        settings.webhooks.sender.retry.max_delay = Duration::from_millis(100);
        tune(&mut settings.webhooks);
    })
    .await
}

/// Adds an endpoint to the test app.
pub async fn endpoint(
    server: &TestServer,
    url: &str,
    change: impl FnOnce(&mut NewEndpoint),
) -> Endpoint {
    let mut new = NewEndpoint {
        app_id: APP_ID.to_owned(),
        url: url.to_owned(),
        ..NewEndpoint::default()
    };
    change(&mut new);
    server
        .context()
        .webhooks
        .add_endpoint(new)
        .await
        .expect("endpoint added")
}

/// The endpoint `COMNESTOR_APP_WEBHOOK_URL` configures is created once, and replaced when
/// its events change.
#[tokio::test]
async fn the_configured_endpoint_is_ensured_once() {
    use comnestor_server::webhooks::cli::ensure_endpoint;

    let server = server(|_| {}).await;
    let store = server.context().webhooks.store();
    let url = "http://127.0.0.1:9/hooks";
    ensure_endpoint(store, APP_ID, url, &[]).await.unwrap();
    ensure_endpoint(store, APP_ID, url, &[]).await.unwrap();
    assert_eq!(store.endpoints(APP_ID).await.unwrap().len(), 1);

    let events = ["channel_vacated".to_owned()];
    ensure_endpoint(store, APP_ID, url, &events).await.unwrap();
    let endpoints = store.endpoints(APP_ID).await.unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].events, events);
    server.shutdown().await;
}
