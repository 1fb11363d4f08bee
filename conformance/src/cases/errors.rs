//! Error codes and connection closure (§1.6, §1.7, §2.5).

use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::{Area, Ctx, Need};
use crate::client::Client;

pub fn cases() -> Vec<super::Case> {
    let area = Area::Errors;
    vec![
        case!(
            area,
            unknown_app_closes_4001,
            Need::Nothing,
            "§1.6: an unknown app key closes the connection with code 4001 in the close frame (protocol >= 6); a pusher:error sent first carries code 4001, never null"
        ),
        case!(
            area,
            error_frame_shape,
            Need::Nothing,
            "§1.2, §1.7: pusher:error data holds a string message and an integer or null code"
        ),
        case!(
            area,
            refused_subscription_keeps_socket,
            Need::Nothing,
            "§2.5: a refused subscription is reported without closing the socket"
        ),
        case!(
            area,
            invalid_json_no_43xx_close,
            Need::Nothing,
            "§1.6: a socket is never closed with a 43xx code (pusher-js would never reconnect); invalid JSON gets a pusher:error or a non-43xx close"
        ),
        case!(
            area,
            binary_frame_no_43xx_close,
            Need::Nothing,
            "§1.1, §1.6: binary frames are not supported; the server reports or closes, but never with a 43xx code"
        ),
    ]
}

async fn unknown_app_closes_4001(ctx: Arc<Ctx>) -> Result<()> {
    let url = format!(
        "{}/app/no-such-key-{}?protocol=7&client=js&version=8.6.0&flash=false",
        ctx.cfg.primary.ws,
        ctx.user()
    );
    let mut client = Client::open(&url, ctx.cfg.wait).await?;
    let code = client.expect_close(ctx.cfg.wait).await?;
    if let Some(frame) = client
        .backlog()
        .find(|f| f.event == "pusher:connection_established")
    {
        bail!("an unknown app key got {}", frame.raw);
    }
    if let Some(error) = client.backlog().find(|f| f.event == "pusher:error") {
        ensure!(
            error.error_code() == Some(4001),
            "the pusher:error before the close must carry code 4001: {}",
            error.raw
        );
    }
    ensure!(code == Some(4001), "close code {code:?}, expected 4001");
    Ok(())
}

/// Checks the §1.7 shape and returns the code.
pub fn error_shape(frame: &crate::client::Frame) -> Result<Option<i64>> {
    let data = frame.data_value();
    ensure!(
        data.is_object(),
        "pusher:error data is not an object: {}",
        frame.raw
    );
    ensure!(
        data["message"].is_string(),
        "pusher:error without a string message: {}",
        frame.raw
    );
    match &data["code"] {
        Value::Null => Ok(None),
        Value::Number(n) if n.is_i64() => Ok(n.as_i64()),
        other => bail!("pusher:error code must be an integer or null, got {other}"),
    }
}

async fn error_frame_shape(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("private-");
    client.subscribe(
        &channel,
        Some(&format!("{}:{}", ctx.cfg.key, "0".repeat(64))),
        None,
    );
    let frame = client.expect_event("pusher:error", None).await?;
    error_shape(&frame)?;
    Ok(())
}

async fn refused_subscription_keeps_socket(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("private-");
    client.subscribe(&channel, Some("nonsense"), None);
    super::refused(&mut client, &channel).await?;
    let public = ctx.channel("");
    ctx.subscribe_public(&mut client, &public).await?;
    Ok(())
}

async fn no_43xx_close(client: &mut Client, ctx: &Ctx) -> Result<()> {
    let outcome = client
        .expect("a pusher:error or a close", |f| f.event == "pusher:error")
        .await;
    match outcome {
        Ok(frame) => {
            error_shape(&frame)?;
            if client.assert_open().await.is_ok() {
                return Ok(());
            }
        }
        Err(error) if !client.is_closed() => return Err(error),
        Err(_) => {}
    }
    let code = client.expect_close(ctx.cfg.wait).await?;
    ensure!(
        !code.is_some_and(|c| (4300..4400).contains(&c)),
        "closed with {code:?}: 43xx close codes make pusher-js give up"
    );
    Ok(())
}

async fn invalid_json_no_43xx_close(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    client.send_raw(Message::text("this is not json"));
    no_43xx_close(&mut client, &ctx).await
}

async fn binary_frame_no_43xx_close(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    client.send_raw(Message::Binary(
        br#"{"event":"pusher:ping","data":{}}"#.to_vec().into(),
    ));
    // Either a pusher:error, a close, or (tolerated) silence followed by a working socket.
    match client
        .expect_within("a reply to a binary frame", ctx.cfg.quiet, |f| {
            f.event == "pusher:error" || f.event == "pusher:pong"
        })
        .await
    {
        Ok(_) => {}
        Err(_) if client.is_closed() => {
            let code = client.expect_close(ctx.cfg.wait).await?;
            ensure!(
                !code.is_some_and(|c| (4300..4400).contains(&c)),
                "closed with {code:?}: 43xx close codes make pusher-js give up"
            );
            return Ok(());
        }
        Err(_) => {}
    }
    if !client.is_closed() {
        client.assert_open().await?;
    }
    Ok(())
}
