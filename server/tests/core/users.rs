//! User authentication: `pusher:signin`, the server-to-user channel, watchlists and
//! terminating a user's connections.

use comnestor_protocol::auth;
use serde_json::json;

use crate::support::{Api, Client, member, server, server_with};

fn user(id: &str) -> String {
    json!({"id": id, "user_info": {"name": id}}).to_string()
}

fn watching(id: &str, watchlist: &[&str]) -> String {
    json!({"id": id, "watchlist": watchlist}).to_string()
}

/// The `(online, offline)` ids of a `pusher_internal:watchlist_events` frame.
fn statuses(frame: &crate::support::Frame) -> (Vec<String>, Vec<String>) {
    assert_eq!(
        frame.event, "pusher_internal:watchlist_events",
        "{}",
        frame.text
    );
    assert!(frame.channel.is_none(), "{}", frame.text);
    let mut online = Vec::new();
    let mut offline = Vec::new();
    for event in frame.data["events"].as_array().expect("events array") {
        let ids = event["user_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned());
        match event["name"].as_str() {
            Some("online") => online.extend(ids),
            Some("offline") => offline.extend(ids),
            other => panic!("unknown watchlist event {other:?}"),
        }
    }
    online.sort();
    offline.sort();
    (online, offline)
}

#[tokio::test]
async fn signin_success_echoes_the_exact_user_data() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    // Spaced and escaped as Python would send it; the echo must be byte for byte.
    let user_data = r#"{"id": "12345", "user_info": {"name": "J\u00f6rg"}}"#;
    let success = client.signin(&server.app, user_data).await;
    assert_eq!(success.data["user_data"].as_str(), Some(user_data));
    client.assert_alive().await;
}

#[tokio::test]
async fn bad_signins_get_an_error_and_the_socket_stays_open() {
    let server = server().await;
    let app = &server.app;
    let mut client = Client::connect(&server).await;
    let user_data = user("1");
    let for_other_socket = auth::authenticate_user(&app.key, &app.secret, "1.1", &user_data);
    let wrong_secret = auth::authenticate_user(&app.key, "nope", &client.socket_id, &user_data);
    for bad_auth in [
        for_other_socket,
        wrong_secret,
        String::new(),
        "no-colon".into(),
    ] {
        let signin =
            json!({"event": "pusher:signin", "data": {"auth": bad_auth, "user_data": user_data}});
        client.send(signin).await;
        let error = client.expect_error().await;
        assert!(!error.error_message().is_empty());
    }
    // Signed correctly but not a valid user: pusher-js needs a non-empty string id.
    for user_data in [r#"{"id":12}"#, r#"{"id":""}"#, r#"{"name":"x"}"#, "nope"] {
        client.send_signin(app, user_data).await;
        client.expect_error().await;
    }
    client.assert_alive().await;
    client.signin(app, &user_data).await;
}

#[tokio::test]
async fn a_connection_cannot_switch_users() {
    let server = server().await;
    let mut client = Client::connect(&server).await;
    client.signin(&server.app, &user("alice")).await;
    client.send_signin(&server.app, &user("mallory")).await;
    let error = client.expect_error().await;
    assert!(
        error.error_message().contains("another user"),
        "{}",
        error.text
    );
    // Signing in again as the same user is fine.
    client.signin(&server.app, &user("alice")).await;
}

#[tokio::test]
async fn signin_can_be_disabled_per_app() {
    let server = server_with(|s| s.user_authentication = false).await;
    let mut client = Client::connect(&server).await;
    client.send_signin(&server.app, &user("alice")).await;
    let error = client.expect_error().await;
    assert!(error.error_message().contains("disabled"), "{}", error.text);
    client.assert_alive().await;
}

