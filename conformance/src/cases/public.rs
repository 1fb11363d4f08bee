//! Public channels and HTTP-triggered events (§1.2, §2.1, §2.2, §3.3).

use std::sync::Arc;

use anyhow::{Result, ensure};
use serde_json::json;

use super::{Area, Ctx, Need, quiet};

pub fn cases() -> Vec<super::Case> {
    let area = Area::Public;
    vec![
        case!(
            area,
            subscribe_succeeds,
            Need::Nothing,
            "§2.2, §2.4: pusher:subscribe with auth \"\" gets pusher_internal:subscription_succeeded on the channel"
        ),
        case!(
            area,
            subscribe_without_auth_field,
            Need::Nothing,
            "§2.2: auth and channel_data are optional in pusher:subscribe"
        ),
        case!(
            area,
            subscribe_data_as_string,
            Need::Nothing,
            "§1.2: the server accepts client data both as an object and as a JSON string"
        ),
        case!(
            area,
            http_data_relayed_verbatim,
            Need::Nothing,
            "§1.2: HTTP API data is relayed as the JSON string value of data, byte for byte, never re-serialized"
        ),
        case!(
            area,
            non_json_data_relayed,
            Need::Nothing,
            "§1.2: data that is not JSON is relayed as the same plain string"
        ),
        case!(
            area,
            channel_and_channels_forms,
            Need::Nothing,
            "§3.3: POST /events accepts both \"channel\":\"x\" (PHP) and \"channels\":[\"x\"] (Node, Python)"
        ),
        case!(
            area,
            multiple_channels,
            Need::Nothing,
            "§3.3: one trigger to several channels reaches each, with its own channel field"
        ),
        case!(
            area,
            socket_id_excludes_sender,
            Need::Nothing,
            "§3.3 (EXCL): socket_id in a trigger excludes that connection only"
        ),
        case!(
            area,
            unsubscribe_stops_delivery,
            Need::Nothing,
            "§2.2: pusher:unsubscribe gets no reply, and events stop arriving"
        ),
        case!(
            area,
            resubscribe_after_unsubscribe,
            Need::Nothing,
            "§2.2: a channel can be subscribed again after unsubscribing"
        ),
        case!(
            area,
            channel_name_charset,
            Need::Nothing,
            "§2.1: channel names may use A-Z a-z 0-9 and _ - = @ , . ;"
        ),
        case!(
            area,
            invalid_channel_name_refused,
            Need::Nothing,
            "§2.1: names outside ^[-a-zA-Z0-9_=@,.;]+$ are refused without closing the socket"
        ),
        case!(
            area,
            backslash_event_name,
            Need::Nothing,
            "§2.1, §6.2: event names with backslashes (App\\Events\\OrderShipped) are relayed verbatim"
        ),
    ]
}

async fn subscribe_succeeds(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("");
    ctx.subscribe_public(&mut client, &channel).await?;
    Ok(())
}

async fn subscribe_without_auth_field(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("");
    client.subscribe(&channel, None, None);
    super::subscribed(&mut client, &channel).await?;
    Ok(())
}

async fn subscribe_data_as_string(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("");
    let data = json!({"channel": channel, "auth": ""}).to_string();
    client.send(json!({"event": "pusher:subscribe", "data": data}));
    super::subscribed(&mut client, &channel).await?;
    Ok(())
}

async fn delivered_data(ctx: &Ctx, data: &str) -> Result<String> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("");
    ctx.subscribe_public(&mut client, &channel).await?;
    ctx.api
        .trigger(json!({"name": "my-event", "channels": [channel], "data": data}))
        .await?;
    let frame = client.expect_event("my-event", Some(&channel)).await?;
    Ok(super::double_encoded(&frame)?.to_owned())
}

async fn http_data_relayed_verbatim(ctx: Arc<Ctx>) -> Result<()> {
    let data = "{ \"b\": 1,\"a\" : [1, 2.50, \"ü/\\u00e9\"] }";
    let got = delivered_data(&ctx, data).await?;
    ensure!(
        got == data,
        "data was changed in transit: sent {data:?}, got {got:?}"
    );
    Ok(())
}

