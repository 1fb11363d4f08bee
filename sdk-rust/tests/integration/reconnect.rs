//! Reconnecting after the server restarts, and re-subscribing under the new socket id.

use std::time::Duration;

use comnestor::{Backoff, ConnectionState, Subscriber, Trigger};
use serde_json::json;

use crate::support::{APP_KEY, Server, next_named, unique, within};

#[tokio::test]
async fn resubscribes_after_the_server_restarts() {
    let mut server = Server::start().await;
    let fast = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };
    let subscriber = server
        .client()
        .subscriber()
        .backoff(fast)
        .connect()
        .await
        .expect("connects");
    let before = subscriber.socket_id().expect("connected");
    let channel = unique("private-feed-");
    let mut feed = subscriber.subscribe(&channel).await.expect("subscribed");
    next_named(&mut feed, "pusher:subscription_succeeded").await;

    let mut states = subscriber.states();
    server.restart().await;
    let reconnected = states.wait_for(|state| match state {
        ConnectionState::Connected { socket_id } => socket_id != &before,
        _ => false,
    });
    within("a new connection", reconnected)
        .await
        .expect("state updates");

    // The channel is subscribed again on the new connection before events flow on it.
    next_named(&mut feed, "pusher:subscription_succeeded").await;
    let trigger = Trigger::new(channel.as_str(), "after-restart", json!({"ok": true}));
    server.client().trigger(&trigger).await.expect("trigger");
    let event = next_named(&mut feed, "after-restart").await;
    assert_eq!(event.data, json!({"ok": true}));
    server.shutdown().await;
}

#[tokio::test]
async fn closing_ends_every_stream() {
    let server = Server::start().await;
    let subscriber = Subscriber::builder(server.url(), APP_KEY)
        .connect()
        .await
        .expect("connects");
    let mut news = subscriber
        .subscribe(&unique("news-"))
        .await
        .expect("subscribed");
    subscriber.close();
    let ended = async { while news.next_event().await.is_some() {} };
    within("the stream to end", ended).await;
    assert!(matches!(subscriber.state(), ConnectionState::Closed { .. }));
    let error = subscriber.subscribe("other").await.unwrap_err();
    assert!(
        matches!(error.kind(), comnestor::ErrorKind::SubscriberClosed),
        "{error}"
    );
    server.shutdown().await;
}
