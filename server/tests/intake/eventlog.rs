//! Reading the event log: list, get, replay, channel history, the live stream, retention.

use std::collections::BTreeSet;

use comnestor_server::eventlog::{
    AttemptOutcome, AttemptRecordNew, EventLog, EventStatus, NewEvent, WalSync,
};
use comnestor_server::intake;
use serde_json::{Value, json};

use crate::support::{PATIENCE, Server, assert_problem, now_millis};

fn ids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_filters_by_channel_event_status_and_time_and_pages_with_a_cursor() {
    let server = Server::start().await;
    let mut published = Vec::new();
    for (channel, event) in [("a", "x"), ("a", "x"), ("b", "y"), ("a", "y"), ("b", "x")] {
        let body = json!({"channel": channel, "event": event, "data": 1});
        published.push(server.publish_ok(&body).await);
    }
    for id in &published {
        server.wait_status(id, "delivered").await;
    }

    let (_, page) = server.get("/api/events?channel=a").await;
    assert_eq!(ids(&page).len(), 3, "{page}");
    let (_, page) = server.get("/api/events?event=y").await;
    assert_eq!(ids(&page).len(), 2, "{page}");
    let (_, page) = server.get("/api/events?channel=b&event=x").await;
    assert_eq!(ids(&page), [published[4].clone()]);
    let (_, page) = server.get("/api/events?status=delivered").await;
    assert_eq!(ids(&page).len(), 5);
    let (_, page) = server.get("/api/events?status=dead").await;
    assert!(ids(&page).is_empty());

    let third = server.event(&published[2]).await;
    let from = third["stages"]["received_at"].as_i64().unwrap();
    let (_, page) = server.get(&format!("/api/events?from={from}")).await;
    assert!(ids(&page).contains(&published[2]), "{page}");
    assert!(ids(&page).contains(&published[4]), "{page}");
    let (_, page) = server.get(&format!("/api/events?to={from}")).await;
    assert!(!ids(&page).contains(&published[2]), "{page}");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/events?limit=2&cursor={c}"),
            None => "/api/events?limit=2".to_owned(),
        };
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{page}");
        assert!(ids(&page).len() <= 2);
        seen.extend(ids(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "the cursor never ends");
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 5, "{seen:?}");
    assert_eq!(pages, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn replay_delivers_the_event_again_as_a_new_one() {
    let server = Server::start().await;
    let mut subscriber = server.subscribe("news").await;
    let original = server
        .publish_ok(&json!({"channel": "news", "event": "story", "data": "v1"}))
        .await;
    subscriber.next("story").await;

    let (status, replayed) = server
        .post_empty(&format!("/api/events/{original}/replay"))
        .await;
    assert_eq!(status, 202, "{replayed}");
    let replay_id = replayed["id"].as_str().unwrap();
    assert_ne!(replay_id, original);
    let again = subscriber.next("story").await;
    assert_eq!(again["data"], "v1");
    let record = server.wait_status(replay_id, "delivered").await;
    assert_eq!(record["replay_of"], original);
    server.shutdown().await;
}

#[tokio::test]
async fn channel_history_since_an_id_or_a_time() {
    let server = Server::start().await;
    let mut published = Vec::new();
    for n in 0..4 {
        let body = json!({"channels": ["room", "elsewhere"], "event": "msg", "data": n});
        published.push(server.publish_ok(&body).await);
    }
    server
        .publish_ok(&json!({"channel": "elsewhere", "event": "msg", "data": 9}))
        .await;

    let (status, history) = server.get("/api/channels/room/history").await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["channel"], "room");
    let all = ids(&history);
    assert_eq!(all.len(), 4);

    let (_, after) = server
        .get(&format!("/api/channels/room/history?since_id={}", all[1]))
        .await;
    assert_eq!(ids(&after), all[2..].to_vec());

    let second = server.event(&all[1]).await;
    let since = second["stages"]["received_at"].as_i64().unwrap();
    let (_, by_time) = server
        .get(&format!("/api/channels/room/history?since={since}"))
        .await;
    assert!(ids(&by_time).contains(&all[1]));
    assert!(ids(&by_time).contains(&all[3]));

    let (_, page) = server.get("/api/channels/room/history?limit=3").await;
    assert_eq!(ids(&page).len(), 3);
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, rest) = server
        .get(&format!(
            "/api/channels/room/history?limit=3&since_id={cursor}"
        ))
        .await;
    assert_eq!(ids(&rest), [all[3].clone()]);

    let response = server
        .http
        .get(server.url("/api/channels/bad%20name/history"))
        .basic_auth(&server.app.key, Some(&server.app.secret))
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, "invalid channel name").await;
    server.shutdown().await;
}

