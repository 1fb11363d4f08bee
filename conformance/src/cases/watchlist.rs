//! Watchlist events (§2.10). The app must have user authentication enabled.

use std::sync::Arc;

use anyhow::{Result, ensure};
use serde_json::json;

use super::{Area, Ctx, Need};
use crate::client::Frame;

pub fn cases() -> Vec<super::Case> {
    let area = Area::Watchlist;
    vec![
        case!(
            area,
            initial_status,
            Need::Nothing,
            "§2.10: after signin the server sends pusher_internal:watchlist_events (no channel) with the online watched ids"
        ),
        case!(
            area,
            online_and_offline,
            Need::Nothing,
            "§2.10: a watched user's first signin sends online, its last disconnect sends offline"
        ),
        case!(
            area,
            limit_4302,
            Need::Nothing,
            "§1.6, §2.10: a watchlist over 100 ids still signs in, then gets pusher:error 4302 without a close"
        ),
    ]
}

fn mentions(frame: &Frame, name: &str, user: &str) -> bool {
    frame.event == "pusher_internal:watchlist_events"
        && frame.channel.is_none()
        && frame.data_value()["events"]
            .as_array()
            .is_some_and(|events| {
                events.iter().any(|e| {
                    e["name"] == name
                        && e["user_ids"]
                            .as_array()
                            .is_some_and(|ids| ids.iter().any(|id| id == user))
                })
            })
}

fn user_data(id: &str, watchlist: &[String]) -> String {
    json!({"id": id, "watchlist": watchlist}).to_string()
}

async fn initial_status(ctx: Arc<Ctx>) -> Result<()> {
    let (online, absent, watcher) = (ctx.user(), ctx.user(), ctx.user());
    let mut present = ctx.connect().await?;
    ctx.signin(&mut present, &user_data(&online, &[])).await?;
    let mut client = ctx.connect().await?;
    let list = [online.clone(), absent.clone()];
    ctx.signin(&mut client, &user_data(&watcher, &list)).await?;
    let frame = client
        .expect("watchlist_events naming the online user", |f| {
            mentions(f, "online", &online)
        })
        .await?;
    ensure!(
        !mentions(&frame, "online", &absent),
        "an absent user is reported online: {}",
        frame.raw
    );
    Ok(())
}

async fn online_and_offline(ctx: Arc<Ctx>) -> Result<()> {
    let (watched, watcher) = (ctx.user(), ctx.user());
    let mut client = ctx.connect().await?;
    ctx.signin(
        &mut client,
        &user_data(&watcher, std::slice::from_ref(&watched)),
    )
    .await?;
    let mut other = ctx.connect().await?;
    ctx.signin(&mut other, &user_data(&watched, &[])).await?;
    client
        .expect("online for the watched user", |f| {
            mentions(f, "online", &watched)
        })
        .await?;
    other.close();
    drop(other);
    client
        .expect("offline for the watched user", |f| {
            mentions(f, "offline", &watched)
        })
        .await?;
    Ok(())
}

async fn limit_4302(ctx: Arc<Ctx>) -> Result<()> {
    let list: Vec<String> = (0..101).map(|n| format!("w{n}")).collect();
    let mut client = ctx.connect().await?;
    ctx.signin(&mut client, &user_data(&ctx.user(), &list))
        .await?;
    let error = client
        .expect("pusher:error 4302", |f| {
            f.event == "pusher:error" && f.error_code() == Some(4302)
        })
        .await?;
    ensure!(
        error.data_value()["message"].is_string(),
        "no message: {}",
        error.raw
    );
    client.assert_open().await?;
    Ok(())
}
