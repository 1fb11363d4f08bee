//! The HTTP API and its request signing (§3.1–§3.3), including the SDK traps.

use std::sync::Arc;

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use super::{Area, Ctx, Need};
use crate::client::Client;
use crate::http::{QueryEncoding, Request, now};

pub fn cases() -> Vec<super::Case> {
    let area = Area::HttpApi;
    vec![
        case!(
            area,
            trigger_returns_empty_object,
            Need::Nothing,
            "§3.3: POST /events succeeds with 200 and the body {} (PHP and Python need JSON; soketi's {\"ok\":true} is not Pusher's)"
        ),
        case!(
            area,
            trigger_info_user_count,
            Need::Nothing,
            "§3.3: POST /events with info=user_count returns {\"channels\":{presence-x:{\"user_count\":N}}}"
        ),
        case!(
            area,
            batch_events,
            Need::Nothing,
            "§3.3: POST /batch_events delivers each item to its channel and returns {}"
        ),
        case!(
            area,
            batch_events_info,
            Need::Nothing,
            "§3.3: batch items with info get {\"batch\":[...]}, entry i for item i"
        ),
        case!(
            area,
            channels_list,
            Need::Nothing,
            "§3.3: GET /channels?filter_by_prefix lists only occupied channels with that prefix, each {}"
        ),
        case!(
            area,
            channels_list_empty_is_object,
            Need::Nothing,
            "§3.3: channels is a JSON object even when empty ({} never []), which PHP's getChannels needs"
        ),
        case!(
            area,
            channels_list_user_count,
            Need::Nothing,
            "§3.3: GET /channels?filter_by_prefix=presence-…&info=user_count gives each channel's user_count"
        ),
        case!(
            area,
            channels_user_count_needs_presence_prefix,
            Need::Nothing,
            "§3.3: info=user_count on /channels without a presence- prefix filter is a 400"
        ),
        case!(
            area,
            channel_unoccupied,
            Need::Nothing,
            "§3.3: GET /channels/{name} of an unoccupied channel is {\"occupied\":false}"
        ),
        case!(
            area,
            channel_occupied,
            Need::Nothing,
            "§3.3: GET /channels/{name} of a subscribed channel has occupied true"
        ),
        case!(
            area,
            user_count_on_public_400,
            Need::Nothing,
            "§3.3: asking a non-presence channel for user_count is a 400"
        ),
        case!(
            area,
            users_on_non_presence_400,
            Need::Nothing,
            "§3.3: GET /channels/{name}/users of a non-presence channel is a 400"
        ),
        case!(
            area,
            trigger_missing_fields_400,
            Need::Nothing,
            "§3.3: a trigger without name, data or channels is a 400"
        ),
        case!(
            area,
            trigger_invalid_socket_id_400,
            Need::Nothing,
            "§3.3: a trigger with a socket_id that is not \\d+.\\d+ is a 400"
        ),
        case!(
            area,
            other_app_path_refused,
            Need::Nothing,
            "§3.2: auth_key must belong to the app in the path; a request to another app id is refused (4xx)"
        ),
        case!(
            area,
            bad_signature_401,
            Need::Nothing,
            "§3.2: a wrong auth_signature is a 401"
        ),
        case!(
            area,
            unknown_key_401,
            Need::Nothing,
            "§3.2: an auth_key that is not the app's is a 401"
        ),
        case!(
            area,
            expired_timestamp_401,
            Need::Nothing,
            "§3.2: auth_timestamp 600 s or more in the past is a 401"
        ),
        case!(
            area,
            future_timestamp_401,
            Need::Nothing,
            "§3.2: auth_timestamp 600 s or more in the future is a 401"
        ),
        case!(
            area,
            timestamp_within_window,
            Need::Nothing,
            "§3.2: auth_timestamp within 600 s of the server clock, either way, is accepted"
        ),
        case!(
            area,
            auth_version_required,
            Need::Nothing,
            "§3.2: auth_version must be present and 1.0"
        ),
        case!(
            area,
            body_md5_required,
            Need::Nothing,
            "§3.2: a request with a body and no body_md5 is a 401"
        ),
        case!(
            area,
            body_md5_checked,
            Need::Nothing,
            "§3.2: a body_md5 that is not the MD5 of the body is a 401"
        ),
        case!(
            area,
            get_with_empty_body_md5,
            Need::Nothing,
            "§3.2 (Python trap): a GET carrying body_md5 = md5(\"\") is signed with it and accepted"
        ),
        case!(
            area,
            percent_encoded_params,
            Need::Nothing,
            "§3.2 (PHP trap): query values are percent-decoded before signing (%2C, %3B)"
        ),
        case!(
            area,
            raw_comma_params,
            Need::Nothing,
            "§3.2 (Node trap): unencoded commas in query values are accepted"
        ),
        case!(
            area,
            uppercase_param_keys,
            Need::Nothing,
            "§3.2: parameter keys are lowercased in the string to sign"
        ),
    ]
}