async fn non_json_data_relayed(ctx: Arc<Ctx>) -> Result<()> {
    let data = "hello world, not JSON";
    let got = delivered_data(&ctx, data).await?;
    ensure!(got == data, "sent {data:?}, got {got:?}");
    Ok(())
}

async fn channel_and_channels_forms(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("");
    ctx.subscribe_public(&mut client, &channel).await?;
    ctx.api
        .trigger(json!({"name": "single", "channel": channel, "data": "1"}))
        .await?;
    client.expect_event("single", Some(&channel)).await?;
    ctx.api
        .trigger(json!({"name": "array", "channels": [channel], "data": "2"}))
        .await?;
    client.expect_event("array", Some(&channel)).await?;
    Ok(())
}

async fn multiple_channels(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let (one, two) = (ctx.channel(""), ctx.channel(""));
    ctx.subscribe_public(&mut client, &one).await?;
    ctx.subscribe_public(&mut client, &two).await?;
    ctx.api
        .trigger(json!({"name": "both", "channels": [one, two], "data": "{}"}))
        .await?;
    client.expect_event("both", Some(&one)).await?;
    client.expect_event("both", Some(&two)).await?;
    Ok(())
}

async fn socket_id_excludes_sender(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("");
    let mut sender = ctx.connect().await?;
    let mut other = ctx.connect().await?;
    ctx.subscribe_public(&mut sender, &channel).await?;
    ctx.subscribe_public(&mut other, &channel).await?;
    ctx.api
        .trigger(json!({"name": "x", "channels": [channel], "data": "{}", "socket_id": sender.socket_id}))
        .await?;
    other.expect_event("x", Some(&channel)).await?;
    sender
        .expect_none("event for the excluded socket", quiet(&ctx), |f| {
            f.is("x", None)
        })
        .await
}

async fn unsubscribe_stops_delivery(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("");
    ctx.subscribe_public(&mut client, &channel).await?;
    client.unsubscribe(&channel);
    client
        .expect_none("reply to pusher:unsubscribe", quiet(&ctx), |f| {
            let about_channel = f.channel.as_deref() == Some(channel.as_str())
                && f.event != "pusher_internal:subscription_count";
            about_channel || f.event == "pusher:error"
        })
        .await?;
    ctx.api
        .trigger(json!({"name": "late", "channels": [channel], "data": "{}"}))
        .await?;
    client
        .expect_none("event after unsubscribe", quiet(&ctx), |f| {
            f.is("late", None)
        })
        .await
}

async fn resubscribe_after_unsubscribe(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("");
    ctx.subscribe_public(&mut client, &channel).await?;
    client.unsubscribe(&channel);
    ctx.subscribe_public(&mut client, &channel).await?;
    ctx.api
        .trigger(json!({"name": "again", "channels": [channel], "data": "{}"}))
        .await?;
    client.expect_event("again", Some(&channel)).await?;
    Ok(())
}

async fn channel_name_charset(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = format!("{}AZaz09_-=@,.;", ctx.channel(""));
    ctx.subscribe_public(&mut client, &channel).await?;
    ctx.api
        .trigger(json!({"name": "chars", "channels": [channel], "data": "{}"}))
        .await?;
    client.expect_event("chars", Some(&channel)).await?;
    Ok(())
}

async fn invalid_channel_name_refused(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    for bad in [
        format!("{} space", ctx.channel("")),
        format!("{}!", ctx.channel("")),
    ] {
        client.subscribe(&bad, Some(""), None);
        super::refused(&mut client, &bad)
            .await
            .map_err(|e| e.context(format!("channel {bad:?}")))?;
    }
    Ok(())
}

async fn backslash_event_name(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("");
    ctx.subscribe_public(&mut client, &channel).await?;
    let name = "App\\Events\\OrderShipped";
    ctx.api
        .trigger(json!({"name": name, "channels": [channel], "data": "{}"}))
        .await?;
    client.expect_event(name, Some(&channel)).await?;
    Ok(())
}
