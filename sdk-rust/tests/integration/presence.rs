//! Presence channels: member tracking through the SDK and the HTTP API.

use comnestor::{LocalAuthorizer, PresenceUser, Subscriber};
use serde_json::json;

use crate::support::{APP_KEY, Server, credentials, next_named, unique};

async fn member(server: &Server, id: &str, name: &str) -> Subscriber {
    let user = PresenceUser::new(id).with_info(json!({ "name": name }));
    Subscriber::builder(server.url(), APP_KEY)
        .authorizer(LocalAuthorizer::new(credentials()).presence_user(user))
        .connect()
        .await
        .expect("connects")
}

#[tokio::test]
async fn members_join_and_leave() {
    let server = Server::start().await;
    let channel = unique("presence-room-");
    let ann = member(&server, "1", "Ann").await;
    let mut ann_room = ann.subscribe(&channel).await.expect("ann joins");
    let joined = next_named(&mut ann_room, "pusher:subscription_succeeded").await;
    assert_eq!(joined.data, json!({"1": {"name": "Ann"}}));
    assert_eq!(ann_room.members().me.as_deref(), Some("1"));

    let bob = member(&server, "2", "Bob").await;
    let bob_room = bob.subscribe(&channel).await.expect("bob joins");
    let added = next_named(&mut ann_room, "pusher:member_added").await;
    assert_eq!(added.data["user_id"], "2");
    assert_eq!(added.data["user_info"], json!({"name": "Bob"}));
    let members = ann_room.members().members;
    assert_eq!(members.keys().collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(bob_room.members().members.len(), 2);

    let mut users = server
        .client()
        .presence_users(&channel)
        .await
        .expect("users");
    users.sort();
    assert_eq!(users, ["1", "2"]);

    drop(bob_room);
    let removed = next_named(&mut ann_room, "pusher:member_removed").await;
    assert_eq!(removed.data["user_id"], "2");
    assert_eq!(removed.data["user_info"], json!({"name": "Bob"}));
    assert_eq!(ann_room.members().members.len(), 1);
    server.shutdown().await;
}
