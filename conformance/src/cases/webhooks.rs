//! Webhooks (§4), received by the suite's own receiver. Off unless `--webhooks` is given; the
//! app's webhook URL must then point at the URL the report prints.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail, ensure};
use serde_json::{Value, json};

use super::{Area, Ctx, Need};
use crate::webhook::Webhook;

pub fn cases() -> Vec<super::Case> {
    let area = Area::Webhooks;
    let needs = Need::Webhooks;
    vec![
        case!(
            area,
            channel_occupied,
            needs,
            "§4: the first subscriber of a channel sends channel_occupied {channel}, signed with X-Pusher-Key, X-Pusher-Signature and Content-Type: application/json"
        ),
        case!(
            area,
            channel_vacated,
            needs,
            "§4: the last subscriber leaving sends channel_vacated {channel} (within about 3 s)"
        ),
        case!(
            area,
            member_added,
            needs,
            "§4: a user's first connection to a presence channel sends member_added {channel, user_id}"
        ),
        case!(
            area,
            member_removed,
            needs,
            "§4: a user's last connection leaving a presence channel sends member_removed {channel, user_id}"
        ),
        case!(
            area,
            client_event,
            needs,
            "§4: each client event sends client_event {channel, event, data, socket_id, user_id on presence}"
        ),
    ]
}

fn wait(ctx: &Ctx) -> Duration {
    ctx.cfg.wait + Duration::from_secs(4)
}

/// The request-level checks of §4, shared by every case.
fn valid(webhook: &Webhook) -> Result<()> {
    if !webhook.problems.is_empty() {
        bail!(
            "invalid webhook request: {}; body {}",
            webhook.problems.join("; "),
            webhook.body
        );
    }
    let body: Value = serde_json::from_str(&webhook.body)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let time_ms = body["time_ms"].as_i64().unwrap_or(0);
    ensure!(
        (now_ms - time_ms).abs() < 300_000,
        "time_ms {time_ms} is more than 5 minutes from now; Python's validate_webhook rejects it"
    );
    Ok(())
}

async fn find(ctx: &Ctx, name: &str, channel: &str, user: Option<&str>) -> Result<Value> {
    let receiver = ctx.receiver()?;
    let (event, webhook) = receiver
        .wait_for(name, wait(ctx), |e| {
            e["name"] == name && e["channel"] == channel && user.is_none_or(|u| e["user_id"] == u)
        })
        .await?;
    valid(&webhook)?;
    Ok(event)
}

async fn channel_occupied(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("");
    let mut client = ctx.connect().await?;
    ctx.subscribe_public(&mut client, &channel).await?;
    find(&ctx, "channel_occupied", &channel, None).await?;
    Ok(())
}

async fn channel_vacated(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("");
    let mut client = ctx.connect().await?;
    ctx.subscribe_public(&mut client, &channel).await?;
    client.unsubscribe(&channel);
    find(&ctx, "channel_vacated", &channel, None).await?;
    Ok(())
}

async fn member_added(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let user = ctx.user();
    let mut client = ctx.connect().await?;
    ctx.subscribe_presence(&mut client, &channel, &user, json!({}))
        .await?;
    find(&ctx, "member_added", &channel, Some(&user)).await?;
    Ok(())
}

async fn member_removed(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let user = ctx.user();
    let mut client = ctx.connect().await?;
    ctx.subscribe_presence(&mut client, &channel, &user, json!({}))
        .await?;
    client.unsubscribe(&channel);
    find(&ctx, "member_removed", &channel, Some(&user)).await?;
    Ok(())
}

async fn client_event(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let (sender, receiver) = (ctx.user(), ctx.user());
    let mut a = ctx.connect().await?;
    ctx.subscribe_presence(&mut a, &channel, &sender, json!({}))
        .await?;
    let mut b = ctx.connect().await?;
    ctx.subscribe_presence(&mut b, &channel, &receiver, json!({}))
        .await?;
    a.trigger(&channel, "client-hook", json!({"k": "v"}));
    b.expect_event("client-hook", Some(&channel)).await?;
    let event = find(&ctx, "client_event", &channel, Some(&sender)).await?;
    ensure!(event["event"] == "client-hook", "event name: {event}");
    ensure!(
        event["socket_id"] == json!(a.socket_id),
        "socket_id: {event}"
    );
    let data = match &event["data"] {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        other => other.clone(),
    };
    ensure!(data == json!({"k": "v"}), "data: {event}");
    Ok(())
}
