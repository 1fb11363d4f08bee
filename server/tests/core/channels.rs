//! Subscriptions: public, private, encrypted and cache channels, naming rules and
//! `subscription_count`.

use comnestor_protocol::auth;
use serde_json::{Value, json};

use crate::support::{Api, Client, member, server, server_with};

#[tokio::test]
async fn public_channel_subscription_and_events_relayed_byte_for_byte() {
    let server = server().await;
    let api = Api::new(&server);
    let mut client = Client::connect(&server).await;
    let succeeded = client.subscribe_public("my-channel").await;
    assert!(succeeded.user_id.is_none());

    for data in [
        r#"{"some":"data"}"#,
        r#"{ "spaced" : [1, 2.50, "\u00e9"] }"#,
        "plain text, not JSON",
        "",
    ] {
        api.trigger("my-channel", "my-event", data).await;
        let event = client.expect_on("my-event", "my-channel").await;
        assert_eq!(event.raw_data, Some(Value::String(data.to_owned())));
    }
}

#[tokio::test]
async fn subscribe_data_may_be_a_json_string() {
    let server = server().await;
    let app = &server.app;
    let mut client = Client::connect(&server).await;
    client
        .send_text(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"stringly\"}"}"#)
        .await;
    client
        .expect_on("pusher_internal:subscription_succeeded", "stringly")
        .await;
    let auth = auth::authorize_channel(&app.key, &app.secret, &client.socket_id, "private-s", None);
    let data = json!({"channel": "private-s", "auth": auth}).to_string();
    client
        .send(json!({"event": "pusher:subscribe", "data": data}))
        .await;
    client
        .expect_on("pusher_internal:subscription_succeeded", "private-s")
        .await;
}

#[tokio::test]
async fn laravel_event_names_with_backslashes_are_delivered() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    client.subscribe_public("orders").await;
    let name = r"App\Events\OrderShipped";
    Api::new(&server).trigger("orders", name, "{}").await;
    client.expect_on(name, "orders").await;
}

#[tokio::test]
async fn private_channels_need_a_valid_signature() {
    let server = server().await;
    let app = &server.app;
    let mut client = Client::connect(&server).await;
    let channel = "private-orders";
    let good = auth::authorize_channel(&app.key, &app.secret, &client.socket_id, channel, None);
    let other_socket = auth::authorize_channel(&app.key, &app.secret, "1.1", channel, None);
    let other_channel =
        auth::authorize_channel(&app.key, &app.secret, &client.socket_id, "private-x", None);
    let wrong_secret = auth::authorize_channel(&app.key, "nope", &client.socket_id, channel, None);
    let signature = good.split_once(':').unwrap().1;
    let refused = [
        Value::Null,
        json!(""),
        json!(format!("other-key:{signature}")),
        json!(signature),
        json!(other_socket),
        json!(other_channel),
        json!(wrong_secret),
        json!(format!("{}:{}", app.key, tamper(signature))),
    ];
    for auth in refused {
        let mut data = json!({"channel": channel});
        if !auth.is_null() {
            data["auth"] = auth;
        }
        client
            .send(json!({"event": "pusher:subscribe", "data": data}))
            .await;
        let error = client.expect_refused(channel, 401).await;
        assert!(!error.error_message().is_empty());
    }
    // Still open, and the right signature still works on the same socket.
    client.assert_alive().await;
    client.subscribe_private(app, channel).await;
    Api::new(&server).trigger(channel, "paid", "{}").await;
    client.expect_on("paid", channel).await;
}

/// The signature with its first hex digit changed.
fn tamper(signature: &str) -> String {
    let first = if signature.starts_with('0') { '1' } else { '0' };
    format!("{first}{}", &signature[1..])
}

#[tokio::test]
async fn a_bad_signature_names_the_string_that_should_have_been_signed() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    let auth = format!("{}:{}", server.app.key, "0".repeat(64));
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "private-a", "auth": auth}}))
        .await;
    let error = client.expect_refused("private-a", 401).await;
    let expected = format!("{}:private-a", client.socket_id);
    assert!(error.error_message().contains(&expected), "{}", error.text);
}

