//! Connection and handshake (§1.1–§1.4).

use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use serde_json::Value;

use super::{Area, Ctx, Need};
use crate::client::Client;

pub fn cases() -> Vec<super::Case> {
    let area = Area::Connection;
    vec![
        case!(
            area,
            established_first,
            Need::Nothing,
            "§1.3: the first frame after the upgrade is pusher:connection_established, data a JSON-encoded string with socket_id and activity_timeout"
        ),
        case!(
            area,
            socket_id_format,
            Need::Nothing,
            "§1.4: socket_id matches ^\\d+\\.\\d+$, which every server SDK validates"
        ),
        case!(
            area,
            socket_ids_unique,
            Need::Nothing,
            "§1.4: socket_id is a unique identifier of the connection"
        ),
        case!(
            area,
            protocol_versions,
            Need::Nothing,
            "§1.1: protocol 5, 6 and 7 are accepted (pusher-js sends 7, pusher-websocket-java 5)"
        ),
        case!(
            area,
            client_query_variants,
            Need::Nothing,
            "§1.1: the client and version parameters vary by library and are not checked (java-client, no flash=false)"
        ),
        case!(
            area,
            frames_are_json_events,
            Need::Nothing,
            "§1.1, §1.2: every server frame is a text frame holding a JSON object with an event string"
        ),
        case!(
            area,
            client_close_answered,
            Need::Nothing,
            "§1.6: a client's close frame is answered with a close frame (RFC 6455 §5.5.1); a server that only drops the TCP connection makes browsers report an unclean close (1006)"
        ),
    ]
}

async fn established_first(ctx: Arc<Ctx>) -> Result<()> {
    let client = ctx.connect().await?;
    let frame = client.established.as_ref().expect("connect sets it");
    let text = super::double_encoded(frame)?;
    let data: Value = serde_json::from_str(text)?;
    ensure!(
        data["socket_id"].is_string(),
        "socket_id is not a string: {text}"
    );
    ensure!(
        data["activity_timeout"].as_u64().is_some_and(|t| t > 0),
        "activity_timeout must be a positive integer: {text}"
    );
    Ok(())
}

pub fn valid_socket_id(id: &str) -> bool {
    match id.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

async fn socket_id_format(ctx: Arc<Ctx>) -> Result<()> {
    let client = ctx.connect().await?;
    ensure!(
        valid_socket_id(&client.socket_id),
        "socket_id {:?} does not match ^\\d+\\.\\d+$",
        client.socket_id
    );
    Ok(())
}

async fn socket_ids_unique(ctx: Arc<Ctx>) -> Result<()> {
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let client = ctx.connect().await?;
        ensure!(
            !ids.contains(&client.socket_id),
            "socket_id {} was given twice",
            client.socket_id
        );
        ids.push(client.socket_id.clone());
        clients.push(client);
    }
    Ok(())
}

async fn protocol_versions(ctx: Arc<Ctx>) -> Result<()> {
    for protocol in [5, 6, 7] {
        let url = ctx.ws_url(&ctx.cfg.primary, protocol);
        let mut client = Client::connect(&url, ctx.cfg.wait)
            .await
            .map_err(|e| e.context(format!("protocol={protocol}")))?;
        client.assert_open().await?;
    }
    Ok(())
}

async fn client_query_variants(ctx: Arc<Ctx>) -> Result<()> {
    let base = format!("{}/app/{}", ctx.cfg.primary.ws, ctx.cfg.key);
    for query in [
        "?client=java-client&protocol=5&version=2.4.4",
        "?protocol=7&client=js&version=8.6.0",
    ] {
        let url = format!("{base}{query}");
        let mut client = Client::connect(&url, ctx.cfg.wait)
            .await
            .map_err(|e| e.context(query.to_owned()))?;
        client.assert_open().await?;
    }
    Ok(())
}

async fn frames_are_json_events(ctx: Arc<Ctx>) -> Result<()> {
    // The client fails any expectation when a frame is binary or not a JSON event; drive a
    // few kinds of frames through it.
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("");
    ctx.subscribe_public(&mut client, &channel).await?;
    client.assert_open().await?;
    ctx.api
        .trigger(serde_json::json!({"name": "e", "channel": channel, "data": "{}"}))
        .await?;
    client.expect_event("e", Some(&channel)).await?;
    if client.is_closed() {
        bail!("the connection closed");
    }
    Ok(())
}

async fn client_close_answered(ctx: Arc<Ctx>) -> Result<()> {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let mut client = ctx.connect().await?;
    let channel = ctx.channel("");
    ctx.subscribe_public(&mut client, &channel).await?;
    client.send_raw(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })));
    match client.expect_close(ctx.cfg.wait).await? {
        Some(1000) => Ok(()),
        Some(code) => bail!("the close frame was answered with code {code}, not the client's 1000"),
        None => bail!("the server closed the TCP connection without answering the close frame"),
    }
}
