//! Ping, pong and the activity timeout (§1.3, §1.5).

use std::sync::Arc;

use anyhow::{Result, ensure};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::{Area, Ctx, Need};

pub fn cases() -> Vec<super::Case> {
    let area = Area::Ping;
    vec![
        case!(
            area,
            pusher_ping_pong,
            Need::Nothing,
            "§1.5: the server answers a pusher:ping event with a pusher:pong event"
        ),
        case!(
            area,
            ping_data_forms,
            Need::Nothing,
            "§1.5: pusher:ping is answered whether data is {}, \"{}\" or absent"
        ),
        case!(
            area,
            activity_timeout_positive,
            Need::Nothing,
            "§1.3: connection_established carries a positive integer activity_timeout (0 or missing breaks pusher-js)"
        ),
        case!(
            area,
            websocket_ping_pong,
            Need::Nothing,
            "§1.5: the server answers WebSocket protocol pings with pongs carrying the same payload"
        ),
        case!(
            area,
            server_pings_idle_client,
            Need::ActivityWait,
            "§1.5: a server that checks liveness pings a client idle for activity_timeout (pusher:ping or a WebSocket ping); a client that answers stays connected"
        ),
    ]
}

async fn pusher_ping_pong(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    client.send(json!({"event": "pusher:ping", "data": {}}));
    client.expect_event("pusher:pong", None).await?;
    Ok(())
}

async fn ping_data_forms(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    for ping in [
        json!({"event": "pusher:ping", "data": "{}"}),
        json!({"event": "pusher:ping"}),
    ] {
        client.send(ping.clone());
        client
            .expect_event("pusher:pong", None)
            .await
            .map_err(|e| e.context(format!("after {ping}")))?;
    }
    Ok(())
}

async fn activity_timeout_positive(ctx: Arc<Ctx>) -> Result<()> {
    let client = ctx.connect().await?;
    let frame = client.established.as_ref().expect("connect sets it");
    let timeout = frame.data_value()["activity_timeout"].clone();
    ensure!(
        timeout.as_u64().is_some_and(|t| t > 0),
        "activity_timeout is {timeout}, expected a positive integer"
    );
    Ok(())
}

async fn websocket_ping_pong(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    client.send_raw(Message::Ping(b"conformance".to_vec().into()));
    let payload = client.expect_ws_pong().await?;
    ensure!(
        payload == b"conformance",
        "the pong payload differs: {payload:?}"
    );
    Ok(())
}

async fn server_pings_idle_client(ctx: Arc<Ctx>) -> Result<()> {
    let wait = ctx.cfg.activity_timeout_wait.unwrap_or_default();
    let mut client = ctx.connect().await?;
    client.expect_server_ping(wait).await?;
    // The client answered pusher:ping with pusher:pong (tungstenite answers WebSocket pings).
    client.assert_open().await?;
    Ok(())
}
