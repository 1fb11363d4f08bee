//! Apps changed while the server runs, slow clients, and graceful shutdown.

use std::time::Duration;

use comnestor_server::testing::TestServer;
use serde_json::json;
use tokio::net::TcpSocket;
use tokio_tungstenite::MaybeTlsStream;

use crate::support::{Api, Client, Received, WAIT, expect_close, open, open_with_origin, server};

#[tokio::test]
async fn disabling_an_app_closes_its_connections_with_4003() {
    let server = server().await;
    let mut first = Client::connect(&server).await;
    first.subscribe_public("news").await;
    let mut second = Client::connect(&server).await;

    server
        .update_app(&server.app.id, |app| app.enabled = false)
        .await;
    first.expect_close(4003).await;
    second.expect_close(4003).await;
    let mut refused = open(&server.ws_url()).await;
    expect_close(&mut refused, 4003).await;
    Api::new(&server).get("/channels", &[]).await.refused(403);

    server
        .update_app(&server.app.id, |app| app.enabled = true)
        .await;
    let mut back = Client::connect(&server).await;
    back.assert_alive().await;
    assert_eq!(
        Api::new(&server).get("/channels", &[]).await.ok(),
        json!({"channels": {}})
    );
}

#[tokio::test]
async fn deleting_an_app_or_changing_its_key_closes_its_connections_with_4001() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    server
        .update_app(&server.app.id, |app| app.key = "rotated-key".into())
        .await;
    client.expect_close(4001).await;
    let mut old_key = open(&server.ws_url()).await;
    expect_close(&mut old_key, 4001).await;
    let rotated = format!("ws://{}/app/rotated-key?protocol=7", server.addr);
    let mut client = Client::connect_to(&rotated).await;

    server.store().delete(&server.app.id).await.unwrap();
    client.expect_close(4001).await;
}