async fn trigger_returns_empty_object(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("");
    let body = ctx
        .api
        .trigger(json!({"name": "e", "channels": [channel], "data": "{}"}))
        .await?;
    ensure!(body == json!({}), "expected {{}}, got {body}");
    Ok(())
}

async fn trigger_info_user_count(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let mut client = ctx.connect().await?;
    ctx.subscribe_presence(&mut client, &channel, &ctx.user(), json!({}))
        .await?;
    let body = ctx
        .api
        .trigger(json!({"name": "e", "channels": [channel], "data": "{}", "info": "user_count"}))
        .await?;
    ensure!(
        body["channels"][&channel]["user_count"] == json!(1),
        "expected channels.{channel}.user_count = 1: {body}"
    );
    Ok(())
}

async fn batch_events(ctx: Arc<Ctx>) -> Result<()> {
    let (one, two) = (ctx.channel(""), ctx.channel(""));
    let mut client = ctx.connect().await?;
    ctx.subscribe_public(&mut client, &one).await?;
    ctx.subscribe_public(&mut client, &two).await?;
    let batch = json!({"batch": [
        {"name": "b1", "channel": one, "data": "1"},
        {"name": "b2", "channel": two, "data": "2"},
    ]});
    let body = ctx.api.post("/batch_events", &batch).await?.ok_object()?;
    ensure!(body == json!({}), "expected {{}}, got {body}");
    client.expect_event("b1", Some(&one)).await?;
    client.expect_event("b2", Some(&two)).await?;
    Ok(())
}

async fn batch_events_info(ctx: Arc<Ctx>) -> Result<()> {
    let presence = ctx.channel("presence-");
    let mut client = ctx.connect().await?;
    ctx.subscribe_presence(&mut client, &presence, &ctx.user(), json!({}))
        .await?;
    let batch = json!({"batch": [
        {"name": "b1", "channel": presence, "data": "1", "info": "user_count"},
        {"name": "b2", "channel": ctx.channel(""), "data": "2"},
    ]});
    let body = ctx.api.post("/batch_events", &batch).await?.ok_object()?;
    let entries = body["batch"].as_array().cloned().unwrap_or_default();
    ensure!(
        entries.len() == 2,
        "expected a batch array of 2 entries: {body}"
    );
    ensure!(
        entries[0]["user_count"] == json!(1),
        "entry 0 should have user_count 1: {body}"
    );
    Ok(())
}

async fn channels_list(ctx: Arc<Ctx>) -> Result<()> {
    let prefix = ctx.channel("");
    let (one, two) = (format!("{prefix}-a"), format!("{prefix}-b"));
    let mut client = ctx.connect().await?;
    ctx.subscribe_public(&mut client, &one).await?;
    ctx.subscribe_public(&mut client, &two).await?;
    let left = format!("{prefix}-c");
    ctx.subscribe_public(&mut client, &left).await?;
    client.unsubscribe(&left);
    client.assert_open().await?;
    let body = ctx
        .api
        .get("/channels", &[("filter_by_prefix", &prefix)])
        .await?
        .ok_object()?;
    let expected = json!({ one: {}, two: {} });
    ensure!(
        body["channels"] == expected,
        "expected channels {expected}, got {body}"
    );
    Ok(())
}

async fn channels_list_empty_is_object(ctx: Arc<Ctx>) -> Result<()> {
    let prefix = ctx.channel("");
    let body = ctx
        .api
        .get("/channels", &[("filter_by_prefix", &prefix)])
        .await?
        .ok_object()?;
    ensure!(
        body["channels"] == json!({}),
        "expected channels {{}}, got {body}"
    );
    Ok(())
}