#[tokio::test]
async fn private_channel_data_is_part_of_the_signature_when_sent() {
    let server = server().await;
    let app = &server.app;
    let mut client = Client::connect(&server).await;
    let data = r#"{"foo":"bar"}"#;
    client
        .send_subscribe(app, "private-with-data", Some(data))
        .await;
    client
        .expect_on(
            "pusher_internal:subscription_succeeded",
            "private-with-data",
        )
        .await;

    // Signed without the data it carries: refused.
    let auth = auth::authorize_channel(&app.key, &app.secret, &client.socket_id, "private-b", None);
    let subscribe = json!({"event": "pusher:subscribe", "data": {
        "channel": "private-b", "auth": auth, "channel_data": data}});
    client.send(subscribe).await;
    client.expect_refused("private-b", 401).await;
}

#[tokio::test]
async fn encrypted_channels_authorize_like_private_ones_and_relay_opaque_data() {
    let server = server().await;
    let app = &server.app;
    let channel = "private-encrypted-secrets";
    let mut client = Client::connect(&server).await;
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": ""}}))
        .await;
    client.expect_refused(channel, 401).await;
    client.subscribe_private(app, channel).await;

    let data = r#"{"nonce":"WEFKSTBZNkRQQkhTQUhYVEhWM0EzWk1G","ciphertext":"tsYJa2JgGDOpVIYFe4aNVWAvZlpB7z7CjN9mpIdbATE0Yc4izN8aM8D6VigBxnIQ"}"#;
    // Node sends a one-element `channels` array even for an encrypted channel.
    let body = json!({"name": "secret", "channels": [channel], "data": data});
    Api::new(&server).post("/events", &body).await.ok();
    let event = client.expect_on("secret", channel).await;
    assert_eq!(event.raw_data, Some(json!(data)));
}

#[tokio::test]
async fn unsubscribed_clients_get_no_more_events() {
    let server = server().await;
    let api = Api::new(&server);
    let mut client = Client::connect(&server).await;
    client.subscribe_public("news").await;
    client.subscribe_public("marker").await;
    client
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}))
        .await;
    // Unsubscribing has no reply; the pong shows it was processed.
    client.assert_alive().await;
    api.trigger("news", "missed", "{}").await;
    api.trigger("marker", "marker", "{}").await;
    client.expect_on("marker", "marker").await;

    // Unsubscribing from a channel never joined is silently ignored.
    client
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "never-joined"}}))
        .await;
    client.assert_alive().await;
}

#[tokio::test]
async fn subscribing_twice_is_reported_without_a_second_success() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    client.subscribe_public("twice").await;
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "twice", "auth": ""}}))
        .await;
    let error = client.expect_error().await;
    assert!(
        error
            .error_message()
            .contains("Existing subscription to channel twice"),
        "{}",
        error.text
    );
    client.assert_alive().await;
}

#[tokio::test]
async fn channel_names_are_checked() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    let limit = "a".repeat(200);
    client.subscribe_public(&limit).await;
    let between_doc_and_sdk_limits = format!("private-{}", "b".repeat(160));
    client
        .subscribe_private(&server.app, &between_doc_and_sdk_limits)
        .await;
    client.subscribe_public("-_=@,.;AZaz09").await;

    let too_long = "a".repeat(201);
    let invalid = [
        "has space",
        "bang!",
        "slash/x",
        "colon:x",
        "ümlaut",
        "#hash",
        "#server-to-user-",
        too_long.as_str(),
    ];
    for name in invalid {
        client
            .send(json!({"event": "pusher:subscribe", "data": {"channel": name, "auth": ""}}))
            .await;
        client.expect_refused(name, 400).await;
    }
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "", "auth": ""}}))
        .await;
    client.expect_error().await;
    client.expect("pusher:subscription_error").await;
    client.assert_alive().await;
}

#[tokio::test]
async fn huge_channel_names_are_refused_without_echoing_them_whole() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    let huge = "h".repeat(50_000);
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": huge, "auth": ""}}))
        .await;
    let error = client.expect_error().await;
    assert!(error.text.len() < 1_000, "{} bytes", error.text.len());
    let refused = client.expect("pusher:subscription_error").await;
    let echoed = refused.channel.unwrap();
    assert!(
        echoed.len() <= 1024 && huge.starts_with(&echoed),
        "{echoed}"
    );
    client.assert_alive().await;
}

