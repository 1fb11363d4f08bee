//! Presence channels: member lists, first/last-connection announcements, exact-byte signatures.

use comnestor_protocol::auth;
use serde_json::json;

use crate::support::{Api, Client, member, server, server_with};

const ROOM: &str = "presence-room";

#[tokio::test]
async fn subscription_succeeded_lists_ids_hash_and_count_including_the_joiner() {
    let server = server().await;
    let app = &server.app;
    let mut alice = Client::connect(&server).await;
    let own = alice
        .subscribe_presence(app, ROOM, &member("alice", "Alice"))
        .await;
    assert!(
        matches!(own.raw_data, Some(serde_json::Value::String(_))),
        "{}",
        own.text
    );
    assert_eq!(
        own.data,
        json!({"presence": {"ids": ["alice"], "hash": {"alice": {"name": "Alice"}}, "count": 1}})
    );

    // A member without user_info keeps its key in `hash`.
    let mut bob = Client::connect(&server).await;
    let list = bob
        .subscribe_presence(app, ROOM, r#"{"user_id":"bob"}"#)
        .await;
    let presence = &list.data["presence"];
    assert_eq!(presence["count"], 2);
    let mut ids: Vec<&str> = presence["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["alice", "bob"]);
    assert_eq!(presence["hash"]["alice"], json!({"name": "Alice"}));
    assert!(presence["hash"].as_object().unwrap().contains_key("bob"));
    assert!(presence["hash"]["bob"].is_null() || presence["hash"]["bob"] == json!({}));
}

#[tokio::test]
async fn member_added_goes_to_the_others_only_on_a_users_first_connection() {
    let server = server().await;
    let app = &server.app;
    let api = Api::new(&server);
    let mut alice = Client::connect(&server).await;
    alice
        .subscribe_presence(app, ROOM, &member("alice", "Alice"))
        .await;

    let mut bob_tab1 = Client::connect(&server).await;
    bob_tab1
        .subscribe_presence(app, ROOM, &member("bob", "Bob"))
        .await;
    let added = alice.expect_on("pusher_internal:member_added", ROOM).await;
    assert_eq!(
        added.data,
        json!({"user_id": "bob", "user_info": {"name": "Bob"}})
    );

    // Bob's second tab: counted once, announced to nobody, not even to the first tab.
    let mut bob_tab2 = Client::connect(&server).await;
    let list = bob_tab2
        .subscribe_presence(app, ROOM, &member("bob", "Bob"))
        .await;
    assert_eq!(list.data["presence"]["count"], 2);
    api.trigger(ROOM, "marker", "{}").await;
    for client in [&mut alice, &mut bob_tab1, &mut bob_tab2] {
        client.expect_on("marker", ROOM).await;
    }
    let users = api.get(&format!("/channels/{ROOM}/users"), &[]).await.ok();
    let mut ids: Vec<String> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["alice", "bob"]);
}

#[tokio::test]
async fn member_removed_is_sent_only_when_a_users_last_connection_leaves() {
    let server = server().await;
    let app = &server.app;
    let api = Api::new(&server);
    let mut alice = Client::connect(&server).await;
    alice
        .subscribe_presence(app, ROOM, &member("alice", "Alice"))
        .await;
    let mut tab1 = Client::connect(&server).await;
    tab1.subscribe_presence(app, ROOM, &member("bob", "Bob"))
        .await;
    alice.expect("pusher_internal:member_added").await;
    let mut tab2 = Client::connect(&server).await;
    tab2.subscribe_presence(app, ROOM, &member("bob", "Bob"))
        .await;

    // The first tab unsubscribes: bob is still there.
    tab1.send(json!({"event": "pusher:unsubscribe", "data": {"channel": ROOM}}))
        .await;
    tab1.assert_alive().await;
    api.trigger(ROOM, "marker", "{}").await;
    alice.expect_on("marker", ROOM).await;

    // The last tab disconnects: bob leaves.
    drop(tab2);
    let removed = alice
        .expect_on("pusher_internal:member_removed", ROOM)
        .await;
    assert_eq!(removed.data, json!({"user_id": "bob"}));
    let users = api.get(&format!("/channels/{ROOM}/users"), &[]).await.ok();
    assert_eq!(users, json!({"users": [{"id": "alice"}]}));
}

#[tokio::test]
async fn channel_data_is_verified_over_the_exact_bytes_the_client_sent() {
    let server = server().await;
    let app = &server.app;
    let mut observer = Client::connect(&server).await;
    observer
        .subscribe_presence(app, ROOM, &member("observer", "O"))
        .await;

    // Python's json.dumps: spaces after separators, ASCII escapes. PHP's json_encode:
    // escaped slashes and \u escapes. Both must be checked as sent, never re-serialized.
    let python = r#"{"user_id": "py", "user_info": {"name": "J\u00f6rg \u2603"}}"#;
    let php = r#"{"user_id":"php","user_info":{"url":"https:\/\/example.com\/x","name":"\u00e9"}}"#;
    let mut joined = Vec::new();
    for (channel_data, user_id, info) in [
        (python, "py", json!({"name": "Jörg ☃"})),
        (
            php,
            "php",
            json!({"url": "https://example.com/x", "name": "é"}),
        ),
    ] {
        let mut client = Client::connect(&server).await;
        client.subscribe_presence(app, ROOM, channel_data).await;
        let added = observer
            .expect_on("pusher_internal:member_added", ROOM)
            .await;
        assert_eq!(added.data["user_id"], user_id);
        assert_eq!(added.data["user_info"], info);
        joined.push(client);
    }

    // Signed over the compact re-serialization, sent with Python's spacing: refused.
    let mut client = Client::connect(&server).await;
    let compact =
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(python).unwrap()).unwrap();
    assert_ne!(compact, python);
    let auth = auth::authorize_channel(
        &app.key,
        &app.secret,
        &client.socket_id,
        ROOM,
        Some(&compact),
    );
    let subscribe = json!({"event": "pusher:subscribe", "data": {
        "channel": ROOM, "auth": auth, "channel_data": python}});
    client.send(subscribe).await;
    client.expect_refused(ROOM, 401).await;
    client.assert_alive().await;
}

