//! User authentication with pusher:signin, server-to-user channels and terminating a user's
//! connections (§2.10, §2.11, §2.6). The app must have user authentication enabled.

use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use serde_json::{Value, json};

use super::{Area, Ctx, Need};
use crate::client::Client;

pub fn cases() -> Vec<super::Case> {
    let area = Area::Signin;
    vec![
        case!(
            area,
            signin_success_echoes_user_data,
            Need::Nothing,
            "§2.10: a valid pusher:signin gets pusher:signin_success whose user_data is the exact string sent"
        ),
        case!(
            area,
            user_data_exact_bytes,
            Need::Nothing,
            "§2.3, §2.10: user_data is verified over the bytes sent (Python spacing), never re-serialized"
        ),
        case!(
            area,
            bad_signature_refused,
            Need::Nothing,
            "§2.10: a signin whose signature is not HMAC(secret, socket_id::user::user_data) gets pusher:error"
        ),
        case!(
            area,
            id_must_be_nonempty_string,
            Need::Nothing,
            "§2.10: user_data needs a non-empty string id"
        ),
        case!(
            area,
            other_user_resignin_refused,
            Need::Nothing,
            "§2.10: signin fails if the connection is already signed in as a different user"
        ),
        case!(
            area,
            server_to_user_delivered,
            Need::Nothing,
            "§2.10: a signed-in connection may subscribe #server-to-user-<id> with auth \"\" and gets events triggered to it"
        ),
        case!(
            area,
            server_to_user_requires_signin,
            Need::Nothing,
            "§2.10 [inferred]: #server-to-user-<id> is refused to connections not signed in as <id>"
        ),
        case!(
            area,
            presence_from_signin,
            Need::Nothing,
            "§2.6: after signin a presence subscribe without channel_data (signature over socket_id:channel) joins as the signed-in user"
        ),
        case!(
            area,
            terminate_connections,
            Need::Nothing,
            "§2.11, §3.3: POST /users/{id}/terminate_connections returns {} and closes only connections signed in as that user"
        ),
    ]
}

fn user_data(id: &str) -> String {
    json!({"id": id, "user_info": {"name": "Ada"}}).to_string()
}

async fn signin_success_echoes_user_data(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let data = user_data(&ctx.user());
    let frame = ctx.signin(&mut client, &data).await?;
    let echoed = frame.data_value()["user_data"].clone();
    ensure!(
        echoed == json!(data),
        "user_data should be the string sent: {}",
        frame.raw
    );
    client.assert_open().await
}

async fn user_data_exact_bytes(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let data = format!(
        r#"{{"id": "{}", "user_info": {{"name": "Zo\u00eb"}}}}"#,
        ctx.user()
    );
    let frame = ctx.signin(&mut client, &data).await?;
    ensure!(
        frame.data_value()["user_data"] == json!(data),
        "user_data: {}",
        frame.raw
    );
    Ok(())
}

/// Sends a signin and requires that it is refused (a pusher:error, or a close).
async fn refused(client: &mut Client, ctx: &Ctx) -> Result<()> {
    let outcome = client
        .expect("pusher:error for the signin", |f| {
            f.event == "pusher:error" || f.event == "pusher:signin_success"
        })
        .await;
    match outcome {
        Ok(frame) if frame.event == "pusher:signin_success" => {
            bail!("the signin should have been refused: {}", frame.raw)
        }
        Ok(frame) => {
            super::errors::error_shape(&frame)?;
            Ok(())
        }
        Err(_) if client.is_closed() => {
            let code = client.expect_close(ctx.cfg.wait).await?;
            ensure!(
                !code.is_some_and(|c| (4300..4400).contains(&c)),
                "closed with 43xx ({code:?})"
            );
            Ok(())
        }
        Err(error) => Err(error),
    }
}

async fn bad_signature_refused(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let data = user_data(&ctx.user());
    client.send(json!({
        "event": "pusher:signin",
        "data": {"auth": format!("{}:{}", ctx.cfg.key, "cd".repeat(32)), "user_data": data}
    }));
    refused(&mut client, &ctx).await
}

