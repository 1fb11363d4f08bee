//! Broadcasts to a channel large enough to be written by its lanes, through every way a frame
//! can reach a subscriber: written directly to an idle socket, queued for a busy or streaming
//! connection, and next to frames the connection task writes itself.

use std::time::Duration;

use serde_json::json;

use crate::support::{Api, Client, server};

/// More than the hub's lane threshold (256), so the channel's broadcasts go through its lanes.
const SUBSCRIBERS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_channel_delivers_every_event_once_and_in_order() {
    let server = server().await;
    let api = Api::new(&server);
    let mut clients = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        let mut client = Client::connect(&server).await;
        client.subscribe_public("big").await;
        clients.push(client);
    }

    let mut sent = 0;
    // Spaced further apart than a connection's streaming gap (20 ms): idle subscribers, so
    // the lanes write each event to their sockets directly.
    for _ in 0..5 {
        api.trigger("big", "seq", &sent.to_string()).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // Every tenth client asks for a pong, which its task queues and writes while events keep
    // coming: broadcasts to it must queue behind the pong until the task has written it.
    for client in clients.iter_mut().step_by(10) {
        client
            .send(json!({"event": "pusher:ping", "data": {}}))
            .await;
    }
    // Back to back, in batches that broadcast one event right after the other: later ones
    // must wait behind the lanes' earlier ones, and streaming subscribers get them queued for
    // their tasks to merge.
    for _ in 0..4 {
        let batch: Vec<_> = (sent..sent + 5)
            .map(|n| json!({"name": "seq", "channel": "big", "data": n.to_string()}))
            .collect();
        let reply = api.post("/batch_events", &json!({ "batch": batch })).await;
        assert_eq!(reply.ok(), json!({}));
        sent += 5;
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    // Idle again: direct writes after the tasks' own.
    for _ in 0..5 {
        api.trigger("big", "seq", &sent.to_string()).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }

    for (i, client) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        let mut pongs = 0;
        while got.len() < sent {
            let frame = client.next().await;
            match frame.event.as_str() {
                "pusher:pong" => pongs += 1,
                "seq" => got.push(frame.raw_data.unwrap().as_str().unwrap().to_owned()),
                other => panic!("client {i}: unexpected {other}: {}", frame.text),
            }
        }
        let expected: Vec<String> = (0..sent).map(|n| n.to_string()).collect();
        assert_eq!(got, expected, "client {i}");
        if i % 10 == 0 && pongs == 0 {
            client.expect("pusher:pong").await;
        }
        // The connection's own writes still frame correctly after the direct ones.
        client.assert_alive().await;
    }
}
