//! Presence channels (§2.3, §2.4, §2.6, §3.3).

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use super::{Area, Ctx, Need, quiet};
use crate::client::Frame;

pub fn cases() -> Vec<super::Case> {
    let area = Area::Presence;
    vec![
        case!(
            area,
            subscription_succeeded_shape,
            Need::Nothing,
            "§2.4: presence subscription_succeeded data is a JSON string {\"presence\":{\"ids\",\"hash\",\"count\"}} including the subscriber"
        ),
        case!(
            area,
            member_added_to_others,
            Need::Nothing,
            "§2.6: pusher_internal:member_added {user_id, user_info} goes to the other subscribers, not the joiner"
        ),
        case!(
            area,
            member_removed_on_unsubscribe,
            Need::Nothing,
            "§2.6: pusher_internal:member_removed {user_id} is sent when the user's last connection unsubscribes"
        ),
        case!(
            area,
            member_removed_on_disconnect,
            Need::Nothing,
            "§2.6: member_removed is also sent when the user's last connection disconnects"
        ),
        case!(
            area,
            same_user_counted_once,
            Need::Nothing,
            "§2.6: a user on several connections counts once; member_added on the first, member_removed on the last"
        ),
        case!(
            area,
            numeric_user_id,
            Need::Nothing,
            "§2.3: user_id may be a number; the member appears under its id"
        ),
        case!(
            area,
            member_without_user_info,
            Need::Nothing,
            "§2.4: a member without user_info keeps its key in hash (null or {})"
        ),
        case!(
            area,
            tampered_channel_data_refused,
            Need::Nothing,
            "§2.3: the signature covers socket_id:channel:channel_data; other channel_data is refused"
        ),
        case!(
            area,
            missing_channel_data_refused,
            Need::Nothing,
            "§2.6: a presence subscribe without channel_data is valid only after pusher:signin"
        ),
        case!(
            area,
            channel_data_without_user_id_refused,
            Need::Nothing,
            "§2.3: channel_data must be JSON with a user_id"
        ),
        case!(
            area,
            channel_data_exact_bytes,
            Need::Nothing,
            "§2.3: channel_data is verified over the exact bytes sent (Python spacing, PHP \\u escapes), never re-serialized"
        ),
        case!(
            area,
            users_endpoint,
            Need::Nothing,
            "§3.3: GET /channels/{presence}/users returns {\"users\":[{\"id\":...}]} with each distinct user"
        ),
        case!(
            area,
            user_count_info,
            Need::Nothing,
            "§3.3: GET /channels/{presence}?info=user_count counts distinct users"
        ),
    ]
}

fn ids(presence: &Value) -> BTreeSet<String> {
    presence["ids"]
        .as_array()
        .map(|ids| ids.iter().map(id_text).collect())
        .unwrap_or_default()
}