#[tokio::test]
async fn settings_changes_take_effect_without_a_restart() {
    let server = server().await;
    let app = server.app.clone();
    let mut sender = Client::connect(&server).await;
    sender.subscribe_private(&app, "private-chat").await;
    let mut receiver = Client::connect(&server).await;
    receiver.subscribe_private(&app, "private-chat").await;
    sender
        .client_event("private-chat", "client-a", json!({}))
        .await;
    receiver.expect_on("client-a", "private-chat").await;

    server
        .update_app(&app.id, |app| {
            app.settings.client_events = false;
            app.settings.user_authentication = false;
            app.settings.subscription_count = true;
            app.settings.activity_timeout = 30;
            app.settings.max_connections = Some(3);
        })
        .await;

    // Existing connections follow the new settings.
    sender
        .client_event("private-chat", "client-b", json!({}))
        .await;
    let error = sender.expect_error().await;
    assert!(error.error_message().contains("disabled"), "{}", error.text);
    sender.send_signin(&app, r#"{"id":"1"}"#).await;
    sender.expect_error().await;
    sender.subscribe_public("counted").await;
    sender
        .expect_on("pusher_internal:subscription_count", "counted")
        .await;

    // New ones too.
    let mut third = Client::connect(&server).await;
    assert_eq!(third.activity_timeout, 30);
    let mut fourth = open(&server.ws_url()).await;
    expect_close(&mut fourth, 4004).await;
    third.assert_alive().await;

    server
        .update_app(&app.id, |app| {
            app.settings.allowed_origins = vec!["https://only.test".into()];
            app.settings.max_connections = None;
        })
        .await;
    let mut no_origin = open(&server.ws_url()).await;
    expect_close(&mut no_origin, 4009).await;
    let allowed = open_with_origin(&server.ws_url(), Some("https://only.test")).await;
    Client::established(allowed).await.assert_alive().await;
}

/// A client whose receive buffer is tiny and that reads nothing once subscribed to
/// `channels`, so the server's writes to it block as soon as the kernel buffers are full.
async fn stuck_client(server: &TestServer, channels: &[String]) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(server.ws_url(), MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    let mut client = Client::established(ws).await;
    for channel in channels {
        client
            .send(json!({"event": "pusher:subscribe", "data": {"auth": "", "channel": channel}}))
            .await;
    }
    for channel in channels {
        client
            .expect_on("pusher_internal:subscription_succeeded", channel)
            .await;
    }
    client
}

/// Queues more than any socket buffer holds for subscribers of `channel`: eight events of
/// 900 kB, far above the 4 MB loopback send buffer plus the stuck client's 4 kB.
async fn clog(api: &Api, channel: &str) {
    let data = "x".repeat(900_000);
    for _ in 0..8 {
        api.trigger(channel, "bulk", &data).await;
    }
}

/// Reads until the close, skipping channel events; returns the close code and the error codes
/// seen on the way.
async fn drain_until_close(client: &mut Client) -> (Option<u16>, Vec<Option<u64>>) {
    let mut errors = Vec::new();
    loop {
        match client.receive().await {
            Received::Frame(frame) if frame.event == "pusher:error" => {
                errors.push(frame.error_code());
            }
            Received::Frame(frame) => assert!(frame.channel.is_some(), "{}", frame.text),
            Received::Close(code) => return (code, errors),
            Received::Other(_) => {}
        }
    }
}

#[tokio::test]
async fn a_client_too_slow_to_read_is_closed_with_4100() {
    let server = TestServer::start_with(|s| s.max_event_size = 1_000_000).await;
    let api = Api::new(&server);
    let channels: Vec<String> = (0..100).map(|n| format!("c{n}")).collect();
    let mut slow = stuck_client(&server, &channels).await;
    let mut healthy = Client::connect(&server).await;
    healthy.subscribe_public("c0").await;

    clog(&api, "c0").await;
    // Then more small frames than a connection may have waiting (1024).
    for _ in 0..11 {
        let body = json!({"name": "small", "channels": channels, "data": "{}"});
        api.post("/events", &body).await.ok();
    }
    for _ in 0..8 {
        healthy.expect_on("bulk", "c0").await;
    }

    let (code, errors) = drain_until_close(&mut slow).await;
    assert_eq!(code, Some(4100));
    assert_eq!(errors, [Some(4100)]);
    // The healthy subscriber of the same channel got everything and stays connected.
    for _ in 0..11 {
        healthy.expect_on("small", "c0").await;
    }
    healthy.assert_alive().await;
}

#[tokio::test]
async fn a_client_that_takes_nothing_for_its_activity_timeout_is_dropped() {
    let server = TestServer::start_with(|s| {
        s.max_event_size = 1_000_000;
        s.activity_timeout = 1;
    })
    .await;
    let api = Api::new(&server);
    let stuck = stuck_client(&server, &["bulk".to_owned()]).await;
    clog(&api, "bulk").await;

    // Its connection task waits for the socket to take a write; one activity timeout later
    // it gives up, and the client leaves the channel without ever reading again.
    let deadline = tokio::time::Instant::now() + WAIT + Duration::from_secs(1);
    loop {
        let info = api.get("/channels/bulk", &[]).await.ok();
        if info["occupied"] == json!(false) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck client is still subscribed: {info}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stuck);
}

/// GETs `/up` until it answers 503, failing if the server stops listening first.
async fn wait_for_draining(base: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = reqwest::get(format!("{base}/up"))
            .await
            .expect("the server keeps listening while it drains");
        match response.status().as_u16() {
            503 => return,
            200 => assert!(tokio::time::Instant::now() < deadline, "/up never said 503"),
            other => panic!("/up answered {other}"),
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn shutdown_asks_clients_to_reconnect_with_4200_and_up_answers_503() {
    let server = TestServer::start_configured(
        |s| s.max_event_size = 1_000_000,
        |config| config.shutdown_grace = Duration::from_secs(30),
    )
    .await;
    let base = server.http_url();
    let ws_url = server.ws_url();
    let api = Api::new(&server);
    let mut client = Client::connect(&server).await;
    client.subscribe_public("news").await;
    // A client that cannot take its frames holds the drain open until it reads them.
    let mut slow = stuck_client(&server, &["bulk".to_owned()]).await;
    clog(&api, "bulk").await;

    let shutdown = tokio::spawn(server.shutdown());
    client.expect_close(4200).await;
    wait_for_draining(&base).await;
    let mut late = open(&ws_url).await;
    expect_close(&mut late, 4200).await;

    let (code, errors) = drain_until_close(&mut slow).await;
    assert_eq!(code, Some(4200));
    assert_eq!(errors, [Some(4200)]);
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown finishes once the clients are gone")
        .unwrap();
}
