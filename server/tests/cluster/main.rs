//! Several nodes sharing state through a real Redis (`COMNESTOR_TEST_REDIS_URL`).
//!
//! Each test starts its own nodes in this process, on a key prefix of its own.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::join_all;
use serde_json::json;
use support::{Api, Client, Nodes, cluster};

fn defaults(_: &mut comnestor_server::apps::AppSettings) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_reaches_every_node_exactly_once() {
    let nodes = Nodes::start("publish", 2, defaults).await;
    let (a, b) = (nodes.node(0), nodes.node(1));
    let mut on_a = Client::connect(a).await;
    let mut on_b = Client::connect(b).await;
    on_a.subscribe("news").await;
    on_b.subscribe("news").await;

    Api::of(b)
        .trigger("news", "story", json!({"n": 1}), None)
        .await;
    // The marker goes through the bus after the story: an echo of the story on the
    // publishing node, or a second copy anywhere, would come before it.
    Api::of(a).trigger("news", "marker", json!({}), None).await;
    for client in [&mut on_a, &mut on_b] {
        let frames = client.until("marker").await;
        let stories: Vec<_> = frames.iter().filter(|f| f.event == "story").collect();
        assert_eq!(stories.len(), 1, "{frames:?}");
        assert_eq!(stories[0].data["n"], 1);
    }

    // `socket_id` excludes that connection, whichever node it is on.
    let except = on_b.socket_id.clone();
    Api::of(a)
        .trigger("news", "story", json!({"n": 2}), Some(&except))
        .await;
    Api::of(a).trigger("news", "marker", json!({}), None).await;
    assert!(on_b.until("marker").await.is_empty());
    assert_eq!(on_a.until("marker").await.len(), 1);

    // Socket ids name their node, so they cannot collide across nodes.
    let node_a = cluster(a).node_id().to_owned();
    assert!(on_a.socket_id.starts_with(&format!("{node_a}.")));
    assert_ne!(cluster(a).node_id(), cluster(b).node_id());
    nodes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_announces_a_user_once_for_the_whole_cluster() {
    let nodes = Nodes::start("presence", 2, defaults).await;
    let (a, b) = (nodes.node(0), nodes.node(1));
    let room = "presence-room";
    let mut observer = Client::connect(a).await;
    observer.join_presence(room, "obs").await;

    let mut first = Client::connect(a).await;
    first.join_presence(room, "u1").await;
    let added = observer.expect("pusher_internal:member_added").await;
    assert_eq!(added.data["user_id"], "u1");

    // The same user on the other node: no announcement, and the member list is the cluster's.
    let mut second = Client::connect(b).await;
    let presence = second.join_presence(room, "u1").await;
    assert_eq!(presence["count"], 2, "{presence}");
    assert_eq!(presence["ids"], json!(["obs", "u1"]));
    assert_eq!(presence["hash"]["u1"]["name"], "u1");
    Api::of(b).trigger(room, "marker", json!({}), None).await;
    assert!(observer.until("marker").await.is_empty());

    let api = Api::of(b);
    let info = api.channel(room, "user_count,subscription_count").await;
    assert_eq!(info["user_count"], 2, "{info}");
    assert_eq!(info["subscription_count"], 3, "{info}");

    // One of the user's two connections leaves: still a member.
    first.close().await;
    api.wait_channel(room, "subscription_count", |c| c["subscription_count"] == 2)
        .await;
    Api::of(b).trigger(room, "marker", json!({}), None).await;
    assert!(observer.until("marker").await.is_empty());
    assert_eq!(api.users(room).await, ["obs", "u1"]);

    // The last one leaves: exactly one member_removed.
    second.close().await;
    let removed = observer.expect("pusher_internal:member_removed").await;
    assert_eq!(removed.data["user_id"], "u1");
    Api::of(b).trigger(room, "marker", json!({}), None).await;
    assert!(observer.until("marker").await.is_empty());
    assert_eq!(Api::of(a).users(room).await, ["obs"]);
    nodes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_member_limit_holds_for_the_cluster() {
    let nodes = Nodes::start("limit", 2, |s| s.max_presence_members = 2).await;
    let (a, b) = (nodes.node(0), nodes.node(1));
    let room = "presence-small";
    let mut one = Client::connect(a).await;
    one.join_presence(room, "one").await;
    let mut two = Client::connect(b).await;
    two.join_presence(room, "two").await;
    // A second connection of a member is not a new member.
    let mut two_again = Client::connect(a).await;
    two_again.join_presence(room, "two").await;

    let mut three = Client::connect(a).await;
    three.request_presence(room, "three").await;
    three.expect("pusher:error").await;
    let refused = three.expect("pusher:subscription_error").await;
    assert_eq!(refused.data["status"], 4100, "{}", refused.text);
    assert_eq!(Api::of(b).users(room).await, ["one", "two"]);
    nodes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_are_cluster_totals_on_every_node() {
    let nodes = Nodes::start("counts", 3, |s| s.subscription_count = true).await;
    let mut clients = Vec::new();
    for (i, node) in nodes.nodes.iter().enumerate() {
        for j in 0..=i {
            let mut client = Client::connect(node).await;
            client.subscribe("public-counted").await;
            client
                .join_presence("presence-counted", &format!("user{j}"))
                .await;
            clients.push(client);
        }
    }
    // 6 connections; users user0 (3 nodes), user1 (2), user2 (1).
    for node in &nodes.nodes {
        let api = Api::of(node);
        let info = api.channel("public-counted", "subscription_count").await;
        assert_eq!(info, json!({"occupied": true, "subscription_count": 6}));
        let info = api
            .channel("presence-counted", "user_count,subscription_count")
            .await;
        assert_eq!(info["user_count"], 3, "{info}");
        assert_eq!(info["subscription_count"], 6, "{info}");
        let list = api.channels("presence-", "user_count").await;
        assert_eq!(
            list,
            json!({"channels": {"presence-counted": {"user_count": 3}}})
        );
        let list = api.channels("", "subscription_count").await;
        assert_eq!(
            list["channels"]["public-counted"]["subscription_count"], 6,
            "{list}"
        );
        assert_eq!(
            api.users("presence-counted").await,
            ["user0", "user1", "user2"]
        );
    }

    // The subscription_count event carries the cluster total: the first client saw every
    // join, on every node, and its last count is 6.
    let first = &mut clients[0];
    Api::of(nodes.node(2))
        .trigger("public-counted", "marker", json!({}), None)
        .await;
    let frames = first.until("marker").await;
    let counts: Vec<_> = frames
        .iter()
        .filter(|f| f.event == "pusher_internal:subscription_count")
        .map(|f| f.data["subscription_count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.last(), Some(&6), "{frames:?}");

    for client in clients {
        client.close().await;
    }
    let api = Api::of(nodes.node(1));
    api.wait_channel("public-counted", "subscription_count", |c| {
        c["occupied"] == false
    })
    .await;
    assert_eq!(api.channels("", "").await, json!({"channels": {}}));
    nodes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_and_leaves_leave_exact_counts() {
    const PER_NODE: usize = 50;
    let nodes = Nodes::start("concurrent", 2, defaults).await;
    let room = "presence-busy";
    let mut observers = Vec::new();
    for (i, node) in nodes.nodes.iter().enumerate() {
        let mut observer = Client::connect(node).await;
        observer.join_presence(room, &format!("observer{i}")).await;
        observers.push(observer);
    }
    // Users 0..30 have a connection on both nodes; 30..50 on node 0 only, 50..70 on node 1.
    let user_of = |node: usize, k: usize| match k {
        k if k < 30 => format!("u{k:02}"),
        k => format!("u{:02}", k + node * 20),
    };
    let mut members: BTreeSet<String> = (0..70).map(|k| format!("u{k:02}")).collect();

    let joins = nodes.nodes.iter().enumerate().flat_map(|(i, node)| {
        (0..PER_NODE).map(move |k| async move {
            let mut client = Client::connect(node).await;
            client.join_presence(room, &user_of(i, k)).await;
            (i, k, client)
        })
    });
    let mut clients = join_all(joins).await;
    let api = Api::of(nodes.node(1));
    let info = api.channel(room, "user_count,subscription_count").await;
    assert_eq!(info["subscription_count"], 2 * PER_NODE + 2, "{info}");
    assert_eq!(info["user_count"], members.len() + 2, "{info}");

    // Node 1's users leave concurrently: only those without a node 0 connection go.
    let (leaving, staying): (Vec<_>, Vec<_>) = clients.drain(..).partition(|(i, _, _)| *i == 1);
    join_all(leaving.into_iter().map(|(_, _, c)| c.close())).await;
    members.retain(|id| id.as_str() < "u50");
    let info = api
        .wait_channel(room, "user_count,subscription_count", |c| {
            c["subscription_count"] == PER_NODE + 2
        })
        .await;
    assert_eq!(info["user_count"], members.len() + 2, "{info}");
    let mut expected: Vec<String> = members.iter().cloned().collect();
    expected.extend(["observer0".to_owned(), "observer1".to_owned()]);
    expected.sort();
    assert_eq!(Api::of(nodes.node(0)).users(room).await, expected);

    join_all(staying.into_iter().map(|(_, _, c)| c.close())).await;
    api.wait_channel(room, "subscription_count", |c| c["subscription_count"] == 2)
        .await;
    assert_eq!(api.users(room).await, ["observer0", "observer1"]);

    // Every observer saw each user arrive once and leave once, in a consistent order.
    Api::of(nodes.node(0))
        .trigger(room, "marker", json!({}), None)
        .await;
    for (i, observer) in observers.iter_mut().enumerate() {
        let mut added: BTreeMap<String, usize> = BTreeMap::new();
        let mut removed: BTreeMap<String, usize> = BTreeMap::new();
        let mut present = BTreeSet::new();
        for frame in observer.until("marker").await {
            let user = frame.data["user_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            match frame.event.as_str() {
                "pusher_internal:member_added" => {
                    *added.entry(user.clone()).or_default() += 1;
                    assert!(present.insert(user), "observer {i}: added twice");
                }
                "pusher_internal:member_removed" => {
                    *removed.entry(user.clone()).or_default() += 1;
                    assert!(present.remove(&user), "observer {i}: removed a non-member");
                }
                _ => {}
            }
        }
        let other = format!("observer{}", 1 - i);
        let all: BTreeSet<String> = (0..70).map(|k| format!("u{k:02}")).collect();
        for user in &all {
            assert_eq!(added.get(user), Some(&1), "observer {i}, {user}");
            assert_eq!(removed.get(user), Some(&1), "observer {i}, {user}");
        }
        assert!(present.is_empty() || present == BTreeSet::from([other.clone()]));
    }
    nodes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_node_is_cleaned_up_by_the_survivors() {
    let nodes = Nodes::start("dead", 3, |s| {
        s.subscription_count = true;
        s.user_authentication = true;
    })
    .await;
    let (a, b, dead) = (nodes.node(0), nodes.node(1), nodes.node(2));
    let room = "presence-fragile";
    let mut on_a = Client::connect(a).await;
    on_a.join_presence(room, "watcher-a").await;
    let mut on_b = Client::connect(b).await;
    on_b.join_presence(room, "watcher-b").await;
    let mut counted = Client::connect(a).await;
    counted.subscribe("public-fragile").await;

    // `gone` is only on the dead node; `both` also has a connection on a survivor.
    let mut gone = Client::connect(dead).await;
    gone.join_presence(room, "gone").await;
    let mut both_dead = Client::connect(dead).await;
    both_dead.join_presence(room, "both").await;
    let mut both_alive = Client::connect(b).await;
    both_alive.join_presence(room, "both").await;
    let mut public_dead = Client::connect(dead).await;
    public_dead.subscribe("public-fragile").await;
    let mut sleeper = Client::connect(dead).await;
    sleeper.signin("sleeper", &[]).await;
    let mut watcher = Client::connect(b).await;
    watcher.signin("watcher", &["sleeper"]).await;
    let initial = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        initial.data["events"],
        json!([{"name": "online", "user_ids": ["sleeper"]}])
    );
    let api = Api::of(a);
    assert_eq!(
        api.users(room).await,
        ["both", "gone", "watcher-a", "watcher-b"]
    );

    // The node stops talking to Redis without any cleanup, as in a crash.
    cluster(dead).halt();
    api.wait_channel(room, "user_count", |c| c["user_count"] == 3)
        .await;
    assert_eq!(api.users(room).await, ["both", "watcher-a", "watcher-b"]);
    let info = api.channel(room, "subscription_count").await;
    assert_eq!(info["subscription_count"], 3, "{info}");
    let info = Api::of(b)
        .channel("public-fragile", "subscription_count")
        .await;
    assert_eq!(info["subscription_count"], 1, "{info}");

    Api::of(b).trigger(room, "marker", json!({}), None).await;
    for watcher in [&mut on_a, &mut on_b] {
        let frames = watcher.until("marker").await;
        let removed: Vec<_> = frames
            .iter()
            .filter(|f| f.event == "pusher_internal:member_removed")
            .map(|f| f.data["user_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(removed, ["gone"], "{frames:?}");
    }
    // The public channel's subscriber heard the new total.
    Api::of(b)
        .trigger("public-fragile", "marker", json!({}), None)
        .await;
    let frames = counted.until("marker").await;
    let last = frames
        .iter()
        .rfind(|f| f.event == "pusher_internal:subscription_count")
        .expect("a subscription_count");
    assert_eq!(last.data["subscription_count"], 1);
    // Its signed-in user went offline for watchers on the survivors.
    let offline = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        offline.data["events"],
        json!([{"name": "offline", "user_ids": ["sleeper"]}])
    );
    nodes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reaped_node_that_comes_back_reconnects_its_clients() {
    let nodes = Nodes::start("comeback", 2, defaults).await;
    let (a, b) = (nodes.node(0), nodes.node(1));
    let room = "presence-comeback";
    let mut observer = Client::connect(a).await;
    observer.join_presence(room, "observer").await;
    let mut stranded = Client::connect(b).await;
    stranded.join_presence(room, "stranded").await;
    observer.expect("pusher_internal:member_added").await;

    // Cut off for longer than its lease, the node is reaped by the other one.
    cluster(b).halt();
    let removed = observer.expect("pusher_internal:member_removed").await;
    assert_eq!(removed.data["user_id"], "stranded");

    // Back again, it finds itself reaped: its clients are asked to reconnect, and it
    // registers again, so that they can rejoin.
    cluster(b).resume();
    assert_eq!(stranded.closed_with().await, 4200);
    let mut rejoined = Client::connect(b).await;
    let presence = rejoined.join_presence(room, "stranded").await;
    assert_eq!(presence["count"], 2, "{presence}");
    let added = observer.expect("pusher_internal:member_added").await;
    assert_eq!(added.data["user_id"], "stranded");
    let info = Api::of(a).channel(room, "subscription_count").await;
    assert_eq!(info["subscription_count"], 2, "{info}");
    nodes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_removes_the_nodes_entries() {
    let mut nodes = Nodes::start("graceful", 2, defaults).await;
    let room = "presence-leaving";
    let mut stays = Client::connect(nodes.node(0)).await;
    stays.join_presence(room, "stays").await;
    let mut leaves = Client::connect(nodes.node(1)).await;
    leaves.join_presence(room, "leaves").await;
    stays.expect("pusher_internal:member_added").await;

    let leaving = nodes.nodes.pop().unwrap();
    leaving.shutdown().await;
    let removed = stays.expect("pusher_internal:member_removed").await;
    assert_eq!(removed.data["user_id"], "leaves");
    let info = Api::of(nodes.node(0))
        .channel(room, "user_count,subscription_count")
        .await;
    assert_eq!(info["user_count"], 1, "{info}");
    assert_eq!(info["subscription_count"], 1, "{info}");
    nodes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_channels_serve_the_last_event_on_every_node() {
    let nodes = Nodes::start("cache", 2, defaults).await;
    let (a, b) = (nodes.node(0), nodes.node(1));
    let mut early = Client::connect(b).await;
    early.subscribe("cache-prices").await;
    early.expect("pusher:cache_miss").await;

    Api::of(a)
        .trigger("cache-prices", "price", json!({"eur": 7}), None)
        .await;
    let live = early.expect("price").await;
    assert_eq!(live.data["eur"], 7);

    let mut late = Client::connect(b).await;
    late.subscribe("cache-prices").await;
    let cached = late.expect("price").await;
    assert_eq!(cached.channel.as_deref(), Some("cache-prices"));
    assert_eq!(cached.data["eur"], 7);

    let info = Api::of(b).channel("cache-prices", "cache").await;
    assert_eq!(
        info["cache"]["data"],
        json!({"eur": 7}).to_string(),
        "{info}"
    );
    let ttl = info["cache"]["ttl"].as_u64().unwrap();
    assert!(ttl > 0 && ttl <= 1800, "{info}");
    nodes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_events_cross_nodes_but_not_back_to_the_sender() {
    let nodes = Nodes::start("client-events", 2, |s| s.client_events = true).await;
    let (a, b) = (nodes.node(0), nodes.node(1));
    let channel = "private-chat";
    let mut sender = Client::connect(a).await;
    sender.subscribe_private(channel).await;
    let mut receiver = Client::connect(b).await;
    receiver.subscribe_private(channel).await;
    let mut neighbour = Client::connect(a).await;
    neighbour.subscribe_private(channel).await;

    sender
        .send(json!({"event": "client-typing", "channel": channel, "data": {"who": "me"}}))
        .await;
    for client in [&mut receiver, &mut neighbour] {
        let typing = client.expect("client-typing").await;
        assert_eq!(typing.data["who"], "me");
    }
    Api::of(b).trigger(channel, "marker", json!({}), None).await;
    assert!(sender.until("marker").await.is_empty());
    assert!(receiver.until("marker").await.is_empty());
    nodes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminate_and_watchlist_work_across_nodes() {
    let nodes = Nodes::start("users", 2, |s| s.user_authentication = true).await;
    let (a, b) = (nodes.node(0), nodes.node(1));
    let mut watcher = Client::connect(a).await;
    watcher.signin("watcher", &["friend"]).await;
    let initial = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        initial.data["events"],
        json!([{"name": "offline", "user_ids": ["friend"]}])
    );

    let mut friend = Client::connect(b).await;
    friend.signin("friend", &[]).await;
    let online = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        online.data["events"][0]["name"], "online",
        "{}",
        online.text
    );
    assert_eq!(online.data["events"][0]["user_ids"], json!(["friend"]));

    // A second connection of the same user changes nothing; a late watcher sees it online.
    let mut friend_again = Client::connect(a).await;
    friend_again.signin("friend", &[]).await;
    let mut late = Client::connect(b).await;
    late.signin("late", &["friend"]).await;
    let initial = late.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        initial.data["events"],
        json!([{"name": "online", "user_ids": ["friend"]}])
    );

    // terminate_connections through node A closes the user's connections on both nodes.
    Api::of(a).terminate("friend").await;
    assert_eq!(friend.closed_with().await, 4009);
    assert_eq!(friend_again.closed_with().await, 4009);
    let offline = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        offline.data["events"][0]["name"], "offline",
        "{}",
        offline.text
    );
    assert_eq!(offline.data["events"][0]["user_ids"], json!(["friend"]));
    nodes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_that_cannot_be_recorded_is_refused() {
    let nodes = Nodes::start("refused", 2, defaults).await;
    let node = nodes.node(0);
    let mut client = Client::connect(node).await;
    cluster(node).halt();
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "news", "auth": ""}}))
        .await;
    client.expect("pusher:error").await;
    let refused = client.expect("pusher:subscription_error").await;
    assert_eq!(refused.data["status"], 503, "{}", refused.text);
    let info = Api::of(nodes.node(1))
        .channel("news", "subscription_count")
        .await;
    assert_eq!(info["occupied"], false, "{info}");
    nodes.shutdown().await;
}