/// Reads one Server-Sent Event's JSON data from a streaming response.
async fn next_sse(response: &mut reqwest::Response, buffer: &mut String) -> Value {
    let wait = async {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                if !data.is_empty() {
                    return serde_json::from_str(&data).expect("JSON event");
                }
                continue;
            }
            let chunk = response.chunk().await.expect("stream open").expect("chunk");
            buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("an SSE event")
}

/// Opens `GET /api/stream` with `query`.
pub async fn open_stream(server: &Server, query: &str) -> reqwest::Response {
    let response = server
        .http
        .get(server.url(&format!("/api/stream{query}")))
        .basic_auth(&server.app.key, Some(&server.app.secret))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    response
}

/// The next event metadata on the stream.
pub async fn next_metadata(response: &mut reqwest::Response, buffer: &mut String) -> Value {
    next_sse(response, buffer).await
}

#[tokio::test]
async fn the_stream_sends_metadata_filtered_by_channel_or_event() {
    let server = Server::start().await;
    let unauthenticated = server
        .http
        .get(server.url("/api/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    let mut by_channel = open_stream(&server, "?channel=watched").await;
    let mut by_event = open_stream(&server, "?event=wanted").await;
    let (mut channel_buffer, mut event_buffer) = (String::new(), String::new());

    server
        .publish_ok(&json!({"channel": "other", "event": "ignored", "data": 1}))
        .await;
    let watched = server
        .publish_ok(&json!({"channel": "watched", "event": "seen", "data": "secret"}))
        .await;
    let wanted = server
        .publish_ok(&json!({"channel": "other", "event": "wanted", "data": 1}))
        .await;

    let first = next_metadata(&mut by_channel, &mut channel_buffer).await;
    assert_eq!(first["id"], watched);
    assert_eq!(first["channels"], json!(["watched"]));
    assert_eq!(first["size"], 6);
    assert!(
        first.get("data").is_none(),
        "metadata carries no data: {first}"
    );
    let first = next_metadata(&mut by_event, &mut event_buffer).await;
    assert_eq!(first["id"], wanted);
    server.shutdown().await;
}

/// An event log in a fresh in-memory database.
async fn memory_log() -> EventLog {
    let db = comnestor_server::server::connect_database("sqlite::memory:")
        .await
        .unwrap();
    EventLog::open(db).await.unwrap()
}

fn old_event(app_id: &str, received_at: i64) -> NewEvent {
    NewEvent {
        app_id: app_id.to_owned(),
        channels: vec!["old".to_owned()],
        event: "e".to_owned(),
        data: "{}".to_owned(),
        socket_id: None,
        idempotency_key: None,
        request_hash: "h".to_owned(),
        replay_of: None,
        received_at,
    }
}

#[tokio::test]
async fn pruning_deletes_at_most_one_batch_at_a_time() {
    let log = memory_log().await;
    let old = now_millis() - 8 * 86_400_000;
    for _ in 0..25 {
        log.insert(old_event("1", old)).await.unwrap();
    }
    log.insert(old_event("1", now_millis())).await.unwrap();
    log.insert(old_event("2", old)).await.unwrap();
    let cutoff = now_millis() - 7 * 86_400_000;
    let mut batches = Vec::new();
    loop {
        let deleted = log.prune("1", cutoff, 10).await.unwrap();
        batches.push(deleted);
        if deleted < 10 {
            break;
        }
    }
    assert_eq!(batches, [10, 10, 5]);
    assert_eq!(log.count("1").await.unwrap(), 1);
    assert_eq!(log.count("2").await.unwrap(), 1, "other apps are untouched");
}

#[tokio::test]
async fn retention_removes_events_older_than_the_apps_retention() {
    let server = Server::start().await;
    let log = &server.intake().log;
    let old = now_millis() - 8 * 86_400_000;
    for _ in 0..25 {
        log.insert(old_event(&server.app.id, old)).await.unwrap();
    }
    let kept = log
        .insert(old_event(&server.app.id, now_millis()))
        .await
        .unwrap();

    // The server's own retention pass may run alongside; together they delete all 25.
    let deleted = intake::prune_expired(server.intake(), 10).await;
    assert!(deleted <= 25);
    assert_eq!(log.count(&server.app.id).await.unwrap(), 1);
    assert!(log.find(&kept.id).await.unwrap().is_some());
    let (_, history) = server.get("/api/channels/old/history").await;
    assert_eq!(ids(&history), std::slice::from_ref(&kept.id));
    assert_eq!(intake::prune_expired(server.intake(), 10).await, 0);
    server.shutdown().await;
}

fn outcome(attempt: i32, started_at: i64, error: Option<&str>) -> AttemptOutcome {
    AttemptOutcome {
        attempt,
        started_at,
        duration_ms: 3,
        status_code: Some(if error.is_some() { 500 } else { 200 }),
        error: error.map(str::to_owned),
    }
}

fn record(event_id: &str, outcome: AttemptOutcome, status: EventStatus) -> AttemptRecordNew {
    AttemptRecordNew {
        event_id: event_id.to_owned(),
        outcome,
        status,
    }
}

#[tokio::test]
async fn a_group_of_attempts_gives_each_event_its_own_outcome() {
    let log = memory_log().await;
    let now = now_millis();
    let events = log
        .insert_many((0..4).map(|_| old_event("1", now)).collect())
        .await
        .unwrap();
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| events[i].id.clone());
    log.record_attempts(&[
        record(&a, outcome(1, 1000, None), EventStatus::Delivered),
        record(
            &b,
            outcome(1, 1001, Some("target answered 500")),
            EventStatus::Retrying,
        ),
        record(&c, outcome(10, 1002, Some("timeout")), EventStatus::Dead),
    ])
    .await
    .unwrap();
    // A group with no delivered event leaves `acknowledged_at` alone.
    log.record_attempts(&[record(
        &d,
        outcome(1, 1003, Some("refused")),
        EventStatus::Retrying,
    )])
    .await
    .unwrap();

    let a = log.find(&a).await.unwrap().unwrap();
    assert_eq!(
        (a.status, a.attempts, a.sent_at),
        (EventStatus::Delivered, 1, Some(1000))
    );
    assert!(
        a.last_error.is_none() && a.acknowledged_at.is_some(),
        "{a:?}"
    );
    let b = log.find(&b).await.unwrap().unwrap();
    assert_eq!(
        (b.status, b.attempts, b.sent_at),
        (EventStatus::Retrying, 1, Some(1001))
    );
    assert_eq!(b.last_error.as_deref(), Some("target answered 500"));
    assert!(b.acknowledged_at.is_none(), "{b:?}");
    let c = log.find(&c).await.unwrap().unwrap();
    assert_eq!((c.status, c.attempts), (EventStatus::Dead, 10));
    assert!(c.acknowledged_at.is_none(), "{c:?}");
    let d = log.find(&d).await.unwrap().unwrap();
    assert_eq!((d.status, d.sent_at), (EventStatus::Retrying, Some(1003)));
    for (event, code) in [(&a, 200), (&b, 500), (&c, 500), (&d, 500)] {
        let attempts = log.attempts(&event.id).await.unwrap();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0].status_code, Some(code));
    }
}