async fn id_must_be_nonempty_string(ctx: Arc<Ctx>) -> Result<()> {
    for data in [r#"{"id":12345}"#, r#"{"id":""}"#, r#"{"user_info":{}}"#] {
        let mut client = ctx.connect().await?;
        ctx.send_signin(&client, data);
        refused(&mut client, &ctx)
            .await
            .map_err(|e| e.context(format!("user_data {data}")))?;
    }
    Ok(())
}

async fn other_user_resignin_refused(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    ctx.signin(&mut client, &user_data(&ctx.user())).await?;
    ctx.send_signin(&client, &user_data(&ctx.user()));
    refused(&mut client, &ctx).await
}

async fn server_to_user_delivered(ctx: Arc<Ctx>) -> Result<()> {
    let user = ctx.user();
    let mut client = ctx.connect().await?;
    ctx.signin(&mut client, &user_data(&user)).await?;
    let channel = format!("#server-to-user-{user}");
    ctx.subscribe_public(&mut client, &channel).await?;
    ctx.api
        .trigger(json!({"name": "direct", "channels": [channel], "data": "{\"hi\":1}"}))
        .await?;
    let frame = client.expect_event("direct", Some(&channel)).await?;
    ensure!(
        frame.data_str() == Some("{\"hi\":1}"),
        "data changed: {}",
        frame.raw
    );
    Ok(())
}

async fn server_to_user_requires_signin(ctx: Arc<Ctx>) -> Result<()> {
    let victim = ctx.user();
    let channel = format!("#server-to-user-{victim}");
    let mut anonymous = ctx.connect().await?;
    anonymous.subscribe(&channel, Some(""), None);
    super::refused(&mut anonymous, &channel)
        .await
        .map_err(|e| e.context("a connection that is not signed in"))?;

    let mut other = ctx.connect().await?;
    ctx.signin(&mut other, &user_data(&ctx.user())).await?;
    other.subscribe(&channel, Some(""), None);
    super::refused(&mut other, &channel)
        .await
        .map_err(|e| e.context("a connection signed in as another user"))?;
    Ok(())
}

async fn presence_from_signin(ctx: Arc<Ctx>) -> Result<()> {
    let user = ctx.user();
    let mut client = ctx.connect().await?;
    ctx.signin(&mut client, &user_data(&user)).await?;
    let channel = ctx.channel("presence-");
    let auth = ctx.auth(&client.socket_id, &channel, None);
    client.subscribe(&channel, Some(&auth), None);
    let frame = super::subscribed(&mut client, &channel).await?;
    let presence = frame.data_value()["presence"].clone();
    ensure!(presence["count"] == json!(1), "count: {presence}");
    ensure!(
        presence["hash"][&user] == json!({"name": "Ada"}),
        "the member should be the signed-in user with its user_info: {presence}"
    );
    Ok(())
}

async fn terminate_connections(ctx: Arc<Ctx>) -> Result<()> {
    let user = ctx.user();
    let mut tab1 = ctx.connect().await?;
    ctx.signin(&mut tab1, &user_data(&user)).await?;
    let mut tab2 = ctx.connect().await?;
    ctx.signin(&mut tab2, &user_data(&user)).await?;
    let mut presence_only = ctx.connect().await?;
    ctx.subscribe_presence(
        &mut presence_only,
        &ctx.channel("presence-"),
        &user,
        json!({}),
    )
    .await?;
    let mut bystander = ctx.connect().await?;
    ctx.signin(&mut bystander, &user_data(&ctx.user())).await?;

    let reply = ctx
        .api
        .post(&format!("/users/{user}/terminate_connections"), &json!({}))
        .await?;
    let body = reply.ok_object()?;
    ensure!(
        body == Value::Object(Default::default()),
        "expected {{}}, got {body}"
    );
    for (name, client) in [("first", &mut tab1), ("second", &mut tab2)] {
        client
            .expect_close(ctx.cfg.wait)
            .await
            .map_err(|e| e.context(format!("the {name} signed-in connection")))?;
    }
    presence_only
        .assert_open()
        .await
        .map_err(|e| e.context("a presence-only connection of that user must stay open"))?;
    bystander
        .assert_open()
        .await
        .map_err(|e| e.context("another user's connection must stay open"))
}
