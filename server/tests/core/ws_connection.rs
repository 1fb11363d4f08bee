//! The connection itself: the handshake, pings, admission close codes and bad input.

use std::time::Duration;

use comnestor_server::apps::NewApp;
use comnestor_server::testing::TestServer;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    Api, Client, Received, expect_close, member, open, open_with_origin, receive, server,
    server_with,
};

fn is_socket_id(id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    id.split_once('.')
        .is_some_and(|(left, right)| digits(left) && digits(right))
}

fn url(server: &TestServer, path_and_query: &str) -> String {
    format!("ws://{}{path_and_query}", server.addr)
}

/// A second client that must keep working while another misbehaves.
async fn bystander(server: &TestServer) -> Client {
    let mut client = Client::connect(server).await;
    client.subscribe_public("bystander").await;
    client
}

async fn assert_bystander_works(server: &TestServer, client: &mut Client) {
    client.assert_alive().await;
    Api::new(server)
        .trigger("bystander", "still-here", "{}")
        .await;
    client.expect_on("still-here", "bystander").await;
}

#[tokio::test]
async fn connection_established_carries_socket_id_and_activity_timeout() {
    let server = server().await;
    let first = Client::connect(&server).await;
    let second = Client::connect(&server).await;
    for client in [&first, &second] {
        assert!(is_socket_id(&client.socket_id), "{}", client.socket_id);
        assert_eq!(client.activity_timeout, 120);
    }
    assert_ne!(first.socket_id, second.socket_id);
}

#[tokio::test]
async fn accepts_protocols_5_to_7_with_any_client_and_version() {
    let server = server().await;
    for query in [
        "protocol=7&client=js&version=8.6.0&flash=false",
        "client=java-client&protocol=5&version=2.4.0",
        "protocol=6",
    ] {
        let url = url(&server, &format!("/app/{}?{query}", server.app.key));
        let mut client = Client::connect_to(&url).await;
        client.assert_alive().await;
    }
}

#[tokio::test]
async fn pusher_ping_is_answered_with_pong_whatever_its_data() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    for ping in [
        r#"{"event":"pusher:ping","data":{}}"#,
        r#"{"event":"pusher:ping","data":"{}"}"#,
        r#"{"event":"pusher:ping"}"#,
    ] {
        client.send_text(ping).await;
        client.expect("pusher:pong").await;
    }
    // A pong from the client needs no answer.
    client
        .send(json!({"event": "pusher:pong", "data": {}}))
        .await;
    client.assert_alive().await;
}

#[tokio::test]
async fn websocket_ping_is_answered_with_websocket_pong() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    client
        .ws
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    match client.receive().await {
        Received::Other(Message::Pong(payload)) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

/// The real server runs on this test's current-thread runtime, so `tokio::time::pause` moves
/// its clock too. Time is paused only after the handshake: with a paused clock the runtime
/// jumps to the next timer every time it parks, even while a reply is on its way over the
/// socket, so a short timeout would fire before any reply. Hence the waits below, in virtual
/// time, are far longer than the 120 s activity and 30 s pong timeouts, and nothing after the
/// pause expects a reply within a short time. A pong that has reached the server's socket is
/// read before the pong timer is looked at, because the connection polls its socket first.
const VIRTUAL_WAIT: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn idle_client_is_pinged_then_closed_with_4201_without_pong() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    tokio::time::pause();

    match receive(&mut client.ws, VIRTUAL_WAIT).await {
        Received::Frame(frame) => assert_eq!(frame.event, "pusher:ping", "{}", frame.text),
        other => panic!("expected the server's ping, got {other:?}"),
    }
    match receive(&mut client.ws, VIRTUAL_WAIT).await {
        Received::Frame(frame) => {
            assert_eq!(frame.error_code(), Some(4201), "{}", frame.text);
            assert_eq!(
                receive(&mut client.ws, VIRTUAL_WAIT).await.close_code(),
                Some(4201)
            );
        }
        Received::Close(code) => assert_eq!(code, Some(4201)),
        other => panic!("expected close 4201, got {other:?}"),
    }
}