#[tokio::test]
async fn server_to_user_channel_is_only_for_the_signed_in_user() {
    let server = server().await;
    let api = Api::new(&server);
    let own = "#server-to-user-alice";
    let mut alice = Client::connect(&server).await;

    // Not signed in yet: refused.
    alice
        .send(json!({"event": "pusher:subscribe", "data": {"auth": "", "channel": own}}))
        .await;
    alice.expect_refused(own, 401).await;

    alice.signin(&server.app, &user("alice")).await;
    alice.subscribe_public(own).await;
    let bobs = "#server-to-user-bob";
    alice
        .send(json!({"event": "pusher:subscribe", "data": {"auth": "", "channel": bobs}}))
        .await;
    alice.expect_refused(bobs, 401).await;

    api.trigger(own, "notice", r#"{"hello":"alice"}"#).await;
    let notice = alice.expect_on("notice", own).await;
    assert_eq!(notice.data, json!({"hello": "alice"}));
    api.trigger(bobs, "notice", "{}").await;
    api.trigger(own, "marker", "{}").await;
    alice.expect_on("marker", own).await;
}

#[tokio::test]
async fn watchlist_reports_current_status_then_changes() {
    let server = server().await;
    let app = &server.app;
    let mut carol = Client::connect(&server).await;
    carol.signin(app, &user("carol")).await;

    let mut watcher = Client::connect(&server).await;
    watcher.signin(app, &watching("w", &["bob", "carol"])).await;
    let initial = statuses(&watcher.next().await);
    assert_eq!(initial, (vec!["carol".into()], vec!["bob".into()]));

    // The watcher also sits in a presence channel with each of Bob's connections, so a
    // `member_removed` shows when the server has handled a disconnect.
    let fence = "presence-fence";
    watcher
        .subscribe_presence(app, fence, &member("w", "W"))
        .await;

    // Bob's first connection brings him online; his second changes nothing.
    let mut bob1 = Client::connect(&server).await;
    bob1.signin(app, &user("bob")).await;
    assert_eq!(
        statuses(&watcher.next().await),
        (vec!["bob".into()], vec![])
    );
    bob1.subscribe_presence(app, fence, &member("bob-1", "B1"))
        .await;
    watcher
        .expect_on("pusher_internal:member_added", fence)
        .await;
    let mut bob2 = Client::connect(&server).await;
    bob2.signin(app, &user("bob")).await;
    bob2.subscribe_presence(app, fence, &member("bob-2", "B2"))
        .await;
    watcher
        .expect_on("pusher_internal:member_added", fence)
        .await;

    // Only his last disconnect takes him offline.
    drop(bob1);
    watcher
        .expect_on("pusher_internal:member_removed", fence)
        .await;
    Api::new(&server).trigger(fence, "marker", "{}").await;
    watcher.expect_on("marker", fence).await;
    drop(bob2);
    watcher
        .expect_on("pusher_internal:member_removed", fence)
        .await;
    assert_eq!(
        statuses(&watcher.next().await),
        (vec![], vec!["bob".into()])
    );
    drop(carol);
    assert_eq!(
        statuses(&watcher.next().await),
        (vec![], vec!["carol".into()])
    );
}

#[tokio::test]
async fn a_watchlist_over_100_ids_is_cut_with_4302_without_closing() {
    let server = server().await;
    let app = &server.app;
    let mut ids: Vec<String> = (0..100).map(|n| format!("u{n}")).collect();
    ids.push("late".into());
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut watcher = Client::connect(&server).await;
    watcher.signin(app, &watching("w", &refs)).await;
    let error = watcher.expect_error().await;
    assert_eq!(error.error_code(), Some(4302), "{}", error.text);
    let (online, offline) = statuses(&watcher.next().await);
    assert!(online.is_empty());
    assert_eq!(offline.len(), 100);
    assert!(!offline.contains(&"late".to_owned()));

    // The 101st id is not watched; the first 100 are.
    let mut late = Client::connect(&server).await;
    late.signin(app, &user("late")).await;
    let mut first = Client::connect(&server).await;
    first.signin(app, &user("u0")).await;
    assert_eq!(statuses(&watcher.next().await), (vec!["u0".into()], vec![]));
    watcher.assert_alive().await;
}

#[tokio::test]
async fn terminate_connections_closes_only_the_users_signed_in_connections() {
    let server = server().await;
    let app = &server.app;
    let mut tab1 = Client::connect(&server).await;
    tab1.signin(app, &user("42")).await;
    let mut tab2 = Client::connect(&server).await;
    tab2.signin(app, &user("42")).await;
    // Same user id, but only through presence channel_data: not signed in.
    let mut presence_only = Client::connect(&server).await;
    presence_only
        .subscribe_presence(app, "presence-x", &member("42", "P"))
        .await;
    let mut someone_else = Client::connect(&server).await;
    someone_else.signin(app, &user("43")).await;

    let api = Api::new(&server);
    let reply = api
        .post("/users/42/terminate_connections", &json!({}))
        .await;
    assert_eq!(reply.ok(), json!({}));
    tab1.expect_close(4009).await;
    tab2.expect_close(4009).await;
    presence_only.assert_alive().await;
    someone_else.assert_alive().await;

    // Python's SDK posts without the /apps/{id} prefix; the app comes from auth_key.
    let body = b"{}";
    let reply = api.post_path("/users/43/terminate_connections", body).await;
    assert_eq!(reply.ok(), json!({}));
    someone_else.expect_close(4009).await;
    presence_only.assert_alive().await;

    // Watchers see terminated users go offline, and a terminated user may sign in again.
    let mut watcher = Client::connect(&server).await;
    watcher.signin(app, &watching("w", &["42"])).await;
    assert_eq!(statuses(&watcher.next().await), (vec![], vec!["42".into()]));
    let mut again = Client::connect(&server).await;
    again.signin(app, &user("42")).await;
    assert_eq!(statuses(&watcher.next().await), (vec!["42".into()], vec![]));
    api.post("/users/42/terminate_connections", &json!({}))
        .await
        .ok();
    again.expect_close(4009).await;
    assert_eq!(statuses(&watcher.next().await), (vec![], vec!["42".into()]));

    // A user with no connections is fine too.
    let reply = api
        .post("/users/nobody/terminate_connections", &json!({}))
        .await;
    assert_eq!(reply.ok(), json!({}));
}
