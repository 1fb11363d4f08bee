//! Webhooks from two nodes of a cluster on Redis: transitions reported by the node Redis
//! decided them on, and removals rechecked with the cluster when their delay ends.

use std::time::Duration;

use comnestor_server::testing::TestServer;
use serde_json::{Value, json};

use crate::receiver::{Receiver, event, is};
use crate::support::{Client, member};
use crate::{endpoint, services::service_url};

/// Two nodes sharing a fresh key prefix, each sending the test app's webhooks to `receiver`.
async fn two_nodes(receiver: &Receiver, removal_delay: Duration) -> (TestServer, TestServer) {
    let redis_url = service_url("COMNESTOR_TEST_REDIS_URL", "Redis");
    let run = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    let node = || async {
        let server = TestServer::start_configured(
            |_| {},
            |settings| {
                settings.redis_url = Some(redis_url.clone());
                settings.redis_prefix = format!("comnestor-webhooks-{run}:");
                settings.cluster = true;
                settings.webhooks.timing.window = Duration::from_millis(20);
                settings.webhooks.timing.removal_delay = removal_delay;
            },
        )
        .await;
        endpoint(&server, &receiver.url, |_| {}).await;
        server
    };
    (node().await, node().await)
}

fn leave(channel: &str) -> Value {
    json!({"event": "pusher:unsubscribe", "data": {"channel": channel}})
}

#[tokio::test]
async fn a_channel_vacated_on_another_node_than_it_was_occupied_on_is_reported() {
    let receiver = Receiver::start().await;
    let (a, b) = two_nodes(&receiver, Duration::from_millis(100)).await;
    let mut on_a = Client::connect(&a).await;
    let mut on_b = Client::connect(&b).await;
    on_a.subscribe_public("roaming").await;
    receiver
        .events_until(is("channel_occupied", "roaming"))
        .await;
    on_b.subscribe_public("roaming").await;
    on_a.send(leave("roaming")).await;
    on_a.assert_alive().await;
    on_b.send(leave("roaming")).await;

    let events = receiver
        .events_until(is("channel_vacated", "roaming"))
        .await;
    assert_eq!(events, [event("channel_vacated", "roaming")]);
    a.shutdown().await;
    b.shutdown().await;
}

/// A reload that lands on the other node. The second node reports the user back at once;
/// the first node's `member_removed`, rechecked with the cluster when its delay ends, is not
/// sent. A channel left on the first node after the reload shows by its order that the
/// removal's delay has passed.
#[tokio::test]
async fn a_rejoin_on_another_node_within_the_delay_sends_no_removal() {
    let receiver = Receiver::start().await;
    let (a, b) = two_nodes(&receiver, Duration::from_millis(1500)).await;
    let app = a.app.clone();
    let channel = "presence-reload";
    let mut observer = Client::connect(&b).await;
    observer
        .subscribe_presence(&app, channel, &member("u2", "Bob"))
        .await;
    let mut first = Client::connect(&a).await;
    first
        .subscribe_presence(&app, channel, &member("u1", "Ann"))
        .await;
    let added = |e: &Value| e["name"] == "member_added" && e["user_id"] == "u1";
    receiver.events_until(added).await;
    observer
        .expect_on("pusher_internal:member_added", channel)
        .await;

    // The reload: u1 leaves on node A (the cluster has recorded it once the observer hears
    // of it) and joins again on node B.
    first.send(leave(channel)).await;
    observer
        .expect_on("pusher_internal:member_removed", channel)
        .await;
    let mut second = Client::connect(&b).await;
    second
        .subscribe_presence(&app, channel, &member("u1", "Ann"))
        .await;
    observer
        .expect_on("pusher_internal:member_added", channel)
        .await;
    first.subscribe_public("marker").await;
    first.send(leave("marker")).await;

    let events = receiver.events_until(is("channel_vacated", "marker")).await;
    let removed: Vec<&Value> = events
        .iter()
        .filter(|e| e["name"] == "member_removed")
        .collect();
    assert!(removed.is_empty(), "the reload sent {removed:#?}");
    assert!(
        events.iter().any(added),
        "node B reported u1 back: {events:#?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}
