//! Retries, dead batches and re-sending them, and isolation between endpoints.

use std::time::Duration;

use comnestor_server::testing::{APP_ID, TestServer};
use comnestor_server::webhooks::{self, Batch, BatchStatus};

use crate::receiver::{Receiver, event, is};
use crate::support::Client;
use crate::{endpoint, server};

/// Waits until the endpoint's only batch about `channel` has `status`; returns it.
async fn batch_with_status(
    server: &TestServer,
    endpoint_id: &str,
    channel: &str,
    status: BatchStatus,
) -> Batch {
    let about = format!("\"channel\":\"{channel}\"");
    let store = server.context().webhooks.store();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let batches = store.batches(APP_ID, None, 100).await.unwrap();
        let mine: Vec<Batch> = batches
            .into_iter()
            .filter(|b| b.endpoint_id == endpoint_id && b.events.contains(&about))
            .collect();
        if let Some(batch) = mine.iter().find(|b| b.status == status) {
            assert_eq!(mine.len(), 1, "one batch: {mine:#?}");
            return batch.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no batch became {status:?}: {mine:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_failing_receiver_gets_the_batch_once_after_it_recovers() {
    let server = server(|w| w.sender.retry.max_attempts = 5).await;
    let receiver = Receiver::failing(2).await;
    let hook = endpoint(&server, &receiver.url, |_| {}).await;
    let mut client = Client::connect(&server).await;
    client.subscribe_public("retried").await;

    let attempts = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];
    let statuses: Vec<u16> = attempts.iter().map(|h| h.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    for attempt in &attempts {
        assert_eq!(attempt.events(), [event("channel_occupied", "retried")]);
        assert_eq!(
            attempt.body, attempts[0].body,
            "every attempt sends the same bytes"
        );
    }

    // Nothing more of that batch: the next webhook is a later event's.
    client.subscribe_public("after").await;
    let next = receiver.next().await;
    assert_eq!(next.events(), [event("channel_occupied", "after")]);

    let batch = batch_with_status(&server, &hook.id, "retried", BatchStatus::Delivered).await;
    let store = server.context().webhooks.store();
    let recorded = store.attempts(&batch.id).await.unwrap();
    let codes: Vec<Option<i32>> = recorded.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(500), Some(200)]);
    assert!(recorded[0].error.as_deref().unwrap().contains("500"));
    assert!(recorded[2].error.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn a_dead_batch_is_listed_and_re_sent() {
    let server = server(|w| w.sender.retry.max_attempts = 2).await;
    let receiver = Receiver::failing(2).await;
    let hook = endpoint(&server, &receiver.url, |_| {}).await;
    let mut client = Client::connect(&server).await;
    client.subscribe_public("doomed").await;
    assert_eq!(receiver.next().await.status, 500);
    assert_eq!(receiver.next().await.status, 500);

    let dead = batch_with_status(&server, &hook.id, "doomed", BatchStatus::Dead).await;
    let store = server.context().webhooks.store();
    let listed = store
        .batches(APP_ID, Some(BatchStatus::Dead), 10)
        .await
        .unwrap();
    assert_eq!(listed, vec![dead.clone()]);
    assert_eq!(store.attempts(&dead.id).await.unwrap().len(), 2);

    // As `comnestor webhooks resend` does from another process: only the stored batch
    // changes, and the running server notices.
    webhooks::resend(store, &dead.id).await.unwrap();
    let again = webhooks::resend(store, &dead.id).await.unwrap_err();
    assert!(again.to_string().contains("only dead batches"), "{again}");
    let resent = receiver.next().await;
    assert_eq!(resent.status, 200);
    assert_eq!(resent.events(), [event("channel_occupied", "doomed")]);
    let delivered = batch_with_status(&server, &hook.id, "doomed", BatchStatus::Delivered).await;
    assert!(delivered.time_ms >= dead.time_ms);
    assert_eq!(store.attempts(&dead.id).await.unwrap().len(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn a_slow_or_dead_endpoint_does_not_delay_a_healthy_one() {
    let server = server(|w| {
        w.sender.timeout = Duration::from_secs(60);
        w.sender.retry.max_attempts = 3;
    })
    .await;
    let slow = Receiver::hanging().await;
    let healthy = Receiver::start().await;
    endpoint(&server, &slow.url, |_| {}).await;
    // Nothing listens there: every attempt is refused.
    endpoint(&server, "http://127.0.0.1:9/webhooks", |_| {}).await;
    endpoint(&server, &healthy.url, |_| {}).await;

    let mut client = Client::connect(&server).await;
    let channels: Vec<String> = (0..8).map(|i| format!("busy-{i}")).collect();
    for channel in &channels {
        client.subscribe_public(channel).await;
        // One batch per channel: wait for the healthy endpoint to get this one.
        healthy.events_until(is("channel_occupied", channel)).await;
    }
    // The slow endpoint is still holding its first request.
    let held = slow.next().await;
    assert_eq!(held.status, 0, "held open, not answered");
    slow.release();
    server.shutdown().await;
}
