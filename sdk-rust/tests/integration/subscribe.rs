//! Subscribing through the SDK: channel kinds, authorizers, client events.

use comnestor::{
    AuthRequest, BoxError, ChannelAuth, ErrorKind, LocalAuthorizer, Subscriber, Trigger,
};
use futures_util::StreamExt;
use serde_json::json;

use crate::support::{APP_KEY, Server, credentials, next_named, unique, within};

#[tokio::test]
async fn public_channel_events_arrive_as_a_stream() {
    let server = Server::start().await;
    let subscriber = Subscriber::builder(server.url(), APP_KEY)
        .connect()
        .await
        .expect("connects");
    assert!(subscriber.socket_id().is_some());
    let channel = unique("news-");
    let mut news = subscriber.subscribe(&channel).await.expect("subscribed");
    let first = within("confirmation", news.next()).await.expect("an event");
    assert_eq!(first.event, "pusher:subscription_succeeded");

    let client = server.client();
    for n in 0..3 {
        let trigger = Trigger::new(channel.as_str(), "story", json!({ "n": n }));
        client.trigger(&trigger).await.expect("trigger");
    }
    for n in 0..3 {
        let story = within("story", news.next()).await.expect("an event");
        assert_eq!(
            (story.event.as_str(), story.data),
            ("story", json!({ "n": n }))
        );
    }
    let again = subscriber.subscribe(&channel).await.unwrap_err();
    assert!(
        matches!(again.kind(), ErrorKind::InvalidArgument(_)),
        "{again}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn private_channels_carry_client_events_between_subscribers() {
    let server = Server::start().await;
    let connect = || {
        Subscriber::builder(server.url(), APP_KEY)
            .authorizer(LocalAuthorizer::new(credentials()))
            .connect()
    };
    let (alice, bob) = (
        connect().await.expect("alice"),
        connect().await.expect("bob"),
    );
    let channel = unique("private-chat-");
    let alice_chat = alice.subscribe(&channel).await.expect("alice subscribed");
    let mut bob_chat = bob.subscribe(&channel).await.expect("bob subscribed");

    alice_chat
        .trigger("client-typing", json!({"who": "alice"}))
        .await
        .expect("client event sent");
    let typing = next_named(&mut bob_chat, "client-typing").await;
    assert_eq!(typing.data, json!({"who": "alice"}));

    let refused = alice_chat.trigger("typing", json!({})).await.unwrap_err();
    assert_eq!(refused.call(), "send_client_event");
    let public = unique("public-");
    let _sub = alice.subscribe(&public).await.expect("public");
    let refused = alice
        .send_client_event(&public, "client-x", json!({}))
        .await;
    assert!(
        refused.is_err(),
        "client events are refused on public channels"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn failed_authorizations_are_errors_of_subscribe() {
    let server = Server::start().await;
    let refusing = |_request: AuthRequest| async { Err::<ChannelAuth, BoxError>("no".into()) };
    let subscriber = Subscriber::builder(server.url(), APP_KEY)
        .authorizer(refusing)
        .connect()
        .await
        .expect("connects");
    let error = subscriber
        .subscribe(&unique("private-x-"))
        .await
        .unwrap_err();
    assert_eq!(error.call(), "subscribe");
    assert!(matches!(error.kind(), ErrorKind::Authorizer(_)), "{error}");

    let forging = |request: AuthRequest| async move {
        let forged = comnestor::Credentials::new("100", APP_KEY, "wrong-secret");
        Ok::<_, BoxError>(forged.authorize_channel(&request.socket_id, &request.channel)?)
    };
    let subscriber = Subscriber::builder(server.url(), APP_KEY)
        .authorizer(forging)
        .connect()
        .await
        .expect("connects");
    let error = subscriber
        .subscribe(&unique("private-y-"))
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::SubscriptionRejected(_)),
        "{error}"
    );

    let anonymous = Subscriber::builder(server.url(), APP_KEY)
        .connect()
        .await
        .expect("connects");
    let error = anonymous.subscribe("private-z").await.unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::InvalidArgument(_)),
        "{error}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_key_is_refused_without_retrying() {
    let server = Server::start().await;
    let error = Subscriber::builder(server.url(), "no-such-key")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(error.call(), "Subscriber::connect");
    assert!(
        matches!(error.kind(), ErrorKind::Refused { code: 4001, .. }),
        "{error}"
    );
    server.shutdown().await;
}