#[tokio::test]
async fn a_group_insert_is_all_or_nothing() {
    let log = memory_log().await;
    let keyed = |key: &str| NewEvent {
        idempotency_key: Some(key.to_owned()),
        ..old_event("1", now_millis())
    };
    let written = log
        .insert_many(vec![keyed("k1"), keyed("k2")])
        .await
        .unwrap();
    assert_eq!(written.len(), 2);
    assert!(written.iter().all(|e| e.status == EventStatus::Accepted));
    // "k1" again fails the whole group: "k3" is not written either.
    assert!(
        log.insert_many(vec![keyed("k3"), keyed("k1")])
            .await
            .is_err()
    );
    assert_eq!(log.count("1").await.unwrap(), 2);
    assert!(
        log.find_by_idempotency_key("1", "k3")
            .await
            .unwrap()
            .is_none()
    );
}

/// A SQLite file runs `synchronous = NORMAL` and the log syncs the WAL after its inserts; an
/// in-memory database needs no sync.
#[tokio::test]
async fn a_sqlite_file_syncs_its_wal_after_inserts_and_memory_does_not() {
    let dir = std::env::temp_dir().join(format!("comnestor-wal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("log.db").display());
    let db = comnestor_server::server::connect_database(&url)
        .await
        .unwrap();
    assert!(WalSync::for_database(&db).await.unwrap().is_some());
    let log = EventLog::open(db).await.unwrap();
    let inserts = (0..40).map(|_| {
        let log = log.clone();
        tokio::spawn(async move { log.insert(old_event("1", now_millis())).await })
    });
    for insert in inserts.collect::<Vec<_>>() {
        insert.await.unwrap().unwrap();
    }
    assert_eq!(log.count("1").await.unwrap(), 40);
    assert!(dir.join("log.db-wal").exists());

    let memory = comnestor_server::server::connect_database("sqlite::memory:")
        .await
        .unwrap();
    assert!(WalSync::for_database(&memory).await.unwrap().is_none());
    std::fs::remove_dir_all(&dir).ok();
}