#[tokio::test]
async fn answering_the_servers_ping_keeps_the_connection_open() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    tokio::time::pause();

    for round in 0..4 {
        match receive(&mut client.ws, VIRTUAL_WAIT).await {
            Received::Frame(frame) => assert_eq!(frame.event, "pusher:ping", "{}", frame.text),
            other => panic!("expected the server's ping in round {round}, got {other:?}"),
        }
        // Any message counts as activity; pusher-js answers with this pong.
        client
            .send(json!({"event": "pusher:pong", "data": {}}))
            .await;
    }
}

impl Received {
    fn close_code(self) -> Option<u16> {
        match self {
            Received::Close(code) => code,
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unknown_app_key_is_closed_with_4001() {
    let server = server().await;
    let mut ws = open(&url(&server, "/app/no-such-key?protocol=7")).await;
    expect_close(&mut ws, 4001).await;
}

#[tokio::test]
async fn disabled_app_is_closed_with_4003() {
    let server = server().await;
    let app = server
        .create_app(NewApp {
            id: Some("200".into()),
            key: Some("disabled-key".into()),
            secret: Some("disabled-secret".into()),
            enabled: false,
            ..NewApp::default()
        })
        .await;
    let mut ws = open(&url(&server, &format!("/app/{}?protocol=7", app.key))).await;
    expect_close(&mut ws, 4003).await;
}

#[tokio::test]
async fn connections_over_the_quota_are_closed_with_4004() {
    let server = server_with(|s| s.max_connections = Some(2)).await;
    let mut first = Client::connect(&server).await;
    first
        .subscribe_presence(&server.app, "presence-q", &member("1", "One"))
        .await;
    let mut second = Client::connect(&server).await;
    second
        .subscribe_presence(&server.app, "presence-q", &member("2", "Two"))
        .await;
    first.expect("pusher_internal:member_added").await;
    let mut third = open(&server.ws_url()).await;
    expect_close(&mut third, 4004).await;
    first.assert_alive().await;

    // A freed place can be taken again. The member_removed shows the server has handled
    // the disconnect, which releases the place in the same step.
    drop(second);
    first.expect("pusher_internal:member_removed").await;
    let mut retry = Client::connect(&server).await;
    retry.assert_alive().await;
}

#[tokio::test]
async fn unknown_paths_are_closed_with_4005() {
    let server = server().await;
    let key = &server.app.key;
    for path in [
        "/".to_owned(),
        "/socket?protocol=7".to_owned(),
        "/app?protocol=7".to_owned(),
        format!("/app/{key}/extra?protocol=7"),
        format!("/pusher/app/{key}?protocol=7"),
        // Paths where HTTP routes with other methods live.
        "/apps/100/events?protocol=7".to_owned(),
        "/api/events?protocol=7".to_owned(),
        "/up".to_owned(),
    ] {
        let mut ws = open(&url(&server, &path)).await;
        expect_close(&mut ws, 4005).await;
    }
}

#[tokio::test]
async fn plain_http_on_the_socket_path_gets_a_json_error() {
    let server = server().await;
    let url = format!("{}/app/{}?protocol=7", server.http_url(), server.app.key);
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status().as_u16(), 426);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn version_and_protocol_errors_close_with_4006_to_4008() {
    let server = server().await;
    let key = &server.app.key;
    for (query, code) in [
        ("protocol=7&client=js&version=banana", 4006),
        ("protocol=4&client=js&version=8.6.0", 4007),
        ("protocol=8", 4007),
        ("protocol=seven", 4007),
        ("client=js&version=8.6.0", 4008),
        ("", 4008),
    ] {
        let mut ws = open(&url(&server, &format!("/app/{key}?{query}"))).await;
        expect_close(&mut ws, code).await;
    }
}

#[tokio::test]
async fn refused_origin_is_closed_with_4009() {
    let server = server_with(|s| s.allowed_origins = vec!["https://*.good.test".into()]).await;
    let mut allowed = open_with_origin(&server.ws_url(), Some("https://app.good.test")).await;
    let mut client = Client::established(allowed).await;
    client.assert_alive().await;

    for origin in [
        Some("https://evil.test"),
        Some("https://good.test.evil"),
        None,
    ] {
        allowed = open_with_origin(&server.ws_url(), origin).await;
        expect_close(&mut allowed, 4009).await;
    }
}

#[tokio::test]
async fn malformed_json_gets_an_error_and_the_connection_stays_open() {
    let server = server().await;
    let mut other = bystander(&server).await;
    let mut client = Client::connect(&server).await;
    for text in [
        "not json",
        "{\"event\":",
        "[1,2,3]",
        "{\"data\":{}}",
        "{\"event\":42}",
        "",
    ] {
        client.send_text(text).await;
        let error = client.expect_error().await;
        assert_eq!(error.error_code(), None, "{}", error.text);
        assert!(
            error.error_message().contains("JSON"),
            "{text}: {}",
            error.text
        );
    }
    client.assert_alive().await;
    assert_bystander_works(&server, &mut other).await;
}

#[tokio::test]
async fn unknown_events_get_an_error_and_the_connection_stays_open() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    for event in [
        "pusher:nonsense",
        "pusher_internal:subscription_succeeded",
        "hello",
    ] {
        client.send(json!({"event": event, "data": {}})).await;
        let error = client.expect_error().await;
        assert!(error.error_message().contains(event), "{}", error.text);
    }
    for text in [
        r#"{"event":"pusher:subscribe"}"#,
        r#"{"event":"pusher:subscribe","data":"nope"}"#,
        r#"{"event":"pusher:subscribe","data":{"auth":""}}"#,
        r#"{"event":"pusher:unsubscribe","data":[]}"#,
        r#"{"event":"pusher:signin","data":{}}"#,
    ] {
        client.send_text(text).await;
        client.expect_error().await;
    }
    client.assert_alive().await;
}

#[tokio::test]
async fn binary_frames_get_an_error_and_the_connection_stays_open() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    let frame = br#"{"event":"pusher:ping","data":{}}"#.to_vec();
    client.ws.send(Message::Binary(frame.into())).await.unwrap();
    let error = client.expect_error().await;
    assert!(error.error_message().contains("Binary"), "{}", error.text);
    client.assert_alive().await;
}

#[tokio::test]
async fn messages_over_the_apps_limit_get_an_error_and_the_connection_stays_open() {
    let server = server_with(|s| s.max_message_size = 1_000).await;
    let mut client = Client::connect(&server).await;
    let padding = "x".repeat(2_000);
    client
        .send(json!({"event": "pusher:ping", "data": {"padding": padding}}))
        .await;
    let error = client.expect_error().await;
    assert!(error.error_message().contains("1000"), "{}", error.text);
    client.assert_alive().await;
}

#[tokio::test]
async fn frames_over_the_hard_limit_close_with_1009() {
    let server = server().await;
    let mut other = bystander(&server).await;
    let mut client = Client::connect(&server).await;
    let huge = format!(
        r#"{{"event":"pusher:ping","data":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    client.send_text(&huge).await;
    assert_eq!(client.receive().await.close_code(), Some(1009));
    assert_bystander_works(&server, &mut other).await;
}

#[tokio::test]
async fn abrupt_disconnects_do_not_disturb_other_clients() {
    let server = server().await;
    let mut other = bystander(&server).await;
    let mut watcher = Client::connect(&server).await;
    watcher
        .subscribe_presence(&server.app, "presence-room", &member("stay", "Stay"))
        .await;
    for i in 0..3 {
        let user = format!("gone-{i}");
        let mut client = Client::connect(&server).await;
        client.subscribe_public("bystander").await;
        client
            .subscribe_presence(&server.app, "presence-room", &member(&user, "Gone"))
            .await;
        watcher.expect("pusher_internal:member_added").await;
        // Half a frame, then the TCP connection goes away without a close handshake.
        client.send_raw_bytes(b"\x81\x7e\x00").await;
        drop(client);
        let removed = watcher.expect("pusher_internal:member_removed").await;
        assert_eq!(removed.data["user_id"], user.as_str());
    }
    assert_bystander_works(&server, &mut other).await;

    let channels = Api::new(&server).get("/channels", &[]).await.ok();
    assert_eq!(
        channels,
        json!({"channels": {"bystander": {}, "presence-room": {}}})
    );
}