async fn channels_list_user_count(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let mut a = ctx.connect().await?;
    ctx.subscribe_presence(&mut a, &channel, &ctx.user(), json!({}))
        .await?;
    let mut b = ctx.connect().await?;
    ctx.subscribe_presence(&mut b, &channel, &ctx.user(), json!({}))
        .await?;
    let body = ctx
        .api
        .get(
            "/channels",
            &[("filter_by_prefix", &channel), ("info", "user_count")],
        )
        .await?
        .ok_object()?;
    let expected = json!({ channel: {"user_count": 2} });
    ensure!(
        body["channels"] == expected,
        "expected channels {expected}, got {body}"
    );
    Ok(())
}

async fn channels_user_count_needs_presence_prefix(ctx: Arc<Ctx>) -> Result<()> {
    ctx.api
        .get("/channels", &[("info", "user_count")])
        .await?
        .expect_status(400)?;
    ctx.api
        .get(
            "/channels",
            &[("info", "user_count"), ("filter_by_prefix", "private-")],
        )
        .await?
        .expect_status(400)
}

async fn channel_unoccupied(ctx: Arc<Ctx>) -> Result<()> {
    let body = ctx
        .api
        .get(&format!("/channels/{}", ctx.channel("")), &[])
        .await?
        .ok_object()?;
    ensure!(
        body == json!({"occupied": false}),
        "expected {{\"occupied\":false}}, got {body}"
    );
    Ok(())
}

async fn occupied_channel(ctx: &Ctx, prefix: &str) -> Result<(String, Client)> {
    let channel = ctx.channel(prefix);
    let mut client = ctx.connect().await?;
    if prefix.is_empty() {
        ctx.subscribe_public(&mut client, &channel).await?;
    } else {
        ctx.subscribe_private(&mut client, &channel).await?;
    }
    Ok((channel, client))
}

async fn channel_occupied(ctx: Arc<Ctx>) -> Result<()> {
    let (channel, _client) = occupied_channel(&ctx, "").await?;
    let body = ctx
        .api
        .get(&format!("/channels/{channel}"), &[])
        .await?
        .ok_object()?;
    ensure!(
        body["occupied"] == json!(true),
        "expected occupied true: {body}"
    );
    Ok(())
}

async fn user_count_on_public_400(ctx: Arc<Ctx>) -> Result<()> {
    let (channel, _client) = occupied_channel(&ctx, "").await?;
    ctx.api
        .get(&format!("/channels/{channel}"), &[("info", "user_count")])
        .await?
        .expect_status(400)
}

async fn users_on_non_presence_400(ctx: Arc<Ctx>) -> Result<()> {
    let (channel, _client) = occupied_channel(&ctx, "private-").await?;
    ctx.api
        .get(&format!("/channels/{channel}/users"), &[])
        .await?
        .expect_status(400)
}

async fn trigger_missing_fields_400(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("");
    for body in [
        json!({"channels": [channel], "data": "{}"}),
        json!({"name": "e", "channels": [channel]}),
        json!({"name": "e", "data": "{}"}),
    ] {
        ctx.api
            .post("/events", &body)
            .await?
            .expect_status(400)
            .map_err(|e| e.context(body.to_string()))?;
    }
    Ok(())
}

async fn trigger_invalid_socket_id_400(ctx: Arc<Ctx>) -> Result<()> {
    let body =
        json!({"name": "e", "channels": [ctx.channel("")], "data": "{}", "socket_id": "abc"});
    ctx.api.post("/events", &body).await?.expect_status(400)
}

/// A signed trigger to a fresh channel, for the signing cases to break.
fn trigger_request(ctx: &Ctx) -> Request {
    let mut request = ctx.api.request("POST", "/events");
    let body = json!({"name": "e", "channels": [ctx.channel("")], "data": "{}"});
    request.body = Some(body.to_string().into_bytes());
    request
}

async fn status_of(ctx: &Ctx, request: &Request) -> Result<u16> {
    Ok(ctx.api.send(request).await?.status)
}

async fn expect_401(ctx: &Ctx, request: &Request, what: &str) -> Result<()> {
    let reply = ctx.api.send(request).await?;
    ensure!(
        reply.status == 401,
        "{what}: expected 401, got {} {}",
        reply.status,
        reply.body
    );
    Ok(())
}

async fn other_app_path_refused(ctx: Arc<Ctx>) -> Result<()> {
    let mut request = trigger_request(&ctx);
    request.path = format!("/apps/{}-other/events", ctx.cfg.app_id);
    let reply = ctx.api.send(&request).await?;
    ensure!(
        (400..500).contains(&reply.status),
        "a request signed with this app's key for another app id got {} {}",
        reply.status,
        reply.body
    );
    Ok(())
}

