//! Private channels and their authorization signatures (§2.3).

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use super::{Area, Ctx, Need};

pub fn cases() -> Vec<super::Case> {
    let area = Area::Private;
    vec![
        case!(
            area,
            valid_signature_succeeds,
            Need::Nothing,
            "§2.3: auth = key:hex(HMAC-SHA256(secret, socket_id:channel)) subscribes a private- channel"
        ),
        case!(
            area,
            bad_signature_refused,
            Need::Nothing,
            "§2.3, §2.5: a wrong signature is refused, and the socket stays open"
        ),
        case!(
            area,
            missing_auth_refused,
            Need::Nothing,
            "§2.1: private- channels need auth; none or \"\" is refused"
        ),
        case!(
            area,
            wrong_key_refused,
            Need::Nothing,
            "§2.3: the part of auth before ':' must be the app key"
        ),
        case!(
            area,
            other_socket_refused,
            Need::Nothing,
            "§2.3: a signature made for another socket_id is refused"
        ),
        case!(
            area,
            other_channel_refused,
            Need::Nothing,
            "§2.3: a signature made for another channel is refused"
        ),
        case!(
            area,
            channel_data_signed_when_present,
            Need::Nothing,
            "§2.3: when channel_data is present on a private channel it is part of the signed string (pusher-http-node, Reverb, poxa)"
        ),
        case!(
            area,
            http_event_delivered,
            Need::Nothing,
            "§1.2, §3.3: HTTP events reach private channel subscribers"
        ),
    ]
}

async fn valid_signature_succeeds(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("private-");
    ctx.subscribe_private(&mut client, &channel).await?;
    Ok(())
}

async fn refuse_with(ctx: &Ctx, auth: impl Fn(&str, &str) -> Option<String>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("private-");
    let auth = auth(&client.socket_id, &channel);
    client.subscribe(&channel, auth.as_deref(), None);
    super::refused(&mut client, &channel).await?;
    Ok(())
}

async fn bad_signature_refused(ctx: Arc<Ctx>) -> Result<()> {
    let key = ctx.cfg.key.clone();
    refuse_with(&ctx, |_, _| Some(format!("{key}:{}", "ab".repeat(32)))).await
}

async fn missing_auth_refused(ctx: Arc<Ctx>) -> Result<()> {
    refuse_with(&ctx, |_, _| None).await?;
    refuse_with(&ctx, |_, _| Some(String::new())).await
}

async fn wrong_key_refused(ctx: Arc<Ctx>) -> Result<()> {
    let ctx2 = ctx.clone();
    refuse_with(&ctx, move |socket, channel| {
        let auth = ctx2.auth(socket, channel, None);
        let signature = auth
            .split_once(':')
            .map(|(_, s)| s.to_owned())
            .unwrap_or_default();
        Some(format!("not-{}:{signature}", ctx2.cfg.key))
    })
    .await
}

async fn other_socket_refused(ctx: Arc<Ctx>) -> Result<()> {
    let ctx2 = ctx.clone();
    refuse_with(&ctx, move |_, channel| {
        Some(ctx2.auth("1234.5678", channel, None))
    })
    .await
}

async fn other_channel_refused(ctx: Arc<Ctx>) -> Result<()> {
    let ctx2 = ctx.clone();
    refuse_with(&ctx, move |socket, channel| {
        Some(ctx2.auth(socket, &format!("{channel}-other"), None))
    })
    .await
}

async fn channel_data_signed_when_present(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("private-");
    let data = r#"{"user_id":"7"}"#;
    let auth = ctx.auth(&client.socket_id, &channel, Some(data));
    client.subscribe(&channel, Some(&auth), Some(data));
    super::subscribed(&mut client, &channel).await?;
    Ok(())
}

async fn http_event_delivered(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("private-");
    ctx.subscribe_private(&mut client, &channel).await?;
    ctx.api
        .trigger(json!({"name": "secret", "channels": [channel], "data": "{\"n\":1}"}))
        .await?;
    let frame = client.expect_event("secret", Some(&channel)).await?;
    anyhow::ensure!(
        frame.data_str() == Some("{\"n\":1}"),
        "data changed: {}",
        frame.raw
    );
    Ok(())
}
