//! Several nodes of one cluster (given with `--node`): what a client sees must not depend on
//! the node it is connected to.

use std::sync::Arc;

use anyhow::{Result, ensure};
use serde_json::json;

use super::{Area, Ctx, Need};

pub fn cases() -> Vec<super::Case> {
    let area = Area::Multinode;
    let needs = Need::Nodes;
    vec![
        case!(
            area,
            http_event_across_nodes,
            needs,
            "cluster: an event triggered through any node's HTTP API reaches subscribers on every node"
        ),
        case!(
            area,
            client_event_across_nodes,
            needs,
            "cluster: a client event sent on one node reaches subscribers on the others"
        ),
        case!(
            area,
            presence_members_across_nodes,
            needs,
            "cluster, §2.4, §2.6: presence lists, member_added and member_removed span every node"
        ),
        case!(
            area,
            presence_counts_consistent,
            needs,
            "cluster, §3.3: user_count and /users agree on every node"
        ),
        case!(
            area,
            channels_list_consistent,
            needs,
            "cluster, §3.3: /channels lists channels occupied on any node, on every node"
        ),
    ]
}

fn last(ctx: &Ctx) -> usize {
    ctx.cfg.others.len()
}

async fn http_event_across_nodes(ctx: Arc<Ctx>) -> Result<()> {
    for publisher in 0..=last(&ctx) {
        let channel = ctx.channel("");
        let mut subscribers = Vec::new();
        for node in 0..=last(&ctx) {
            let mut client = ctx.connect_node(node).await?;
            ctx.subscribe_public(&mut client, &channel).await?;
            subscribers.push(client);
        }
        ctx.apis[publisher]
            .trigger(json!({"name": "x", "channels": [channel], "data": "{}"}))
            .await?;
        for (node, client) in subscribers.iter_mut().enumerate() {
            client
                .expect_event("x", Some(&channel))
                .await
                .map_err(|e| {
                    e.context(format!(
                        "published on node {publisher}, subscriber on node {node}"
                    ))
                })?;
        }
    }
    Ok(())
}

async fn client_event_across_nodes(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("private-");
    let mut a = ctx.connect_node(0).await?;
    ctx.subscribe_private(&mut a, &channel).await?;
    let mut b = ctx.connect_node(last(&ctx)).await?;
    ctx.subscribe_private(&mut b, &channel).await?;
    a.trigger(&channel, "client-x", json!({}));
    b.expect_event("client-x", Some(&channel)).await?;
    Ok(())
}

async fn presence_members_across_nodes(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let (first, second) = (ctx.user(), ctx.user());
    let mut a = ctx.connect_node(0).await?;
    ctx.subscribe_presence(&mut a, &channel, &first, json!({"n": 1}))
        .await?;
    let mut b = ctx.connect_node(last(&ctx)).await?;
    let presence = ctx
        .subscribe_presence(&mut b, &channel, &second, json!({}))
        .await?;
    ensure!(
        presence["count"] == json!(2),
        "the joiner on another node sees {presence}"
    );
    ensure!(
        presence["hash"][&first] == json!({"n": 1}),
        "hash: {presence}"
    );
    a.expect("member_added from the other node", |f| {
        f.is("pusher_internal:member_added", Some(&channel)) && f.data_value()["user_id"] == second
    })
    .await?;
    b.unsubscribe(&channel);
    a.expect("member_removed from the other node", |f| {
        f.is("pusher_internal:member_removed", Some(&channel))
            && f.data_value()["user_id"] == second
    })
    .await?;
    Ok(())
}

async fn presence_counts_consistent(ctx: Arc<Ctx>) -> Result<()> {
    let channel = ctx.channel("presence-");
    let mut clients = Vec::new();
    for node in 0..=last(&ctx) {
        let mut client = ctx.connect_node(node).await?;
        ctx.subscribe_presence(&mut client, &channel, &format!("n{node}"), json!({}))
            .await?;
        clients.push(client);
    }
    let expected = clients.len();
    for (node, api) in ctx.apis.iter().enumerate() {
        let body = api
            .get(&format!("/channels/{channel}"), &[("info", "user_count")])
            .await?
            .ok_object()?;
        ensure!(
            body["user_count"] == json!(expected),
            "node {node}: {body}, expected {expected}"
        );
        let users = api
            .get(&format!("/channels/{channel}/users"), &[])
            .await?
            .ok_object()?;
        let count = users["users"].as_array().map_or(0, Vec::len);
        ensure!(
            count == expected,
            "node {node}: /users {users}, expected {expected}"
        );
    }
    Ok(())
}

async fn channels_list_consistent(ctx: Arc<Ctx>) -> Result<()> {
    let prefix = ctx.channel("");
    let mut clients = Vec::new();
    let mut names = Vec::new();
    for node in 0..=last(&ctx) {
        let name = format!("{prefix}-{node}");
        let mut client = ctx.connect_node(node).await?;
        ctx.subscribe_public(&mut client, &name).await?;
        clients.push(client);
        names.push(name);
    }
    for (node, api) in ctx.apis.iter().enumerate() {
        let body = api
            .get("/channels", &[("filter_by_prefix", &prefix)])
            .await?
            .ok_object()?;
        for name in &names {
            ensure!(
                body["channels"].get(name).is_some(),
                "node {node} does not list {name}: {body}"
            );
        }
    }
    Ok(())
}
