//! Delivery: to an external Pusher-compatible target, retries, dead events, the sweeper.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use comnestor_protocol::signing::{SignedRequest, verify_request};
use comnestor_server::apps::AppSettings;
use comnestor_server::eventlog::NewEvent;
use comnestor_server::intake;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Request, Response};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::{Options, Server, now_millis, now_secs};

/// What an external target received: one entry per request.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub signature_ok: bool,
    pub body: Value,
}

/// A Pusher-compatible `/apps/{id}/events` that answers 500 to its first `failures` requests.
pub struct Target {
    pub base_url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

pub const TARGET_APP_ID: &str = "4242";
pub const TARGET_KEY: &str = "target-key";
pub const TARGET_SECRET: &str = "target-secret";

impl Target {
    pub async fn start(failures: usize) -> Self {
        Self::serve(failures, false).await
    }

    /// A target that records each request and never answers it.
    pub async fn start_hanging() -> Self {
        Self::serve(0, true).await
    }

    async fn serve(failures: usize, hang: bool) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        let endpoint = poem::endpoint::make(move |mut req: Request| {
            let log = log.clone();
            async move {
                let body = req.take_body().into_vec().await.unwrap_or_default();
                let signed = SignedRequest {
                    method: req.method().as_str(),
                    path: req.uri().path(),
                    query: req.uri().query().unwrap_or_default(),
                    body: &body,
                };
                let signature_ok =
                    verify_request(&signed, TARGET_KEY, TARGET_SECRET, now_secs()).is_ok();
                let received = Received {
                    path: req.uri().path().to_owned(),
                    signature_ok,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                };
                let count = {
                    let mut log = log.lock().unwrap();
                    log.push(received);
                    log.len()
                };
                let status = if count <= failures { 500 } else { 200 };
                if hang {
                    std::future::pending::<()>().await;
                }
                Response::builder()
                    .status(poem::http::StatusCode::from_u16(status).unwrap())
                    .content_type("application/json")
                    .body("{}")
            }
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor)
                .run(endpoint)
                .await;
        });
        Self {
            base_url: format!("http://{addr}"),
            received,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// App settings that deliver to this target.
    pub fn settings(&self) -> AppSettings {
        AppSettings {
            delivery_url: Some(self.base_url.clone()),
            delivery_app_id: Some(TARGET_APP_ID.to_owned()),
            delivery_key: Some(TARGET_KEY.to_owned()),
            delivery_secret: Some(TARGET_SECRET.to_owned()),
            ..AppSettings::default()
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn an_external_target_that_fails_twice_gets_the_event_on_the_third_attempt() {
    let target = Target::start(2).await;
    let server = Server::start_with(Options {
        app: target.settings(),
        ..Options::default()
    })
    .await;
    let id = server
        .publish_ok(
            &json!({"channel": "ext", "event": "shipped", "data": {"n": 1}, "socket_id": "1.2"}),
        )
        .await;
    let event = server.wait_status(&id, "delivered").await;

    assert_eq!(event["attempts"], 3, "{event:#}");
    assert!(event["last_error"].is_null(), "{event:#}");
    let attempts = event["attempt_log"].as_array().unwrap();
    let codes: Vec<&Value> = attempts.iter().map(|a| &a["status_code"]).collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(200)]);
    assert!(attempts[0]["error"].as_str().unwrap().contains("500"));

    let requests = target.requests();
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(request.path, format!("/apps/{TARGET_APP_ID}/events"));
        assert!(request.signature_ok, "signed as the Pusher SDKs sign");
        assert_eq!(request.body["name"], "shipped");
        assert_eq!(request.body["data"], r#"{"n":1}"#);
        assert_eq!(request.body["channels"], json!(["ext"]));
        assert_eq!(request.body["socket_id"], "1.2");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_event_is_marked_dead_after_the_configured_attempts() {
    // A port nothing listens on: every attempt is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let server = Server::start_with(Options {
        max_attempts: 3,
        app: AppSettings {
            delivery_url: Some(format!("http://127.0.0.1:{port}")),
            ..AppSettings::default()
        },
        ..Options::default()
    })
    .await;
    let id = server
        .publish_ok(&json!({"channel": "c", "event": "doomed", "data": 1}))
        .await;
    let event = server.wait_status(&id, "dead").await;
    assert_eq!(event["attempts"], 3);
    assert!(
        event["last_error"]
            .as_str()
            .unwrap()
            .contains("request failed"),
        "{event:#}"
    );
    assert_eq!(event["attempt_log"].as_array().unwrap().len(), 3);
    assert!(event["stages"]["acknowledged_at"].is_null());
    let (_, dead) = server.get("/api/events?status=dead").await;
    assert_eq!(dead["events"][0]["id"], id);
    server.shutdown().await;
}

#[tokio::test]
async fn the_sweeper_queues_an_event_left_accepted() {
    let server = Server::start().await;
    let mut subscriber = server.subscribe("swept").await;
    // As if the process died between writing the log and queueing the job.
    let stranded = server
        .intake()
        .log
        .insert(NewEvent {
            app_id: server.app.id.clone(),
            channels: vec!["swept".to_owned()],
            event: "stranded".to_owned(),
            data: "\"late\"".to_owned(),
            socket_id: None,
            idempotency_key: None,
            request_hash: "h".to_owned(),
            replay_of: None,
            received_at: now_millis(),
        })
        .await
        .unwrap();
    assert_eq!(server.event(&stranded.id).await["status"], "accepted");

    let queued = intake::sweep(server.intake(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(queued, 1);
    let message = subscriber.next("stranded").await;
    assert_eq!(message["data"], "\"late\"");
    server.wait_status(&stranded.id, "delivered").await;
    assert_eq!(
        intake::sweep(server.intake(), Duration::ZERO)
            .await
            .unwrap(),
        0
    );
    server.shutdown().await;
}

/// With polling slowed to an hour, only the wake on push can deliver: a burst of concurrent
/// publishes and a run of sequential ones must all arrive.
#[tokio::test]
async fn the_in_process_worker_is_woken_by_each_push_not_by_polling() {
    let server = Server::start_with(Options {
        queue_poll: Duration::from_secs(3600),
        ..Options::default()
    })
    .await;
    let mut subscriber = server.subscribe("wake").await;
    server.publish_burst("wake", "burst", 30).await;
    for _ in 0..30 {
        subscriber.next("burst").await;
    }
    let mut latencies = Vec::new();
    for n in 0..20 {
        let sent = std::time::Instant::now();
        server
            .publish_ok(&json!({"channel": "wake", "event": "single", "data": n}))
            .await;
        subscriber.next("single").await;
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    eprintln!(
        "publish to subscriber, 20 sequential events: median {:?}, max {:?}",
        latencies[10], latencies[19]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_sweeper_queues_again_an_event_whose_retry_was_lost() {
    use sea_orm::{ConnectionTrait, Statement};

    let server = Server::start().await;
    let mut subscriber = server.subscribe("lost").await;
    // As if the retry push failed after an attempt half an hour ago: `retrying`, no job.
    let log = &server.intake().log;
    let event = log
        .insert(NewEvent {
            app_id: server.app.id.clone(),
            channels: vec!["lost".to_owned()],
            event: "found".to_owned(),
            data: "1".to_owned(),
            socket_id: None,
            idempotency_key: None,
            request_hash: "h".to_owned(),
            replay_of: None,
            received_at: now_millis(),
        })
        .await
        .unwrap();
    let long_ago = now_millis() - 30 * 60 * 1000;
    let backend = log.connection().get_database_backend();
    log.connection()
        .execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE events SET status = 'retrying', attempts = 1, queued_at = ?, sent_at = ? WHERE id = ?",
            [long_ago.into(), long_ago.into(), event.id.clone().into()],
        ))
        .await
        .unwrap();
    // Recent activity is left alone.
    assert_eq!(
        intake::sweep_stalled(server.intake(), Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        intake::sweep_stalled(server.intake(), intake::STALL_AFTER)
            .await
            .unwrap(),
        1
    );
    subscriber.next("found").await;
    let record = server.wait_status(&event.id, "delivered").await;
    assert_eq!(record["attempts"], 2);
    server.shutdown().await;
}

/// A server that accepts and queues events but runs no delivery worker.
async fn server_without_worker() -> Server {
    Server::start_with(Options {
        delivery_workers: 0,
        ..Options::default()
    })
    .await
}

/// Runs `sql` on the server's database; its rows.
async fn query(server: &Server, sql: &str) -> Vec<sea_orm::QueryResult> {
    use sea_orm::{ConnectionTrait, Statement};

    let db = server.intake().log.connection();
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
}

/// With the queue in the log's database, an event and its delivery job are one transaction:
/// the event is logged already `queued`, with its job beside it.
#[tokio::test]
async fn an_event_is_logged_queued_with_its_job_in_one_transaction() {
    let server = server_without_worker().await;
    let id = server
        .publish_ok(&json!({"channel": "together", "event": "e", "data": 1}))
        .await;
    let event = server.event(&id).await;
    assert_eq!(event["status"], "queued", "{event:#}");
    let stages = &event["stages"];
    assert_eq!(stages["queued_at"], stages["logged_at"], "{event:#}");
    let jobs = query(&server, "SELECT job FROM Jobs WHERE status = 'Pending'").await;
    assert_eq!(jobs.len(), 1);
    let job: Vec<u8> = jobs[0].try_get_by_index(0).unwrap();
    let job: Value = serde_json::from_slice(&job).unwrap();
    assert_eq!(job["event_id"], id.as_str());
    assert_eq!(job["event"]["channels"], json!(["together"]));
    server.shutdown().await;
}

/// When the job cannot be written, neither is the event: the caller gets a 503, not a 202 for
/// an event nothing would deliver.
#[tokio::test]
async fn an_event_whose_job_cannot_be_written_is_not_logged() {
    let server = server_without_worker().await;
    server
        .publish_ok(&json!({"channel": "together", "event": "before", "data": 1}))
        .await;
    query(&server, "DROP TABLE Jobs").await;
    let response = server
        .publish(&json!({"channel": "together", "event": "after", "data": 2}))
        .await;
    crate::support::assert_problem(response, 503, "unavailable").await;
    let (_, page) = server.get("/api/events?channel=together").await;
    let names: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["before"]);
    server.shutdown().await;
}

/// This process's worker claims the jobs the intake writes: they are written locked by it
/// (`Queued`, as apalis's fetch leaves a job before its lock marks it `Running`) and run at
/// once, each exactly once.
#[tokio::test]
async fn fresh_jobs_are_claimed_by_this_process_and_run_once() {
    let target = Target::start_hanging().await;
    let server = Server::start_with(Options {
        app: target.settings(),
        // Only a claim can start these jobs within the test.
        queue_poll: Duration::from_secs(3600),
        ..Options::default()
    })
    .await;
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    while !server.intake().queue.is_claiming() {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never claims"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Fewer than the worker's four deliveries at a time, so that every one runs at once.
    let ids = server.publish_burst("claimed", "e", 3).await;
    while target.requests().len() < ids.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "the claimed jobs did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The webhook queue keeps its jobs in the same table.
    let rows = query(
        &server,
        "SELECT status, lock_by FROM Jobs WHERE job_type LIKE '%::Delivery'",
    )
    .await;
    assert_eq!(rows.len(), ids.len());
    for row in &rows {
        let status: String = row.try_get_by_index(0).unwrap();
        let lock_by: Option<String> = row.try_get_by_index(1).unwrap();
        assert_eq!(status, "Queued");
        assert!(lock_by.unwrap_or_default().starts_with("delivery-"));
    }
    // Nothing else picks them up while they run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(target.requests().len(), ids.len());
    server.shutdown().await;
}
