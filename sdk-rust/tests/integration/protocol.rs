//! Wire behaviour against a scripted server: ping/pong, and what each close-code range does
//! to reconnection and re-subscription.

use std::time::Duration;

use comnestor::protocol::message::{self, ClientMessage};
use comnestor::{Backoff, ConnectionState, Subscriber};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{WebSocketStream, accept_async};

use crate::support::within;

type Socket = WebSocketStream<TcpStream>;

/// A WebSocket server whose every frame the test writes.
struct Scripted {
    listener: TcpListener,
}

impl Scripted {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self { listener }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.listener.local_addr().unwrap())
    }

    /// Accepts the next connection and sends `pusher:connection_established`.
    async fn accept(&self, socket_id: &str, activity_timeout: u32) -> Socket {
        let (tcp, _) = within("a connection", self.listener.accept())
            .await
            .unwrap();
        let mut socket = accept_async(tcp).await.expect("WebSocket handshake");
        let hello = message::connection_established(socket_id, activity_timeout);
        socket.send(Message::Text(hello.into())).await.unwrap();
        socket
    }
}

/// Reads frames until one with event `name`.
async fn expect_frame(socket: &mut Socket, name: &str) -> ClientMessage {
    let wait = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame = ClientMessage::parse(text.as_str()).expect("a Pusher frame");
                    if frame.event == name {
                        return frame;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended while waiting for {name}: {other:?}"),
            }
        }
    };
    within(name, wait).await
}

/// Answers the subscriber's `pusher:subscribe` for `channel`.
async fn confirm_subscription(socket: &mut Socket, channel: &str) {
    let frame = expect_frame(socket, "pusher:subscribe").await;
    let data: comnestor::protocol::message::SubscribeData = frame.data_as().unwrap();
    assert_eq!(data.channel, channel);
    let ok = message::subscription_succeeded(channel);
    socket.send(Message::Text(ok.into())).await.unwrap();
}

async fn close(socket: &mut Socket, code: u16) {
    let frame = CloseFrame {
        code: code.into(),
        reason: "scripted".into(),
    };
    let _ = socket.close(Some(frame)).await;
}

const FAST: Backoff = Backoff {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(200),
};

#[tokio::test]
async fn answers_pings_and_pings_after_silence() {
    let server = Scripted::start().await;
    let connect = Subscriber::builder(server.url(), "k").connect();
    let (subscriber, mut socket) = tokio::join!(connect, server.accept("1.1", 1));
    let _subscriber = subscriber.expect("connects");

    socket
        .send(Message::Text(message::ping().into()))
        .await
        .unwrap();
    expect_frame(&mut socket, "pusher:pong").await;

    // After the server's one second of silence, the subscriber checks the connection.
    expect_frame(&mut socket, "pusher:ping").await;
    socket
        .send(Message::Text(message::pong().into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn gives_up_after_4001_to_4099() {
    let server = Scripted::start().await;
    let connect = Subscriber::builder(server.url(), "k")
        .backoff(FAST)
        .connect();
    let (subscriber, mut socket) = tokio::join!(connect, server.accept("1.1", 120));
    let subscriber = subscriber.expect("connects");
    let subscribe = subscriber.subscribe("news");
    let (subscription, ()) = tokio::join!(subscribe, confirm_subscription(&mut socket, "news"));
    let mut news = subscription.expect("subscribed");

    close(&mut socket, 4009).await;
    let mut states = subscriber.states();
    let closed = states.wait_for(|s| matches!(s, ConnectionState::Closed { .. }));
    let state = within("the final state", closed).await.unwrap().clone();
    assert!(
        matches!(
            state,
            ConnectionState::Closed {
                code: Some(4009),
                ..
            }
        ),
        "{state:?}"
    );
    let ended = async { while news.next_event().await.is_some() {} };
    within("the stream to end", ended).await;
}

/// A close with `code` must lead to a new connection on which the channel is subscribed again.
async fn reconnects_and_resubscribes_after(code: u16) {
    let server = Scripted::start().await;
    let connect = Subscriber::builder(server.url(), "k")
        .backoff(FAST)
        .connect();
    let (subscriber, mut socket) = tokio::join!(connect, server.accept("1.1", 120));
    let subscriber = subscriber.expect("connects");
    let subscribe = subscriber.subscribe("news");
    let (subscription, ()) = tokio::join!(subscribe, confirm_subscription(&mut socket, "news"));
    let mut news = subscription.expect("subscribed");
    news.next_event().await.expect("first confirmation");

    close(&mut socket, code).await;
    let mut second = server.accept("2.2", 120).await;
    confirm_subscription(&mut second, "news").await;
    let again = within("re-subscription", news.next_event())
        .await
        .expect("an event");
    assert_eq!(again.event, "pusher:subscription_succeeded");
    assert_eq!(subscriber.socket_id().as_deref(), Some("2.2"));

    let event = message::channel_event("story", "news", r#"{"n":1}"#);
    second.send(Message::Text(event.into())).await.unwrap();
    let story = within("an event", news.next_event())
        .await
        .expect("an event");
    assert_eq!(story.data, serde_json::json!({"n": 1}));
}

#[tokio::test]
async fn reconnects_at_once_after_42xx() {
    reconnects_and_resubscribes_after(4200).await;
}

#[tokio::test]
async fn reconnects_after_backing_off_after_41xx() {
    reconnects_and_resubscribes_after(4100).await;
}

#[tokio::test]
async fn reconnects_after_a_close_without_a_pusher_code() {
    reconnects_and_resubscribes_after(1001).await;
}

#[tokio::test]
async fn malformed_frames_are_ignored_without_panicking() {
    let server = Scripted::start().await;
    let authorizer = |_request: comnestor::AuthRequest| async {
        Ok::<_, comnestor::BoxError>(comnestor::ChannelAuth {
            auth: "k:signature".into(),
            channel_data: Some(r#"{"user_id":"1"}"#.into()),
            shared_secret: None,
        })
    };
    let connect = Subscriber::builder(server.url(), "k")
        .authorizer(authorizer)
        .connect();
    let (subscriber, mut socket) = tokio::join!(connect, server.accept("1.1", 120));
    let subscriber = subscriber.expect("connects");
    let subscribe = subscriber.subscribe("presence-room");
    let confirm = async {
        expect_frame(&mut socket, "pusher:subscribe").await;
        let frames = [
            "not json",
            "[1,2]",
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-room","data":"5"}"#,
            r#"{"event":"pusher_internal:member_added","channel":"presence-room","data":"[]"}"#,
            r#"{"event":"pusher_internal:member_removed","channel":"presence-room","data":7}"#,
            r#"{"event":"pusher:error","data":"oops"}"#,
            r#"{"event":"story","channel":"presence-room","data":"{\"n\":1}"}"#,
        ];
        for frame in frames {
            socket.send(Message::Text(frame.into())).await.unwrap();
        }
    };
    let (subscription, ()) = tokio::join!(subscribe, confirm);
    let mut room = subscription.expect("subscribed despite odd data");
    let story = async {
        loop {
            let event = room.next_event().await.expect("stream open");
            if event.event == "story" {
                return event;
            }
        }
    };
    let story = within("the well-formed event", story).await;
    assert_eq!(story.data, serde_json::json!({"n": 1}));
    assert!(room.members().members.is_empty());
}
