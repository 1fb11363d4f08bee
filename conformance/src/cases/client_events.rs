//! Client events (§2.9). The app must have client events enabled.

use std::sync::Arc;

use anyhow::{Result, ensure};
use serde_json::json;

use super::{Area, Ctx, Need, quiet};
use crate::client::Client;

pub fn cases() -> Vec<super::Case> {
    let area = Area::ClientEvents;
    vec![
        case!(
            area,
            relayed_to_others_not_sender,
            Need::Nothing,
            "§2.9: a client- event on a private channel reaches the other subscribers, not the sender"
        ),
        case!(
            area,
            string_data_accepted,
            Need::Nothing,
            "§1.2, §2.9: client event data may be an object or a JSON string"
        ),
        case!(
            area,
            presence_user_id,
            Need::Nothing,
            "§2.9: on presence channels the relayed client event carries the sender's top-level user_id"
        ),
        case!(
            area,
            public_channel_refused,
            Need::Nothing,
            "§2.9: client events on public channels are rejected with a pusher:error, without closing"
        ),
        case!(
            area,
            name_without_prefix_refused,
            Need::Nothing,
            "§2.9: a client event name must start with client-; pusher: and pusher_internal: names from clients are never relayed"
        ),
        case!(
            area,
            not_subscribed_refused,
            Need::Nothing,
            "§2.9: client events on a channel the sender has not subscribed to are rejected"
        ),
        case!(
            area,
            rate_limit_4301,
            Need::Nothing,
            "§1.6, §2.9: more than 10 client events per second get pusher:error 4301, and the socket stays open"
        ),
    ]
}

async fn pair(ctx: &Ctx, prefix: &str) -> Result<(String, Client, Client)> {
    let channel = ctx.channel(prefix);
    let mut a = ctx.connect().await?;
    let mut b = ctx.connect().await?;
    if prefix.starts_with("private-") {
        ctx.subscribe_private(&mut a, &channel).await?;
        ctx.subscribe_private(&mut b, &channel).await?;
    } else {
        ctx.subscribe_public(&mut a, &channel).await?;
        ctx.subscribe_public(&mut b, &channel).await?;
    }
    Ok((channel, a, b))
}

async fn relayed_to_others_not_sender(ctx: Arc<Ctx>) -> Result<()> {
    let (channel, mut a, mut b) = pair(&ctx, "private-").await?;
    a.trigger(&channel, "client-typing", json!({"x": 1, "s": "ü"}));
    let frame = b.expect_event("client-typing", Some(&channel)).await?;
    ensure!(
        frame.data_value() == json!({"x": 1, "s": "ü"}),
        "data changed: {}",
        frame.raw
    );
    a.expect_none("the sender's own client event", quiet(&ctx), |f| {
        f.event == "client-typing"
    })
    .await
}

async fn string_data_accepted(ctx: Arc<Ctx>) -> Result<()> {
    let (channel, a, mut b) = pair(&ctx, "private-").await?;
    a.trigger(&channel, "client-string", json!("{\"x\":2}"));
    let frame = b.expect_event("client-string", Some(&channel)).await?;
    ensure!(
        frame.data_value() == json!({"x": 2}),
        "data changed: {}",
        frame.raw
    );
    Ok(())
}

async fn presence_user_id(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let (sender, receiver) = (ctx.user(), ctx.user());
    let mut a = ctx.connect().await?;
    ctx.subscribe_presence(&mut a, &channel, &sender, json!({}))
        .await?;
    let mut b = ctx.connect().await?;
    ctx.subscribe_presence(&mut b, &channel, &receiver, json!({}))
        .await?;
    a.trigger(&channel, "client-hello", json!({}));
    let frame = b.expect_event("client-hello", Some(&channel)).await?;
    ensure!(
        frame.user_id == Some(json!(sender)),
        "expected top-level user_id {sender:?}: {}",
        frame.raw
    );
    Ok(())
}

async fn public_channel_refused(ctx: Arc<Ctx>) -> Result<()> {
    let (channel, mut a, mut b) = pair(&ctx, "").await?;
    a.trigger(&channel, "client-public", json!({}));
    a.expect_event("pusher:error", None).await?;
    a.assert_open().await?;
    b.expect_none("a client event on a public channel", quiet(&ctx), |f| {
        f.event == "client-public"
    })
    .await
}

async fn name_without_prefix_refused(ctx: Arc<Ctx>) -> Result<()> {
    let (channel, mut a, mut b) = pair(&ctx, "private-").await?;
    a.trigger(&channel, "typing", json!({}));
    b.expect_none("an event without the client- prefix", quiet(&ctx), |f| {
        f.event == "typing"
    })
    .await?;
    a.assert_open().await
}

async fn not_subscribed_refused(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("private-");
    let mut member = ctx.connect().await?;
    ctx.subscribe_private(&mut member, &channel).await?;
    let mut outsider = ctx.connect().await?;
    outsider.trigger(&channel, "client-sneaky", json!({}));
    member
        .expect_none("a client event from a non-subscriber", quiet(&ctx), |f| {
            f.event == "client-sneaky"
        })
        .await?;
    outsider.assert_open().await
}

async fn rate_limit_4301(ctx: Arc<Ctx>) -> Result<()> {
    let (channel, mut a, mut b) = pair(&ctx, "private-").await?;
    let burst = 25;
    for n in 0..burst {
        a.trigger(&channel, "client-burst", json!({ "n": n }));
    }
    let error = a
        .expect("pusher:error 4301", |f| {
            f.event == "pusher:error" && f.error_code() == Some(4301)
        })
        .await?;
    super::errors::error_shape(&error)?;
    a.assert_open().await?;
    let mut delivered = 0;
    while b
        .expect_within("a burst event", quiet(&ctx), |f| f.event == "client-burst")
        .await
        .is_ok()
    {
        delivered += 1;
    }
    ensure!(
        delivered < burst,
        "all {burst} events were delivered despite the limit"
    );
    Ok(())
}
