//! Cache channels (§2.7, §3.3).

use std::sync::Arc;

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use super::{Area, Ctx, Need, quiet};
use crate::client::{Client, Frame};

pub fn cases() -> Vec<super::Case> {
    let area = Area::Cache;
    vec![
        case!(
            area,
            cache_miss_when_empty,
            Need::Nothing,
            "§2.7: subscribing to an empty cache channel gets pusher:cache_miss on that channel"
        ),
        case!(
            area,
            last_event_replayed_first,
            Need::Nothing,
            "§2.7: the last HTTP event of a cache channel is sent to a new subscriber as its first event, identical to the broadcast"
        ),
        case!(
            area,
            private_cache,
            Need::Nothing,
            "§2.1, §2.7: private-cache- channels cache and keep private authorization"
        ),
        case!(
            area,
            encrypted_cache,
            Need::Nothing,
            "§2.1, §2.7: private-encrypted-cache- channels cache too (Reverb does not)"
        ),
        case!(
            area,
            presence_cache,
            Need::Nothing,
            "§2.1, §2.7: presence-cache- channels cache too"
        ),
        case!(
            area,
            client_events_not_cached,
            Need::Nothing,
            "§2.7: only HTTP API events are cached, not client events"
        ),
        case!(
            area,
            channel_info_cache,
            Need::Nothing,
            "§3.3: GET /channels/{cache channel}?info=cache returns cache {data, ttl <= 1800} or null when empty"
        ),
    ]
}

/// Subscribes with whatever the channel's type needs and returns the subscription frame.
async fn join(ctx: &Ctx, client: &mut Client, channel: &str) -> Result<()> {
    if channel.starts_with("presence-") {
        ctx.subscribe_presence(client, channel, &ctx.user(), json!({}))
            .await?;
    } else if channel.starts_with("private-") {
        ctx.subscribe_private(client, channel).await?;
    } else {
        ctx.subscribe_public(client, channel).await?;
    }
    Ok(())
}

fn channel_event(frame: &Frame, channel: &str) -> bool {
    frame.channel.as_deref() == Some(channel)
        && !frame.event.starts_with("pusher_internal:")
        && frame.event != "pusher:subscription_count"
}

async fn cache_miss_when_empty(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("cache-");
    join(&ctx, &mut client, &channel).await?;
    let first = client
        .expect("the first event on the cache channel", |f| {
            channel_event(f, &channel)
        })
        .await?;
    ensure!(
        first.event == "pusher:cache_miss",
        "expected pusher:cache_miss, got {}",
        first.raw
    );
    Ok(())
}

async fn replay(ctx: &Ctx, prefix: &str) -> Result<()> {
    let channel = ctx.channel(prefix);
    for (name, data) in [("older", "{\"v\":1}"), ("latest", "{\"v\":2}")] {
        ctx.api
            .trigger(json!({"name": name, "channels": [channel], "data": data}))
            .await?;
    }
    let mut client = ctx.connect().await?;
    join(ctx, &mut client, &channel).await?;
    let first = client
        .expect("the cached event", |f| channel_event(f, &channel))
        .await?;
    ensure!(
        first.event == "latest" && first.data_str() == Some("{\"v\":2}"),
        "the first event should be the last one triggered, as broadcast; got {}",
        first.raw
    );
    client
        .expect_none("a second replayed event or a cache_miss", quiet(ctx), |f| {
            channel_event(f, &channel)
        })
        .await
}

async fn last_event_replayed_first(ctx: Arc<Ctx>) -> Result<()> {
    replay(&ctx, "cache-").await
}

async fn private_cache(ctx: Arc<Ctx>) -> Result<()> {
    replay(&ctx, "private-cache-").await
}

async fn encrypted_cache(ctx: Arc<Ctx>) -> Result<()> {
    replay(&ctx, "private-encrypted-cache-").await
}

async fn presence_cache(ctx: Arc<Ctx>) -> Result<()> {
    replay(&ctx, "presence-cache-").await
}

async fn client_events_not_cached(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("private-cache-");
    let mut sender = ctx.connect().await?;
    join(&ctx, &mut sender, &channel).await?;
    let mut receiver = ctx.connect().await?;
    join(&ctx, &mut receiver, &channel).await?;
    sender.trigger(&channel, "client-typing", json!({"x": 1}));
    receiver
        .expect_event("client-typing", Some(&channel))
        .await?;
    let mut late = ctx.connect().await?;
    join(&ctx, &mut late, &channel).await?;
    let first = late
        .expect("the first event on the cache channel", |f| {
            channel_event(f, &channel)
        })
        .await?;
    ensure!(
        first.event == "pusher:cache_miss",
        "a client event must not be cached; got {}",
        first.raw
    );
    Ok(())
}

async fn channel_info_cache(ctx: Arc<Ctx>) -> Result<()> {
    let full = ctx.channel("cache-");
    ctx.api
        .trigger(json!({"name": "e", "channels": [full], "data": "{\"v\":3}"}))
        .await?;
    let empty = ctx.channel("cache-");
    let mut client = ctx.connect().await?;
    join(&ctx, &mut client, &full).await?;
    join(&ctx, &mut client, &empty).await?;

    let body = ctx
        .api
        .get(&format!("/channels/{full}"), &[("info", "cache")])
        .await?
        .ok_object()?;
    let cache = &body["cache"];
    ensure!(cache.is_object(), "cache should be an object: {body}");
    ensure!(
        cache["data"].is_string(),
        "cache.data should be a string: {body}"
    );
    let ttl = cache["ttl"].as_f64().unwrap_or(-1.0);
    ensure!(
        ttl > 0.0 && ttl <= 1800.0,
        "cache.ttl should be seconds, at most 1800: {body}"
    );

    let body = ctx
        .api
        .get(&format!("/channels/{empty}"), &[("info", "cache")])
        .await?
        .ok_object()?;
    ensure!(
        body.get("cache") == Some(&Value::Null),
        "cache should be null when empty: {body}"
    );
    Ok(())
}
