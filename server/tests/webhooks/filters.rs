//! Per-endpoint event and channel-prefix filters, and custom headers.

use std::time::Duration;

use serde_json::Value;

use crate::receiver::{Receiver, event, is};
use crate::support::Client;
use crate::{endpoint, server};

#[tokio::test]
async fn filters_remove_events_from_what_is_sent() {
    // A long window, so the events of one burst share a batch before the filters split it.
    let server = server(|w| w.timing.window = Duration::from_millis(300)).await;
    let all = Receiver::start().await;
    let filtered = Receiver::start().await;
    endpoint(&server, &all.url, |_| {}).await;
    endpoint(&server, &filtered.url, |e| {
        e.events = vec!["channel_occupied".to_owned()];
        e.channel_prefix = Some("private-".to_owned());
        e.headers = vec![("X-Env".to_owned(), "prod".to_owned())];
    })
    .await;
    let app = server.app.clone();
    let mut client = Client::connect(&server).await;
    client.subscribe_public("public-news").await;
    client.subscribe_private(&app, "private-inbox").await;
    client
        .client_event("private-inbox", "client-note", serde_json::json!({}))
        .await;
    client.subscribe_private(&app, "private-marker").await;

    let everything = all
        .events_until(is("channel_occupied", "private-marker"))
        .await;
    assert!(everything.contains(&event("channel_occupied", "public-news")));
    assert!(everything.iter().any(|e| e["name"] == "client_event"));

    let hook = filtered.next().await;
    assert_eq!(hook.headers.get("x-env").unwrap(), "prod");
    let mut events = hook.events();
    while !events.contains(&event("channel_occupied", "private-marker")) {
        events.extend(filtered.next().await.events());
    }
    let wanted = |e: &Value| {
        e["name"] == "channel_occupied" && e["channel"].as_str().unwrap().starts_with("private-")
    };
    assert!(
        events.iter().all(wanted),
        "only matching events: {events:#?}"
    );
    assert!(events.contains(&event("channel_occupied", "private-inbox")));
    server.shutdown().await;
}