#[tokio::test]
async fn numeric_user_ids_are_accepted_as_strings() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    let channel_data = r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#;
    let list = client
        .subscribe_presence(&server.app, ROOM, channel_data)
        .await;
    assert_eq!(list.data["presence"]["ids"], json!(["10"]));
    assert_eq!(
        list.data["presence"]["hash"]["10"],
        json!({"name": "Mr. Pusher"})
    );
}

#[tokio::test]
async fn bad_presence_subscriptions_are_refused_and_the_socket_stays_open() {
    let server = server_with(|s| s.max_presence_member_size = 100).await;
    let app = &server.app;
    let mut client = Client::connect(&server).await;
    let big = member("big", &"x".repeat(200));
    let long_id = json!({"user_id": "u".repeat(129)}).to_string();
    for channel_data in [
        "not json",
        r#"{"user_info":{}}"#,
        r#"{"user_id":""}"#,
        r#"{"user_id":null}"#,
        big.as_str(),
        long_id.as_str(),
    ] {
        client.send_subscribe(app, ROOM, Some(channel_data)).await;
        client.expect_refused(ROOM, 401).await;
    }
    // Neither channel_data nor a signed-in user: nobody to join as.
    client.send_subscribe(app, ROOM, None).await;
    client.expect_refused(ROOM, 401).await;

    // A presence signature without the channel_data it covers.
    let auth = auth::authorize_channel(&app.key, &app.secret, &client.socket_id, ROOM, None);
    let subscribe = json!({"event": "pusher:subscribe", "data": {
        "channel": ROOM, "auth": auth, "channel_data": member("a", "A")}});
    client.send(subscribe).await;
    client.expect_refused(ROOM, 401).await;
    client.assert_alive().await;
}

#[tokio::test]
async fn a_full_presence_channel_refuses_new_users_but_not_new_tabs() {
    let server = server_with(|s| s.max_presence_members = 2).await;
    let app = &server.app;
    let mut one = Client::connect(&server).await;
    one.subscribe_presence(app, ROOM, &member("1", "One")).await;
    let mut two = Client::connect(&server).await;
    two.subscribe_presence(app, ROOM, &member("2", "Two")).await;

    let mut three = Client::connect(&server).await;
    three
        .send_subscribe(app, ROOM, Some(&member("3", "Three")))
        .await;
    let refused = three.expect_error().await;
    assert!(refused.error_message().contains("full"), "{}", refused.text);
    let error = three.expect_on("pusher:subscription_error", ROOM).await;
    assert_eq!(error.data["type"], "LimitReached");
    three.assert_alive().await;

    let mut second_tab = Client::connect(&server).await;
    let list = second_tab
        .subscribe_presence(app, ROOM, &member("2", "Two"))
        .await;
    assert_eq!(list.data["presence"]["count"], 2);
}

#[tokio::test]
async fn a_signed_in_user_joins_presence_without_channel_data() {
    let server = server().await;
    let app = &server.app;
    let mut client = Client::connect(&server).await;
    client
        .signin(app, r#"{"id":"signed","user_info":{"name":"Signed In"}}"#)
        .await;
    client.send_subscribe(app, ROOM, None).await;
    let list = client
        .expect_on("pusher_internal:subscription_succeeded", ROOM)
        .await;
    assert_eq!(
        list.data["presence"],
        json!({"ids": ["signed"], "hash": {"signed": {"name": "Signed In"}}, "count": 1})
    );
}
