//! The same pipeline on the production backends: Postgres as log and queue, Redis as queue
//! and bus, MySQL as log. These need the real services and fail when they are not provided.

use comnestor_server::config::QueueKind;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;

use crate::eventlog::{next_metadata, open_stream};
use crate::support::{Options, PATIENCE, SHARED_SERVICES, Server, service_url};

#[tokio::test]
async fn postgres_as_log_and_queue_end_to_end() {
    let url = service_url("COMNESTOR_TEST_POSTGRES_URL", "Postgres");
    let _serial = SHARED_SERVICES.lock().await;
    let server = Server::start_with(Options {
        database_url: url.clone(),
        ..Options::default()
    })
    .await;
    assert_eq!(server.intake().queue.backend_name(), "postgres");
    let mut subscriber = server.subscribe("pg").await;
    let id = server
        .publish_ok(&json!({"channel": "pg", "event": "stored", "data": {"on": "postgres"}}))
        .await;
    let message = subscriber.next("stored").await;
    assert_eq!(message["data"], r#"{"on":"postgres"}"#);
    let event = server.wait_status(&id, "delivered").await;
    assert_eq!(event["attempts"], 1);
    let (_, history) = server.get("/api/channels/pg/history").await;
    assert_eq!(history["events"][0]["id"], id);
    // The finished job does not stay in apalis's table: the worker prunes it.
    let db = sea_orm::Database::connect(&url).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT COUNT(*) AS n FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'",
                [std::any::type_name::<comnestor_server::queue::Delivery>().into()],
            ))
            .await
            .unwrap()
            .unwrap();
        if row.try_get::<i64>("", "n").unwrap() == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "finished jobs were not pruned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn redis_as_queue_and_bus_end_to_end() {
    let url = service_url("COMNESTOR_TEST_REDIS_URL", "Redis");
    let server = Server::start_with(Options {
        redis_url: Some(url),
        queue: QueueKind::Redis,
        ..Options::default()
    })
    .await;
    assert_eq!(server.intake().queue.backend_name(), "redis");
    let mut stream = open_stream(&server, "?channel=rd").await;
    let mut buffer = String::new();
    let mut subscriber = server.subscribe("rd").await;
    let id = server
        .publish_ok(&json!({"channel": "rd", "event": "queued", "data": "via redis"}))
        .await;
    let message = subscriber.next("queued").await;
    assert_eq!(message["data"], "via redis");
    let metadata = next_metadata(&mut stream, &mut buffer).await;
    assert_eq!(
        metadata["id"], id,
        "metadata came back through Redis pub/sub"
    );
    server.wait_status(&id, "delivered").await;
    server.shutdown().await;
}

/// MySQL (MariaDB in CI) holds the event log; apalis has no MySQL backend on this sqlx, so
/// the queue is on Redis.
#[tokio::test]
async fn mysql_as_log_with_redis_as_queue_end_to_end() {
    let mysql = service_url("COMNESTOR_TEST_MYSQL_URL", "MySQL");
    let redis = service_url("COMNESTOR_TEST_REDIS_URL", "Redis");
    let server = Server::start_with(Options {
        database_url: mysql,
        redis_url: Some(redis),
        queue: QueueKind::Redis,
        ..Options::default()
    })
    .await;
    let mut subscriber = server.subscribe("my").await;
    let id = server
        .publish_ok(&json!({"channels": ["my", "other"], "event": "App\\Events\\Stored", "data": {"on": "mysql"}}))
        .await;
    let message = subscriber.next("App\\Events\\Stored").await;
    assert_eq!(message["data"], r#"{"on":"mysql"}"#);
    let event = server.wait_status(&id, "delivered").await;
    assert_eq!(event["channels"], json!(["my", "other"]));
    let (_, history) = server.get("/api/channels/my/history").await;
    assert_eq!(history["events"][0]["id"], id);
    let (_, page) = server.get("/api/events?status=delivered&limit=1").await;
    assert_eq!(page["events"][0]["id"], id);
    server.shutdown().await;
}
