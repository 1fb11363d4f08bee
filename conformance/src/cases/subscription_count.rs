//! The subscription_count feature (§2.8, §3.3). It is an app setting, so the area runs only
//! with `--expect-subscription-count`.

use std::sync::Arc;

use anyhow::{Result, ensure};
use serde_json::json;

use super::{Area, Ctx, Need, quiet};
use crate::client::{Client, Frame};

pub fn cases() -> Vec<super::Case> {
    let area = Area::SubscriptionCount;
    let needs = Need::SubscriptionCount;
    vec![
        case!(
            area,
            public_channel_counts,
            needs,
            "§2.8: every subscriber of a public channel gets pusher_internal:subscription_count {\"subscription_count\":N} on each subscribe and unsubscribe"
        ),
        case!(
            area,
            private_channel_counts,
            needs,
            "§2.8: subscription_count is broadcast on private channels too"
        ),
        case!(
            area,
            not_on_presence,
            needs,
            "§2.8: subscription_count is not broadcast on presence channels"
        ),
        case!(
            area,
            http_channel_info,
            needs,
            "§3.3: GET /channels/{name}?info=subscription_count returns the number of subscribed connections"
        ),
        case!(
            area,
            trigger_info,
            needs,
            "§3.3: POST /events with info=subscription_count returns {\"channels\":{name:{\"subscription_count\":N}}}"
        ),
    ]
}

fn count_is(frame: &Frame, channel: &str, n: u64) -> bool {
    frame.is("pusher_internal:subscription_count", Some(channel))
        && frame.data_value()["subscription_count"] == json!(n)
}

async fn expect_count(client: &mut Client, channel: &str, n: u64) -> Result<()> {
    let what = format!("subscription_count {n} on {channel}");
    let frame = client.expect(&what, |f| count_is(f, channel, n)).await?;
    super::double_encoded(&frame)?;
    Ok(())
}

async fn counts(ctx: &Ctx, prefix: &str) -> Result<()> {
    let channel = ctx.channel(prefix);
    let mut a = ctx.connect().await?;
    let mut b = ctx.connect().await?;
    let join = |client: &mut Client| {
        if prefix.is_empty() {
            client.subscribe(&channel, Some(""), None);
        } else {
            let auth = ctx.auth(&client.socket_id, &channel, None);
            client.subscribe(&channel, Some(&auth), None);
        }
    };
    join(&mut a);
    super::subscribed(&mut a, &channel).await?;
    expect_count(&mut a, &channel, 1).await?;
    join(&mut b);
    super::subscribed(&mut b, &channel).await?;
    expect_count(&mut a, &channel, 2).await?;
    expect_count(&mut b, &channel, 2).await?;
    b.unsubscribe(&channel);
    expect_count(&mut a, &channel, 1).await
}

async fn public_channel_counts(ctx: Arc<Ctx>) -> Result<()> {
    counts(&ctx, "").await
}

async fn private_channel_counts(ctx: Arc<Ctx>) -> Result<()> {
    counts(&ctx, "private-").await
}

async fn not_on_presence(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let mut a = ctx.connect().await?;
    ctx.subscribe_presence(&mut a, &channel, &ctx.user(), json!({}))
        .await?;
    let mut b = ctx.connect().await?;
    ctx.subscribe_presence(&mut b, &channel, &ctx.user(), json!({}))
        .await?;
    a.expect_none(
        "subscription_count on a presence channel",
        quiet(&ctx),
        |f| f.event == "pusher_internal:subscription_count",
    )
    .await
}

async fn two_subscribers(ctx: &Ctx) -> Result<(String, Client, Client)> {
    let channel = ctx.channel("");
    let mut a = ctx.connect().await?;
    ctx.subscribe_public(&mut a, &channel).await?;
    let mut b = ctx.connect().await?;
    ctx.subscribe_public(&mut b, &channel).await?;
    Ok((channel, a, b))
}

async fn http_channel_info(ctx: Arc<Ctx>) -> Result<()> {
    let (channel, _a, _b) = two_subscribers(&ctx).await?;
    let body = ctx
        .api
        .get(
            &format!("/channels/{channel}"),
            &[("info", "subscription_count")],
        )
        .await?
        .ok_object()?;
    ensure!(body["occupied"] == json!(true), "occupied: {body}");
    ensure!(
        body["subscription_count"] == json!(2),
        "subscription_count: {body}"
    );
    Ok(())
}

async fn trigger_info(ctx: Arc<Ctx>) -> Result<()> {
    let (channel, _a, _b) = two_subscribers(&ctx).await?;
    let body = ctx
        .api
        .trigger(
            json!({"name": "e", "channels": [channel], "data": "{}", "info": "subscription_count"}),
        )
        .await?;
    ensure!(
        body["channels"][&channel]["subscription_count"] == json!(2),
        "expected channels.{channel}.subscription_count = 2: {body}"
    );
    Ok(())
}