/// A cache channel of each kind, with the `channel_data` a presence one needs.
fn cache_channels() -> [(&'static str, Option<String>); 4] {
    [
        ("cache-prices", None),
        ("private-cache-prices", None),
        ("private-encrypted-cache-prices", None),
        ("presence-cache-prices", Some(member("7", "Cache"))),
    ]
}

async fn subscribe_any(
    client: &mut Client,
    app: &comnestor_server::apps::App,
    channel: &str,
    channel_data: Option<&str>,
) {
    if channel.starts_with("cache-") {
        client
            .send(json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": ""}}))
            .await;
    } else {
        client.send_subscribe(app, channel, channel_data).await;
    }
    client
        .expect_on("pusher_internal:subscription_succeeded", channel)
        .await;
}

#[tokio::test]
async fn cache_channels_report_a_miss_then_replay_the_last_event() {
    let server = server().await;
    let api = Api::new(&server);
    for (channel, channel_data) in cache_channels() {
        let mut first = Client::connect(&server).await;
        subscribe_any(&mut first, &server.app, channel, channel_data.as_deref()).await;
        let miss = first.expect_on("pusher:cache_miss", channel).await;
        assert!(miss.user_id.is_none());

        api.trigger(channel, "price", r#"{"v":1}"#).await;
        api.trigger(channel, "price", r#"{"v":2}"#).await;
        first.expect_on("price", channel).await;
        first.expect_on("price", channel).await;

        let mut late = Client::connect(&server).await;
        subscribe_any(&mut late, &server.app, channel, channel_data.as_deref()).await;
        let replayed = late.expect_on("price", channel).await;
        assert_eq!(replayed.raw_data, Some(json!(r#"{"v":2}"#)), "{channel}");
        late.assert_alive().await;
    }
}

#[tokio::test]
async fn a_cached_event_outlives_its_subscribers() {
    let server = server().await;
    let api = Api::new(&server);
    // Published while nobody listens.
    api.trigger("cache-empty-room", "state", "kept").await;
    let mut client = Client::connect(&server).await;
    client.subscribe_public("cache-empty-room").await;
    let replayed = client.expect_on("state", "cache-empty-room").await;
    assert_eq!(replayed.raw_data, Some(json!("kept")));
}

#[tokio::test]
async fn client_events_are_not_cached() {
    let server = server().await;
    let app = &server.app;
    let channel = "private-cache-chat";
    let mut sender = Client::connect(&server).await;
    sender.subscribe_private(app, channel).await;
    sender.expect_on("pusher:cache_miss", channel).await;
    sender
        .client_event(channel, "client-typing", json!({}))
        .await;
    sender.assert_alive().await;

    let mut late = Client::connect(&server).await;
    late.subscribe_private(app, channel).await;
    late.expect_on("pusher:cache_miss", channel).await;
}

#[tokio::test]
async fn subscription_count_is_broadcast_where_the_app_enables_it() {
    let server = server_with(|s| s.subscription_count = true).await;
    let api = Api::new(&server);
    let count = |frame: &crate::support::Frame| frame.data["subscription_count"].as_u64();

    let mut first = Client::connect(&server).await;
    first.subscribe_public("counted").await;
    let own = first
        .expect_on("pusher_internal:subscription_count", "counted")
        .await;
    assert_eq!(count(&own), Some(1));

    let mut second = Client::connect(&server).await;
    second.subscribe_public("counted").await;
    for client in [&mut first, &mut second] {
        let frame = client
            .expect_on("pusher_internal:subscription_count", "counted")
            .await;
        assert_eq!(count(&frame), Some(2));
    }

    second
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "counted"}}))
        .await;
    let frame = first
        .expect_on("pusher_internal:subscription_count", "counted")
        .await;
    assert_eq!(count(&frame), Some(1));

    // Private channels count too; presence channels never do.
    first
        .subscribe_private(&server.app, "private-counted")
        .await;
    first
        .expect_on("pusher_internal:subscription_count", "private-counted")
        .await;
    first
        .subscribe_presence(&server.app, "presence-uncounted", &member("1", "One"))
        .await;
    second
        .subscribe_presence(&server.app, "presence-uncounted", &member("2", "Two"))
        .await;
    first
        .expect_on("pusher_internal:member_added", "presence-uncounted")
        .await;
    api.trigger("presence-uncounted", "marker", "{}").await;
    first.expect_on("marker", "presence-uncounted").await;
    second.expect_on("marker", "presence-uncounted").await;
}

#[tokio::test]
async fn subscription_count_is_not_sent_by_default() {
    let server = server().await;
    let mut first = Client::connect(&server).await;
    first.subscribe_public("quiet").await;
    let mut second = Client::connect(&server).await;
    second.subscribe_public("quiet").await;
    Api::new(&server).trigger("quiet", "marker", "{}").await;
    first.expect_on("marker", "quiet").await;
    second.expect_on("marker", "quiet").await;
}
