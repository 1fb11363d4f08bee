//! Crash durability: the real `comnestor` binary, killed with SIGKILL after answering 202 and
//! before delivering, delivers the event once restarted on the same SQLite file.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::delivery::{TARGET_APP_ID, TARGET_KEY, TARGET_SECRET, Target};
use crate::support::{PATIENCE, http_client, read, unique_id};

const KEY: &str = "crash-key";
const SECRET: &str = "crash-secret";

/// Starts `comnestor serve` on the database in `dir`; returns it with its base URL.
async fn spawn(dir: &Path, workers: usize, target: &Target) -> (Child, String) {
    let database = format!("sqlite://{}?mode=rwc", dir.join("log.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_comnestor"))
        .arg("serve")
        .env_clear()
        .env("COMNESTOR_HOST", "127.0.0.1")
        .env("COMNESTOR_PORT", "0")
        .env("COMNESTOR_LOG", "warn")
        .env("COMNESTOR_DATABASE_URL", database)
        .env("COMNESTOR_DELIVERY_WORKERS", workers.to_string())
        .env("COMNESTOR_APP_ID", "9001")
        .env("COMNESTOR_APP_KEY", KEY)
        .env("COMNESTOR_APP_SECRET", SECRET)
        .env("COMNESTOR_APP_DELIVERY_URL", &target.base_url)
        .env("COMNESTOR_APP_DELIVERY_APP_ID", TARGET_APP_ID)
        .env("COMNESTOR_APP_DELIVERY_KEY", TARGET_KEY)
        .env("COMNESTOR_APP_DELIVERY_SECRET", TARGET_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("comnestor starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let find = async {
        while let Some(line) = lines.next_line().await.expect("stdout readable") {
            if let Some(rest) = line.strip_prefix("Comnestor Realtime listening on ") {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                return Some(url);
            }
        }
        None
    };
    let url = tokio::time::timeout(PATIENCE, find)
        .await
        .expect("the server announces its address")
        .expect("the server printed its address before exiting");
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("comnestor-crash-{}", unique_id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
async fn an_event_accepted_before_sigkill_is_delivered_after_restart() {
    let dir = temp_dir();
    let target = Target::start(0).await;
    let http = http_client();

    // First life: accepts and queues, but runs no worker, so nothing is delivered.
    let (mut first, url) = spawn(&dir, 0, &target).await;
    let response = http
        .post(format!("{url}/api/events"))
        .basic_auth(KEY, Some(SECRET))
        .json(&json!({"channel": "durable", "event": "survived", "data": {"n": 1}}))
        .send()
        .await
        .unwrap();
    let (status, accepted) = read(response).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    first.kill().await.expect("SIGKILL");
    assert!(
        target.requests().is_empty(),
        "nothing was delivered before the crash"
    );

    // Second life, same database: the queued job is still there and the worker runs it.
    let (mut second, url) = spawn(&dir, 2, &target).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let event = loop {
        let response = http
            .get(format!("{url}/api/events/{id}"))
            .basic_auth(KEY, Some(SECRET))
            .send()
            .await
            .unwrap();
        let (_, event) = read(response).await;
        if event["status"] == "delivered" {
            break event;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered after restart: {event:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(event["attempts"], 1);
    let requests = target.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].signature_ok);
    assert_eq!(requests[0].body["name"], "survived");
    second.kill().await.expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Killed while an attempt is in flight, the job is locked by a worker that no longer exists;
/// the restarted server takes it back after two missed heartbeats and delivers it. Attempts are
/// recorded when they end, so the one the kill cut short left no record.
#[tokio::test]
async fn a_delivery_in_flight_at_sigkill_is_retried_after_restart() {
    let dir = temp_dir();
    let http = http_client();
    let hanging = Target::start_hanging().await;

    let (mut first, url) = spawn(&dir, 2, &hanging).await;
    let response = http
        .post(format!("{url}/api/events"))
        .basic_auth(KEY, Some(SECRET))
        .json(&json!({"channel": "durable", "event": "in-flight", "data": 1}))
        .send()
        .await
        .unwrap();
    let (status, accepted) = read(response).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while hanging.requests().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no attempt started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    first.kill().await.expect("SIGKILL");

    let target = Target::start(0).await;
    let (mut second, url) = spawn(&dir, 2, &target).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let event = loop {
        let response = http
            .get(format!("{url}/api/events/{id}"))
            .basic_auth(KEY, Some(SECRET))
            .send()
            .await
            .unwrap();
        let (_, event) = read(response).await;
        if event["status"] == "delivered" {
            break event;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the interrupted delivery never ran again: {event:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(event["attempts"], 1, "{event:#}");
    assert_eq!(
        event["attempt_log"].as_array().unwrap().len(),
        1,
        "{event:#}"
    );
    assert_eq!(hanging.requests().len(), 1, "the first server did send it");
    assert_eq!(target.requests().len(), 1);
    assert_eq!(target.requests()[0].body["name"], "in-flight");
    second.kill().await.expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}
