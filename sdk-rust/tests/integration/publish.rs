//! Publishing through `/api/events` and through the Pusher HTTP API, and reading the log.

use comnestor::{
    ApiAuth, BatchItem, ChannelsQuery, Client, Event, EventQuery, HistoryQuery, LocalAuthorizer,
    Subscriber, Trigger,
};
use serde_json::json;

use crate::support::{APP_KEY, Server, credentials, next_named, unique, within};

async fn subscriber(server: &Server) -> Subscriber {
    let subscriber =
        Subscriber::builder(server.url(), APP_KEY).authorizer(LocalAuthorizer::new(credentials()));
    within("connect", subscriber.connect())
        .await
        .expect("connects")
}

#[tokio::test]
async fn send_event_is_delivered_logged_and_replayable() {
    let server = Server::start().await;
    let client = server.client();
    let channel = unique("orders-");
    let subscriber = subscriber(&server).await;
    let mut orders = subscriber.subscribe(&channel).await.expect("subscribed");

    let event = Event::new(channel.as_str(), "order.created", json!({"id": 42}))
        .idempotency_key(unique("key-"));
    let accepted = client.send_event(&event).await.expect("accepted");
    assert!(!accepted.id.is_empty());
    let received = next_named(&mut orders, "order.created").await;
    assert_eq!(received.data, json!({"id": 42}));

    let again = client.send_event(&event).await.expect("idempotent retry");
    assert_eq!(
        again.id, accepted.id,
        "the same key answers with the same event"
    );

    let record = client.event(&accepted.id).await.expect("event record");
    assert_eq!(record.channels, std::slice::from_ref(&channel));
    assert_eq!(record.data, r#"{"id":42}"#);
    assert!(record.attempt_log.is_some());

    let query = EventQuery {
        channel: Some(channel.clone()),
        ..EventQuery::default()
    };
    let page = client.events(&query).await.expect("event list");
    assert!(page.events.iter().any(|e| e.id == accepted.id));
    let history = client
        .channel_history(&channel, &HistoryQuery::default())
        .await
        .expect("history");
    assert_eq!(history.events.len(), 1, "the retry created no second event");

    let replay = client.replay(&accepted.id).await.expect("replay");
    assert_ne!(replay.id, accepted.id);
    let replayed = next_named(&mut orders, "order.created").await;
    assert_eq!(replayed.data, json!({"id": 42}));
    let record = client.event(&replay.id).await.expect("replay record");
    assert_eq!(record.replay_of.as_deref(), Some(accepted.id.as_str()));
    server.shutdown().await;
}

#[tokio::test]
async fn send_event_with_a_signature_instead_of_basic_auth() {
    let server = Server::start().await;
    let client = Client::builder(credentials(), server.url())
        .api_auth(ApiAuth::Signature)
        .build()
        .expect("client");
    let channel = unique("signed-");
    let subscriber = subscriber(&server).await;
    let mut events = subscriber.subscribe(&channel).await.expect("subscribed");

    let accepted = client
        .send_event(&Event::new(channel.as_str(), "ping", json!("plain text")))
        .await
        .expect("signed publish accepted");
    let event = next_named(&mut events, "ping").await;
    assert_eq!(event.data, json!("plain text"));
    let query = EventQuery {
        channel: Some(channel),
        ..EventQuery::default()
    };
    let page = client.events(&query).await.expect("signed GET with query");
    assert_eq!(page.events[0].id, accepted.id);
    server.shutdown().await;
}

#[tokio::test]
async fn pusher_http_api() {
    let server = Server::start().await;
    let client = server.client();
    let (a, b) = (unique("private-a-"), unique("presence-b-"));
    let subscriber = Subscriber::builder(server.url(), APP_KEY)
        .authorizer(
            LocalAuthorizer::new(credentials()).presence_user(comnestor::PresenceUser::new("u1")),
        )
        .connect()
        .await
        .expect("connects");
    let mut first = subscriber.subscribe(&a).await.expect("subscribed a");
    let mut second = subscriber.subscribe(&b).await.expect("subscribed b");

    let trigger =
        Trigger::new([a.as_str(), b.as_str()], "both", json!({"n": 1})).info("user_count");
    let response = client.trigger(&trigger).await.expect("trigger");
    let counts = response.channels.expect("info was asked for");
    assert_eq!(counts[&b].user_count, Some(1));
    assert_eq!(next_named(&mut first, "both").await.data, json!({"n": 1}));
    assert_eq!(next_named(&mut second, "both").await.data, json!({"n": 1}));

    let batch = [
        BatchItem::new(a.as_str(), "one", json!(1)),
        BatchItem::new(b.as_str(), "two", json!(2)),
    ];
    client.trigger_batch(&batch).await.expect("batch");
    assert_eq!(next_named(&mut first, "one").await.data, json!(1));
    assert_eq!(next_named(&mut second, "two").await.data, json!(2));

    let all = client
        .channels(&ChannelsQuery::default())
        .await
        .expect("channels");
    assert!(all.channels.contains_key(&a) && all.channels.contains_key(&b));
    let presence = ChannelsQuery {
        filter_by_prefix: Some("presence-".into()),
        info: vec!["user_count".into()],
    };
    let listed = client.channels(&presence).await.expect("presence channels");
    assert_eq!(listed.channels[&b].user_count, Some(1));
    assert!(!listed.channels.contains_key(&a));

    let info = client
        .channel(&b, &["user_count"])
        .await
        .expect("channel info");
    assert!(info.occupied);
    assert_eq!(info.user_count, Some(1));
    let empty = client
        .channel("nobody-here", &[])
        .await
        .expect("empty channel");
    assert!(!empty.occupied);
    assert_eq!(client.presence_users(&b).await.expect("users"), ["u1"]);

    client
        .send_to_user("u1", "hello", json!({}))
        .await
        .expect("send_to_user");
    client
        .terminate_user_connections("u1")
        .await
        .expect("terminate");
    server.shutdown().await;
}
