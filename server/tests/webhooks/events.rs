//! Every webhook event type, produced by real WebSocket clients, and the rejoin delay.

use std::time::Duration;

use serde_json::{Value, json};

use crate::receiver::{Receiver, event, is};
use crate::support::{Client, member};
use crate::{endpoint, server, server_with};

#[tokio::test]
async fn every_event_type_is_signed_and_shaped_as_pusher_sends_it() {
    let server = server_with(true, |_| {}).await;
    let receiver = Receiver::start().await;
    endpoint(&server, &receiver.url, |_| {}).await;
    let app = server.app.clone();
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;

    // Frames go out without waiting for replies: with subscription counts on, the clients
    // get frames the strict `expect` helpers do not look for. One socket's frames are
    // handled in order, which is all the webhooks depend on.
    let public = |channel: &str| json!({"event": "pusher:subscribe", "data": {"auth": "", "channel": channel}});
    let leave =
        |channel: &str| json!({"event": "pusher:unsubscribe", "data": {"channel": channel}});
    a.send(public("room")).await;
    a.send(public("cache-news")).await;
    a.send_subscribe(&app, "private-chat", None).await;
    b.send_subscribe(&app, "private-chat", None).await;
    a.client_event("private-chat", "client-typing", json!({"typing": true}))
        .await;
    b.send_subscribe(&app, "presence-lobby", Some(&member("u1", "Ann")))
        .await;
    a.send_subscribe(&app, "presence-lobby", Some(&member("u2", "Bob")))
        .await;
    a.client_event("presence-lobby", "client-wave", json!("hello"))
        .await;
    b.send(leave("presence-lobby")).await;
    a.send(leave("presence-lobby")).await;

    let events = receiver
        .events_until(is("channel_vacated", "presence-lobby"))
        .await;
    let expected = [
        event("channel_occupied", "room"),
        json!({"name": "subscription_count", "channel": "room", "subscription_count": 1}),
        event("channel_occupied", "cache-news"),
        event("cache_miss", "cache-news"),
        event("channel_occupied", "private-chat"),
        json!({"name": "subscription_count", "channel": "private-chat", "subscription_count": 2}),
        json!({"name": "client_event", "channel": "private-chat", "event": "client-typing",
               "data": "{\"typing\":true}", "socket_id": a.socket_id}),
        event("channel_occupied", "presence-lobby"),
        json!({"name": "member_added", "channel": "presence-lobby", "user_id": "u1"}),
        json!({"name": "member_added", "channel": "presence-lobby", "user_id": "u2"}),
        json!({"name": "client_event", "channel": "presence-lobby", "event": "client-wave",
               "data": "hello", "socket_id": a.socket_id, "user_id": "u2"}),
        json!({"name": "member_removed", "channel": "presence-lobby", "user_id": "u1"}),
        json!({"name": "member_removed", "channel": "presence-lobby", "user_id": "u2"}),
        event("channel_vacated", "presence-lobby"),
    ];
    for want in &expected {
        let found = events.iter().filter(|e| *e == want).count();
        assert_eq!(found, 1, "{want} once in {events:#?}");
    }
    assert!(
        !events
            .iter()
            .any(|e| e["name"] == "subscription_count" && e["channel"] == "presence-lobby"),
        "no subscription_count on presence channels: {events:#?}"
    );
    server.shutdown().await;
}

/// The rejoin delay with real sockets. The delay's exact length is checked with paused time
/// in the batcher's unit tests; here real time runs, because paused time would jump over
/// the delay whenever the runtime waits on a socket. The delay is long enough for a client
/// to leave and come back on one socket, and the test shows the cancellation by ordering,
/// not by waiting: a channel left *after* the reload is reported vacated, so a vacated for
/// the reloaded one, due earlier, would have come first.
#[tokio::test]
async fn a_quick_rejoin_sends_neither_the_removal_nor_the_re_add() {
    let server = server(|w| w.timing.removal_delay = Duration::from_millis(1500)).await;
    let receiver = Receiver::start().await;
    endpoint(&server, &receiver.url, |_| {}).await;
    let app = server.app.clone();
    let mut a = Client::connect(&server).await;
    a.subscribe_presence(&app, "presence-page", &member("u1", "Ann"))
        .await;
    let first = receiver.events_until(|e| e["name"] == "member_added").await;
    assert!(first.contains(&event("channel_occupied", "presence-page")));

    // A page reload: the old socket goes away, a new one joins as the same user.
    drop(a);
    let mut a = Client::connect(&server).await;
    a.subscribe_presence(&app, "presence-page", &member("u1", "Ann"))
        .await;
    a.subscribe_public("marker").await;
    a.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "marker"}}))
        .await;

    let events = receiver.events_until(is("channel_vacated", "marker")).await;
    let about_page: Vec<&Value> = events
        .iter()
        .filter(|e| e["channel"] == "presence-page")
        .collect();
    assert!(about_page.is_empty(), "the reload sent {about_page:#?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_leave_without_rejoin_is_sent_after_the_delay() {
    let server = server(|w| w.timing.removal_delay = Duration::from_millis(300)).await;
    let receiver = Receiver::start().await;
    endpoint(&server, &receiver.url, |_| {}).await;
    let app = server.app.clone();
    let mut a = Client::connect(&server).await;
    a.subscribe_presence(&app, "presence-gone", &member("u9", "Zed"))
        .await;
    receiver.events_until(|e| e["name"] == "member_added").await;
    drop(a);
    let events = receiver
        .events_until(is("channel_vacated", "presence-gone"))
        .await;
    let removed = json!({"name": "member_removed", "channel": "presence-gone", "user_id": "u9"});
    assert!(events.contains(&removed), "{events:#?}");
    server.shutdown().await;
}