fn id_text(id: &Value) -> String {
    match id {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn member_event(frame: &Frame, event: &str, channel: &str, user: &str) -> bool {
    frame.is(event, Some(channel)) && id_text(&frame.data_value()["user_id"]) == user
}

async fn subscription_succeeded_shape(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("presence-");
    let user = ctx.user();
    let data = json!({"user_id": user, "user_info": {"name": "Ada"}}).to_string();
    let auth = ctx.auth(&client.socket_id, &channel, Some(&data));
    client.subscribe(&channel, Some(&auth), Some(&data));
    let frame = super::subscribed(&mut client, &channel).await?;
    let text = super::double_encoded(&frame)?;
    let presence = serde_json::from_str::<Value>(text)?["presence"].clone();
    ensure!(
        presence["ids"].is_array(),
        "presence.ids is not an array: {text}"
    );
    ensure!(
        ids(&presence) == BTreeSet::from([user.clone()]),
        "ids: {text}"
    );
    ensure!(
        presence["hash"][&user] == json!({"name": "Ada"}),
        "hash: {text}"
    );
    ensure!(presence["count"] == json!(1), "count: {text}");
    Ok(())
}

async fn member_added_to_others(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let (first, second) = (ctx.user(), ctx.user());
    let mut a = ctx.connect().await?;
    ctx.subscribe_presence(&mut a, &channel, &first, json!({"n": 1}))
        .await?;
    let mut b = ctx.connect().await?;
    let presence = ctx
        .subscribe_presence(&mut b, &channel, &second, json!({"n": 2}))
        .await?;
    ensure!(
        ids(&presence) == BTreeSet::from([first.clone(), second.clone()]),
        "ids: {presence}"
    );
    ensure!(presence["count"] == json!(2), "count: {presence}");
    ensure!(
        presence["hash"][&first] == json!({"n": 1}),
        "hash: {presence}"
    );

    let added = a
        .expect("member_added for the second user", |f| {
            member_event(f, "pusher_internal:member_added", &channel, &second)
        })
        .await?;
    let data = super::double_encoded(&added)?;
    ensure!(
        serde_json::from_str::<Value>(data)?["user_info"] == json!({"n": 2}),
        "member_added without the user_info: {data}"
    );
    b.expect_none("member_added sent to the joiner", quiet(&ctx), |f| {
        f.event == "pusher_internal:member_added"
    })
    .await
}

async fn two_members(
    ctx: &Ctx,
) -> Result<(String, crate::client::Client, crate::client::Client, String)> {
    let channel = ctx.channel("presence-");
    let (first, second) = (ctx.user(), ctx.user());
    let mut a = ctx.connect().await?;
    ctx.subscribe_presence(&mut a, &channel, &first, json!({}))
        .await?;
    let mut b = ctx.connect().await?;
    ctx.subscribe_presence(&mut b, &channel, &second, json!({}))
        .await?;
    a.expect("member_added", |f| {
        member_event(f, "pusher_internal:member_added", &channel, &second)
    })
    .await?;
    Ok((channel, a, b, second))
}

async fn member_removed_on_unsubscribe(ctx: Arc<Ctx>) -> Result<()> {
    let (channel, mut a, b, second) = two_members(&ctx).await?;
    b.unsubscribe(&channel);
    let removed = a
        .expect("member_removed", |f| {
            member_event(f, "pusher_internal:member_removed", &channel, &second)
        })
        .await?;
    super::double_encoded(&removed)?;
    Ok(())
}

async fn member_removed_on_disconnect(ctx: Arc<Ctx>) -> Result<()> {
    let (channel, mut a, b, second) = two_members(&ctx).await?;
    b.close();
    drop(b);
    a.expect("member_removed after disconnect", |f| {
        member_event(f, "pusher_internal:member_removed", &channel, &second)
    })
    .await?;
    Ok(())
}

async fn same_user_counted_once(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let (watcher, user) = (ctx.user(), ctx.user());
    let mut observer = ctx.connect().await?;
    ctx.subscribe_presence(&mut observer, &channel, &watcher, json!({}))
        .await?;
    let mut tab1 = ctx.connect().await?;
    ctx.subscribe_presence(&mut tab1, &channel, &user, json!({}))
        .await?;
    let mut tab2 = ctx.connect().await?;
    let presence = ctx
        .subscribe_presence(&mut tab2, &channel, &user, json!({}))
        .await?;
    ensure!(
        presence["count"] == json!(2),
        "two distinct users, got {presence}"
    );
    ensure!(
        presence["ids"].as_array().map(Vec::len) == Some(2),
        "ids must be unique: {presence}"
    );

    let added = |f: &Frame| member_event(f, "pusher_internal:member_added", &channel, &user);
    observer.expect("member_added", added).await?;
    observer
        .expect_none(
            "a second member_added for the same user",
            quiet(&ctx),
            added,
        )
        .await?;

    let removed = |f: &Frame| member_event(f, "pusher_internal:member_removed", &channel, &user);
    tab1.unsubscribe(&channel);
    observer
        .expect_none(
            "member_removed while another connection remains",
            quiet(&ctx),
            removed,
        )
        .await?;
    tab2.unsubscribe(&channel);
    observer
        .expect("member_removed after the last connection", removed)
        .await?;
    Ok(())
}

async fn numeric_user_id(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("presence-");
    let data = r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#;
    let auth = ctx.auth(&client.socket_id, &channel, Some(data));
    client.subscribe(&channel, Some(&auth), Some(data));
    let frame = super::subscribed(&mut client, &channel).await?;
    let presence = frame.data_value()["presence"].clone();
    ensure!(presence["count"] == json!(1), "count: {presence}");
    ensure!(
        presence["hash"].get("10").is_some(),
        "hash has no key \"10\": {presence}"
    );
    Ok(())
}

async fn member_without_user_info(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let (bare, other) = (ctx.user(), ctx.user());
    let mut a = ctx.connect().await?;
    let data = json!({"user_id": bare}).to_string();
    let auth = ctx.auth(&a.socket_id, &channel, Some(&data));
    a.subscribe(&channel, Some(&auth), Some(&data));
    super::subscribed(&mut a, &channel).await?;
    let mut b = ctx.connect().await?;
    let presence = ctx
        .subscribe_presence(&mut b, &channel, &other, json!({}))
        .await?;
    ensure!(
        presence["hash"].get(&bare).is_some(),
        "the member without user_info is missing from hash: {presence}"
    );
    Ok(())
}

async fn refuse_presence(ctx: &Ctx, signed: Option<&str>, sent: Option<&str>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("presence-");
    let auth = ctx.auth(&client.socket_id, &channel, signed);
    client.subscribe(&channel, Some(&auth), sent);
    super::refused(&mut client, &channel).await?;
    Ok(())
}

async fn tampered_channel_data_refused(ctx: Arc<Ctx>) -> Result<()> {
    refuse_presence(&ctx, Some(r#"{"user_id":"1"}"#), Some(r#"{"user_id":"2"}"#)).await
}

async fn missing_channel_data_refused(ctx: Arc<Ctx>) -> Result<()> {
    refuse_presence(&ctx, None, None).await
}

async fn channel_data_without_user_id_refused(ctx: Arc<Ctx>) -> Result<()> {
    let data = r#"{"user_info":{"name":"nobody"}}"#;
    refuse_presence(&ctx, Some(data), Some(data)).await?;
    refuse_presence(&ctx, Some("not json"), Some("not json")).await
}

async fn channel_data_exact_bytes(ctx: Arc<Ctx>) -> Result<()> {
    for (style, template) in [
        (
            "Python json.dumps",
            r#"{"user_id": "USER", "user_info": {"name": "Zo\u00eb"}}"#,
        ),
        (
            "PHP json_encode",
            r#"{"user_id":"USER","user_info":{"url":"http:\/\/x","name":"\u00e9"}}"#,
        ),
    ] {
        let mut client = ctx.connect().await?;
        let channel = ctx.channel("presence-");
        let user = ctx.user();
        let data = template.replace("USER", &user);
        let auth = ctx.auth(&client.socket_id, &channel, Some(&data));
        client.subscribe(&channel, Some(&auth), Some(&data));
        let frame = super::subscribed(&mut client, &channel)
            .await
            .map_err(|e| e.context(style))?;
        let expected = serde_json::from_str::<Value>(&data)?["user_info"].clone();
        let presence = frame.data_value()["presence"].clone();
        ensure!(
            presence["hash"][&user] == expected,
            "{style}: hash {presence}"
        );
    }
    Ok(())
}

async fn users_endpoint(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let (first, second) = (ctx.user(), ctx.user());
    let mut a = ctx.connect().await?;
    ctx.subscribe_presence(&mut a, &channel, &first, json!({}))
        .await?;
    let mut b = ctx.connect().await?;
    ctx.subscribe_presence(&mut b, &channel, &second, json!({}))
        .await?;
    let mut b2 = ctx.connect().await?;
    ctx.subscribe_presence(&mut b2, &channel, &second, json!({}))
        .await?;
    let body = ctx
        .api
        .get(&format!("/channels/{channel}/users"), &[])
        .await?
        .ok_object()?;
    let users: Vec<String> = body["users"]
        .as_array()
        .map(|users| users.iter().map(|u| id_text(&u["id"])).collect())
        .unwrap_or_default();
    let mut sorted = users.clone();
    sorted.sort();
    let mut expected = vec![first, second];
    expected.sort();
    ensure!(
        sorted == expected,
        "users {body}, expected each of {expected:?} once"
    );
    Ok(())
}

async fn user_count_info(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let user = ctx.user();
    let mut a = ctx.connect().await?;
    ctx.subscribe_presence(&mut a, &channel, &user, json!({}))
        .await?;
    let mut b = ctx.connect().await?;
    ctx.subscribe_presence(&mut b, &channel, &user, json!({}))
        .await?;
    let mut c = ctx.connect().await?;
    ctx.subscribe_presence(&mut c, &channel, &ctx.user(), json!({}))
        .await?;
    let body = ctx
        .api
        .get(&format!("/channels/{channel}"), &[("info", "user_count")])
        .await?
        .ok_object()?;
    ensure!(body["occupied"] == json!(true), "occupied: {body}");
    ensure!(
        body["user_count"] == json!(2),
        "user_count should be 2 distinct users: {body}"
    );
    Ok(())
}