async fn bad_signature_401(ctx: Arc<Ctx>) -> Result<()> {
    let mut request = trigger_request(&ctx);
    request.signature = Some("0".repeat(64));
    expect_401(&ctx, &request, "a zero signature").await?;
    let mut request = trigger_request(&ctx);
    request.secret = format!("{}x", ctx.cfg.secret);
    expect_401(&ctx, &request, "a signature made with another secret").await
}

async fn unknown_key_401(ctx: Arc<Ctx>) -> Result<()> {
    let mut request = trigger_request(&ctx);
    request.key = format!("{}-unknown", ctx.cfg.key);
    expect_401(&ctx, &request, "an unknown auth_key").await
}

async fn expired_timestamp_401(ctx: Arc<Ctx>) -> Result<()> {
    let mut request = trigger_request(&ctx);
    request.timestamp = now() - 700;
    expect_401(&ctx, &request, "a timestamp 700 s old").await
}

async fn future_timestamp_401(ctx: Arc<Ctx>) -> Result<()> {
    let mut request = trigger_request(&ctx);
    request.timestamp = now() + 700;
    expect_401(&ctx, &request, "a timestamp 700 s ahead").await
}

async fn timestamp_within_window(ctx: Arc<Ctx>) -> Result<()> {
    for offset in [-500i64, 500] {
        let mut request = trigger_request(&ctx);
        request.timestamp = now().saturating_add_signed(offset);
        let status = status_of(&ctx, &request).await?;
        ensure!(
            status == 200,
            "a timestamp {offset} s away got {status}, expected 200"
        );
    }
    Ok(())
}

async fn auth_version_required(ctx: Arc<Ctx>) -> Result<()> {
    let mut request = trigger_request(&ctx);
    request.auth_version = None;
    expect_401(&ctx, &request, "no auth_version").await?;
    let mut request = trigger_request(&ctx);
    request.auth_version = Some("2.0".into());
    expect_401(&ctx, &request, "auth_version 2.0").await
}

async fn body_md5_required(ctx: Arc<Ctx>) -> Result<()> {
    let mut request = trigger_request(&ctx);
    request.body_md5 = Some(String::new());
    expect_401(&ctx, &request, "no body_md5").await
}

async fn body_md5_checked(ctx: Arc<Ctx>) -> Result<()> {
    let mut request = trigger_request(&ctx);
    request.body_md5 = Some(comnestor_protocol::signing::body_md5(b"something else"));
    expect_401(&ctx, &request, "a body_md5 of another body").await
}

async fn get_with_empty_body_md5(ctx: Arc<Ctx>) -> Result<()> {
    let mut request = ctx.api.request("GET", "/channels");
    request.body_md5 = Some("d41d8cd98f00b204e9800998ecf8427e".into());
    let reply = ctx.api.send(&request).await?;
    reply.ok_object()?;
    Ok(())
}

/// Lists a presence channel whose name holds `,` and `;` through `filter_by_prefix`.
async fn list_with_encoding(ctx: &Ctx, encoding: QueryEncoding) -> Result<()> {
    let channel = format!("{},a;b", ctx.channel("presence-"));
    let mut client = ctx.connect().await?;
    ctx.subscribe_presence(&mut client, &channel, &ctx.user(), json!({}))
        .await?;
    let mut request = ctx.api.request("GET", "/channels");
    request.params = vec![
        ("filter_by_prefix".into(), channel.clone()),
        ("info".into(), "user_count".into()),
    ];
    request.encoding = encoding;
    let body = ctx.api.send(&request).await?.ok_object()?;
    let expected = json!({ channel: {"user_count": 1} });
    ensure!(
        body["channels"] == expected,
        "expected channels {expected}, got {body}"
    );
    Ok(())
}

async fn percent_encoded_params(ctx: Arc<Ctx>) -> Result<()> {
    list_with_encoding(&ctx, QueryEncoding::Form).await
}

async fn raw_comma_params(ctx: Arc<Ctx>) -> Result<()> {
    list_with_encoding(&ctx, QueryEncoding::Raw).await
}

async fn uppercase_param_keys(ctx: Arc<Ctx>) -> Result<()> {
    let mut request = ctx.api.request("GET", "/channels");
    request.params = vec![("Filter_By_Prefix".into(), ctx.channel(""))];
    let reply = ctx.api.send(&request).await?;
    ensure!(
        reply.status != 401,
        "a correctly signed request with upper-case keys got 401: {}",
        reply.body
    );
    let _: Value = reply.json()?;
    Ok(())
}
