//! Limits (§3.4): sizes and counts every Pusher client library relies on.

use std::sync::Arc;

use anyhow::{Result, ensure};
use serde_json::json;

use super::{Area, Ctx, Need};

pub fn cases() -> Vec<super::Case> {
    let area = Area::Limits;
    vec![
        case!(
            area,
            event_data_at_limit_accepted,
            Need::Nothing,
            "§3.4: event data up to the app's limit (10 KB, 10240 bytes by default; --max-event-size) is accepted"
        ),
        case!(
            area,
            event_data_over_limit_413,
            Need::Nothing,
            "§3.3, §3.4: event data over the limit is refused with 413"
        ),
        case!(
            area,
            client_event_over_limit_refused,
            Need::Nothing,
            "§2.9, §3.4: a client event whose data exceeds the event limit is refused, not relayed, and the socket stays usable"
        ),
        case!(
            area,
            over_100_channels_400,
            Need::Nothing,
            "§3.3, §3.4: a trigger to more than 100 channels is a 400"
        ),
        case!(
            area,
            exactly_100_channels_accepted,
            Need::Nothing,
            "§3.3, §3.4: a trigger to 100 channels is accepted"
        ),
        case!(
            area,
            batch_over_10_400,
            Need::Nothing,
            "§3.3, §3.4: a batch of more than 10 events is a 400"
        ),
        case!(
            area,
            channel_name_164_accepted,
            Need::Nothing,
            "§2.1: channel names of 164 characters (the documented maximum) are accepted"
        ),
        case!(
            area,
            channel_name_over_200_refused,
            Need::Nothing,
            "§2.1: channel names longer than 200 characters (the SDK maximum) are refused"
        ),
        case!(
            area,
            presence_user_info_over_1kb_refused,
            Need::Nothing,
            "§2.6, §3.4: a presence user object over 1 KB is refused"
        ),
        case!(
            area,
            presence_user_id_over_128_refused,
            Need::Nothing,
            "§2.6, §3.4: a presence user id over 128 characters is refused"
        ),
        case!(
            area,
            presence_100_members,
            Need::Nothing,
            "§2.6, §3.4: a presence channel holds 100 members; the 101st distinct user is refused"
        ),
    ]
}

fn trigger_of_size(ctx: &Ctx, size: usize) -> serde_json::Value {
    json!({"name": "big", "channels": [ctx.channel("")], "data": "x".repeat(size)})
}

async fn event_data_at_limit_accepted(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("");
    let mut client = ctx.connect().await?;
    ctx.subscribe_public(&mut client, &channel).await?;
    let data = "x".repeat(ctx.cfg.max_event_size);
    ctx.api
        .trigger(json!({"name": "big", "channels": [channel], "data": data}))
        .await?;
    let frame = client.expect_event("big", Some(&channel)).await?;
    ensure!(
        frame.data_str().map(str::len) == Some(data.len()),
        "the data was cut"
    );
    Ok(())
}

async fn event_data_over_limit_413(ctx: Arc<Ctx>) -> Result<()> {
    let body = trigger_of_size(&ctx, ctx.cfg.max_event_size + 1);
    ctx.api.post("/events", &body).await?.expect_status(413)
}

async fn client_event_over_limit_refused(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("private-");
    let mut sender = ctx.connect().await?;
    ctx.subscribe_private(&mut sender, &channel).await?;
    let mut receiver = ctx.connect().await?;
    ctx.subscribe_private(&mut receiver, &channel).await?;
    let data = json!({"blob": "x".repeat(ctx.cfg.max_event_size + 1)});
    sender.trigger(&channel, "client-huge", data);
    receiver
        .expect_none("an oversized client event", ctx.cfg.quiet, |f| {
            f.event == "client-huge"
        })
        .await?;
    // The server may refuse with a pusher:error or close the socket (the message may also be
    // over its frame limit); a close must not use a 43xx code.
    if sender.assert_open().await.is_err() {
        let code = sender.expect_close(ctx.cfg.wait).await?;
        ensure!(
            !code.is_some_and(|c| (4300..4400).contains(&c)),
            "closed with {code:?}: 43xx close codes make pusher-js give up"
        );
    }
    Ok(())
}

fn channels(ctx: &Ctx, n: usize) -> Vec<String> {
    let base = ctx.channel("");
    (0..n).map(|i| format!("{base}-{i}")).collect()
}

async fn over_100_channels_400(ctx: Arc<Ctx>) -> Result<()> {
    let body = json!({"name": "e", "channels": channels(&ctx, 101), "data": "{}"});
    ctx.api.post("/events", &body).await?.expect_status(400)
}

async fn exactly_100_channels_accepted(ctx: Arc<Ctx>) -> Result<()> {
    let body = json!({"name": "e", "channels": channels(&ctx, 100), "data": "{}"});
    ctx.api.trigger(body).await?;
    Ok(())
}

async fn batch_over_10_400(ctx: Arc<Ctx>) -> Result<()> {
    let items: Vec<_> = channels(&ctx, 11)
        .into_iter()
        .map(|channel| json!({"name": "e", "channel": channel, "data": "{}"}))
        .collect();
    ctx.api
        .post("/batch_events", &json!({"batch": items}))
        .await?
        .expect_status(400)
}

fn name_of_length(ctx: &Ctx, length: usize) -> String {
    let mut name = ctx.channel("");
    while name.len() < length {
        name.push('x');
    }
    name
}

async fn channel_name_164_accepted(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let name = name_of_length(&ctx, 164);
    ctx.subscribe_public(&mut client, &name).await?;
    let private = format!("private-{}", name_of_length(&ctx, 156));
    ctx.subscribe_private(&mut client, &private).await?;
    Ok(())
}

async fn channel_name_over_200_refused(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let name = name_of_length(&ctx, 201);
    client.subscribe(&name, Some(""), None);
    super::refused(&mut client, &name).await?;
    Ok(())
}

async fn refuse_member(ctx: &Ctx, user_id: &str, info: serde_json::Value) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("presence-");
    let data = json!({"user_id": user_id, "user_info": info}).to_string();
    let auth = ctx.auth(&client.socket_id, &channel, Some(&data));
    client.subscribe(&channel, Some(&auth), Some(&data));
    super::refused(&mut client, &channel).await?;
    Ok(())
}

async fn presence_user_info_over_1kb_refused(ctx: Arc<Ctx>) -> Result<()> {
    refuse_member(&ctx, &ctx.user(), json!({"bio": "x".repeat(1100)})).await
}

async fn presence_user_id_over_128_refused(ctx: Arc<Ctx>) -> Result<()> {
    refuse_member(&ctx, &"u".repeat(129), json!({})).await
}

async fn presence_100_members(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let mut members = Vec::with_capacity(100);
    for n in 0..100 {
        let mut client = ctx.connect().await?;
        ctx.subscribe_presence(&mut client, &channel, &format!("m{n}"), json!({}))
            .await
            .map_err(|e| e.context(format!("member {}", n + 1)))?;
        members.push(client);
    }
    let mut extra = ctx.connect().await?;
    let data = json!({"user_id": "m100"}).to_string();
    let auth = ctx.auth(&extra.socket_id, &channel, Some(&data));
    extra.subscribe(&channel, Some(&auth), Some(&data));
    super::refused(&mut extra, &channel).await?;
    // Another connection of a user already present is not a new member.
    let mut again = ctx.connect().await?;
    ctx.subscribe_presence(&mut again, &channel, "m0", json!({}))
        .await
        .map_err(|e| e.context("a second connection of member m0"))?;
    Ok(())
}
