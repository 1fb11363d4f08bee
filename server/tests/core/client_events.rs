//! Client events: where they are allowed, who receives them, and their limits.

use serde_json::json;

use crate::support::{Api, Client, member, server, server_with};

const CHAT: &str = "private-chat";

/// Two clients on the private channel `CHAT`.
async fn pair(server: &comnestor_server::testing::TestServer) -> (Client, Client) {
    let mut sender = Client::connect(server).await;
    sender.subscribe_private(&server.app, CHAT).await;
    let mut receiver = Client::connect(server).await;
    receiver.subscribe_private(&server.app, CHAT).await;
    (sender, receiver)
}

#[tokio::test]
async fn private_client_events_reach_the_others_but_not_the_sender() {
    let server = server().await;
    let (mut sender, mut receiver) = pair(&server).await;
    let mut third = Client::connect(&server).await;
    third.subscribe_private(&server.app, CHAT).await;

    sender
        .client_event(CHAT, "client-typing", json!({"who": "sender", "n": [1, 2]}))
        .await;
    for client in [&mut receiver, &mut third] {
        let event = client.expect_on("client-typing", CHAT).await;
        assert_eq!(event.data, json!({"who": "sender", "n": [1, 2]}));
        assert!(event.user_id.is_none(), "{}", event.text);
    }
    // The pong is the sender's next frame: its own event was not echoed.
    sender.assert_alive().await;

    // `data` sent as a JSON string is relayed too.
    sender
        .send_text(r#"{"event":"client-note","channel":"private-chat","data":"{\"a\":1}"}"#)
        .await;
    let event = receiver.expect_on("client-note", CHAT).await;
    assert_eq!(event.data, json!({"a": 1}));
}

#[tokio::test]
async fn presence_client_events_carry_the_senders_user_id() {
    let server = server().await;
    let app = &server.app;
    let room = "presence-chat";
    let mut sender = Client::connect(&server).await;
    sender
        .subscribe_presence(app, room, &member("alice", "Alice"))
        .await;
    let mut receiver = Client::connect(&server).await;
    receiver
        .subscribe_presence(app, room, &member("bob", "Bob"))
        .await;
    sender.expect("pusher_internal:member_added").await;

    sender.client_event(room, "client-wave", json!({})).await;
    let event = receiver.expect_on("client-wave", room).await;
    assert_eq!(event.user_id.as_deref(), Some("alice"), "{}", event.text);
    sender.assert_alive().await;
}

#[tokio::test]
async fn client_events_are_refused_outside_private_and_presence_channels() {
    let server = server().await;
    let api = Api::new(&server);
    let mut sender = Client::connect(&server).await;
    let mut receiver = Client::connect(&server).await;
    for channel in ["public-chat", "cache-chat"] {
        sender.subscribe_public(channel).await;
        receiver.subscribe_public(channel).await;
    }
    sender.expect_on("pusher:cache_miss", "cache-chat").await;
    receiver.expect_on("pusher:cache_miss", "cache-chat").await;
    let encrypted = "private-encrypted-chat";
    sender.subscribe_private(&server.app, encrypted).await;
    receiver.subscribe_private(&server.app, encrypted).await;

    for channel in ["public-chat", "cache-chat", encrypted] {
        sender
            .client_event(channel, "client-typing", json!({}))
            .await;
        let error = sender.expect_error().await;
        assert!(
            error.error_message().contains("private and presence"),
            "{channel}: {}",
            error.text
        );
        api.trigger(channel, "marker", "{}").await;
        receiver.expect_on("marker", channel).await;
        sender.expect_on("marker", channel).await;
    }
    sender.assert_alive().await;
}

#[tokio::test]
async fn client_events_need_the_sender_to_be_subscribed() {
    let server = server().await;
    let mut outsider = Client::connect(&server).await;
    let mut receiver = Client::connect(&server).await;
    receiver.subscribe_private(&server.app, CHAT).await;

    outsider.client_event(CHAT, "client-sneak", json!({})).await;
    let error = outsider.expect_error().await;
    assert!(
        error.error_message().contains("not subscribed"),
        "{}",
        error.text
    );
    outsider
        .send(json!({"event": "client-nochannel", "data": {}}))
        .await;
    outsider.expect_error().await;

    Api::new(&server).trigger(CHAT, "marker", "{}").await;
    receiver.expect_on("marker", CHAT).await;
    outsider.assert_alive().await;
}

#[tokio::test]
async fn client_events_can_be_disabled_per_app() {
    let server = server_with(|s| s.client_events = false).await;
    let (mut sender, mut receiver) = pair(&server).await;
    sender.client_event(CHAT, "client-typing", json!({})).await;
    let error = sender.expect_error().await;
    assert!(error.error_message().contains("disabled"), "{}", error.text);
    Api::new(&server).trigger(CHAT, "marker", "{}").await;
    receiver.expect_on("marker", CHAT).await;
    sender.expect_on("marker", CHAT).await;
}

#[tokio::test]
async fn client_events_over_the_rate_get_4301_without_closing() {
    // One event per second: of twenty sent at once, at most a couple can pass.
    let server = server_with(|s| s.client_event_rate = 1).await;
    let (mut sender, mut receiver) = pair(&server).await;
    let sent = 20;
    for n in 0..sent {
        sender
            .client_event(CHAT, "client-burst", json!({"n": n}))
            .await;
    }
    // The pong fences the burst: every event before it has been handled.
    sender
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    let mut rejected = 0;
    loop {
        let frame = sender.next().await;
        if frame.event == "pusher:pong" {
            break;
        }
        assert_eq!(frame.error_code(), Some(4301), "{}", frame.text);
        assert_eq!(
            frame.error_message(),
            "Client event rejected due to rate limit"
        );
        rejected += 1;
    }
    assert!(
        rejected >= sent - 3,
        "only {rejected} of {sent} were rate limited"
    );

    Api::new(&server).trigger(CHAT, "marker", "{}").await;
    let mut delivered = 0;
    loop {
        let frame = receiver.next().await;
        if frame.event == "marker" {
            break;
        }
        assert_eq!(frame.event, "client-burst", "{}", frame.text);
        delivered += 1;
    }
    assert_eq!(delivered + rejected, sent);
    assert!(delivered >= 1);
    sender.expect_on("marker", CHAT).await;
    sender.assert_alive().await;
}

#[tokio::test]
async fn client_event_names_and_sizes_are_limited() {
    let server = server_with(|s| s.max_event_size = 100).await;
    let (mut sender, mut receiver) = pair(&server).await;
    let long_name = format!("client-{}", "x".repeat(200));
    sender.client_event(CHAT, &long_name, json!({})).await;
    sender.expect_error().await;
    sender
        .client_event(CHAT, "client-big", json!({"pad": "x".repeat(200)}))
        .await;
    let error = sender.expect_error().await;
    assert!(error.error_message().contains("100"), "{}", error.text);

    let longest = format!("client-{}", "y".repeat(193));
    sender.client_event(CHAT, &longest, json!({})).await;
    receiver.expect_on(&longest, CHAT).await;
    sender.assert_alive().await;
}
