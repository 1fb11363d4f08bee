//! `POST /api/events`: both ways to authenticate, every refusal, idempotency and the rate
//! limit.

use std::time::Instant;

use comnestor_protocol::signing::sign_request;
use serde_json::{Value, json};

use crate::support::{Options, Server, assert_problem, now_secs, read};

#[tokio::test]
async fn basic_auth_publish_reaches_a_subscriber_with_every_stage_recorded() {
    let server = Server::start().await;
    let mut subscriber = server.subscribe("orders").await;

    let body = json!({
        "channel": "orders",
        "event": "App\\Events\\OrderShipped",
        "data": {"order": 7},
    });
    let sent = Instant::now();
    let response = server.publish(&body).await;
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (status, accepted) = read(response).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/events/{id}"));
    assert_eq!(accepted["status_url"], location);

    let message = subscriber.next("App\\Events\\OrderShipped").await;
    eprintln!("POST /api/events to subscriber: {:?}", sent.elapsed());
    assert_eq!(message["channel"], "orders");
    assert_eq!(message["data"], r#"{"order":7}"#);

    let event = server.wait_status(id, "delivered").await;
    let stages = &event["stages"];
    let times: Vec<i64> = [
        "received_at",
        "logged_at",
        "queued_at",
        "sent_at",
        "acknowledged_at",
    ]
    .iter()
    .map(|stage| {
        stages[stage]
            .as_i64()
            .unwrap_or_else(|| panic!("{stage}: {event}"))
    })
    .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{stages}");
    assert_eq!(event["attempts"], 1);
    let attempts = event["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{event}");
    assert_eq!(attempts[0]["status_code"], 200);
    assert!(attempts[0]["error"].is_null());
    server.shutdown().await;
}

#[tokio::test]
async fn signed_publish_relays_string_data_as_is() {
    let server = Server::start().await;
    let mut subscriber = server.subscribe("second").await;

    let body = json!({
        "channels": ["first", "second"],
        "event": "greeting",
        "data": "hello, \"world\"",
        "app_key": server.app.key,
    })
    .to_string();
    let response = server
        .signed("POST", "/api/events", Some(body.as_bytes()))
        .send()
        .await
        .unwrap();
    let (status, accepted) = read(response).await;
    assert_eq!(status, 202, "{accepted}");

    let message = subscriber.next("greeting").await;
    assert_eq!(message["data"], "hello, \"world\"");
    let event = server.event(accepted["id"].as_str().unwrap()).await;
    assert_eq!(event["channels"], json!(["first", "second"]));

    // A signed GET (no body) authenticates as well.
    let path = format!("/api/events/{}", accepted["id"].as_str().unwrap());
    let (status, _) = read(server.signed("GET", &path, None).send().await.unwrap()).await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn the_excluded_socket_does_not_get_its_own_event() {
    let server = Server::start().await;
    let mut subscriber = server.subscribe("chat").await;
    let excluded = server
        .publish_ok(&json!({
            "channel": "chat", "event": "mine", "data": 1,
            "socket_id": subscriber.socket_id,
        }))
        .await;
    server.wait_status(&excluded, "delivered").await;
    server
        .publish_ok(&json!({"channel": "chat", "event": "theirs", "data": 2}))
        .await;
    // Messages to one socket arrive in order, and `mine` was delivered before `theirs` was
    // published: if it had reached this socket, it would come first.
    let first = subscriber.next_of(&["mine", "theirs"]).await;
    assert_eq!(first["event"], "theirs");
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_401_problems() {
    let server = Server::start().await;
    let body = json!({"channel": "c", "event": "e", "data": 1});
    let url = server.url("/api/events");

    let none = server.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(
        none.headers()["www-authenticate"],
        "Basic realm=\"comnestor\""
    );
    assert_problem(none, 401, "credentials").await;

    let wrong_secret = server
        .http
        .post(&url)
        .basic_auth(&server.app.key, Some("nope"));
    assert_problem(wrong_secret.json(&body).send().await.unwrap(), 401, "").await;

    let unknown_key = server
        .http
        .post(&url)
        .basic_auth("nobody", Some(&server.app.secret));
    assert_problem(unknown_key.json(&body).send().await.unwrap(), 401, "").await;

    let text = body.to_string();
    let forged = sign_request(
        &server.app.key,
        "not-the-secret",
        "POST",
        "/api/events",
        &[],
        Some(text.as_bytes()),
        now_secs(),
    );
    let response = server
        .http
        .post(format!("{url}?{forged}"))
        .header("content-type", "application/json")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "Invalid signature").await;

    let stale = sign_request(
        &server.app.key,
        &server.app.secret,
        "POST",
        "/api/events",
        &[],
        Some(text.as_bytes()),
        now_secs() - 3600,
    );
    let response = server
        .http
        .post(format!("{url}?{stale}"))
        .header("content-type", "application/json")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "Timestamp expired").await;

    // Signed over one body, sent with another.
    let response = server
        .signed("POST", "/api/events", Some(text.as_bytes()))
        .body(json!({"channel": "c", "event": "other", "data": 1}).to_string())
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "body_md5").await;

    let unknown = sign_request(
        "nobody",
        "x",
        "POST",
        "/api/events",
        &[],
        Some(b"{}"),
        now_secs(),
    );
    let response = server
        .http
        .post(format!("{url}?{unknown}"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "Unknown auth_key").await;

    assert_eq!(server.intake().log.count(&server.app.id).await.unwrap(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn each_bad_field_is_a_422_that_names_it() {
    let server = Server::start().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!([1, 2]), "JSON object"),
        (json!({"channel": "c", "data": 1}), "`event` is required"),
        (
            json!({"channel": "c", "event": 5, "data": 1}),
            "`event` must be a string",
        ),
        (json!({"channel": "c", "event": "", "data": 1}), "`event`"),
        (
            json!({"channel": "c", "event": "e".repeat(201), "data": 1}),
            "`event`",
        ),
        (json!({"channel": "c", "event": "e"}), "`data` is required"),
        (
            json!({"event": "e", "data": 1}),
            "`channel` or `channels` is required",
        ),
        (
            json!({"channel": 5, "event": "e", "data": 1}),
            "`channel` must be a string",
        ),
        (
            json!({"channel": "a b", "event": "e", "data": 1}),
            "`channel`: invalid channel",
        ),
        (
            json!({"channels": "c", "event": "e", "data": 1}),
            "`channels` must be an array",
        ),
        (
            json!({"channels": [], "event": "e", "data": 1}),
            "`channels` must name at least one",
        ),
        (
            json!({"channels": ["ok", 3], "event": "e", "data": 1}),
            "`channels[1]`",
        ),
        (
            json!({"channels": ["ok", "no way"], "event": "e", "data": 1}),
            "`channels`: invalid channel `no way`",
        ),
        (
            json!({"channels": (0..101).map(|i| format!("c{i}")).collect::<Vec<_>>(), "event": "e", "data": 1}),
            "at most 100",
        ),
        (
            json!({"channel": "c", "event": "e", "data": 1, "socket_id": "abc"}),
            "`socket_id`",
        ),
        (
            json!({"channel": "c", "event": "e", "data": 1, "socket_id": 1.5}),
            "`socket_id` must be a string",
        ),
        (
            json!({"channel": "c", "event": "e", "data": 1, "app_key": 3}),
            "`app_key` must be a string",
        ),
        (
            json!({"channel": "c", "event": "e", "data": 1, "chanel": "x"}),
            "unknown field `chanel`",
        ),
    ];
    for (body, needle) in cases {
        let response = server.publish(&body).await;
        assert_problem(response, 422, needle).await;
    }
    let not_json = server
        .http
        .post(server.url("/api/events"))
        .basic_auth(&server.app.key, Some(&server.app.secret))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_problem(not_json, 400, "not valid JSON").await;
    let form = server
        .http
        .post(server.url("/api/events"))
        .basic_auth(&server.app.key, Some(&server.app.secret))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(form, 415, "Content-Type").await;
    let (status, body) = server.get("/api/events?limit=0").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("`limit`"),
        "{body}"
    );
    assert_eq!(server.intake().log.count(&server.app.id).await.unwrap(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn data_over_the_apps_limit_is_413() {
    let server = Server::start_with(Options {
        app: comnestor_server::apps::AppSettings {
            max_event_size: 100,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let body = json!({"channel": "c", "event": "e", "data": "x".repeat(101)});
    assert_problem(server.publish(&body).await, 413, "`data` is 101 bytes").await;
    let body = json!({"channel": "c", "event": "e", "data": "x".repeat(2 * 1024 * 1024)});
    assert_problem(server.publish(&body).await, 413, "larger than").await;
    let fits = json!({"channel": "c", "event": "e", "data": "x".repeat(100)});
    server.publish_ok(&fits).await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_app_key_that_is_not_the_callers_is_403() {
    let server = Server::start().await;
    let body = json!({"channel": "c", "event": "e", "data": 1, "app_key": "someone-else"});
    assert_problem(server.publish(&body).await, 403, "`app_key`").await;
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_events_are_404() {
    let server = Server::start().await;
    let (status, body) = server.get("/api/events/01nosuchevent").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["status"], 404);
    let (status, _) = server.post_empty("/api/events/01nosuchevent/replay").await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn an_idempotent_retry_creates_one_event_and_a_reused_key_is_409() {
    let server = Server::start().await;
    let body = json!({"channel": "pay", "event": "charged", "data": {"cents": 100}});
    let send = |body: Value, key: &'static str| {
        server
            .http
            .post(server.url("/api/events"))
            .basic_auth(&server.app.key, Some(&server.app.secret))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let (first_status, first) = read(send(body.clone(), "charge-1").await.unwrap()).await;
    let (again_status, again) = read(send(body.clone(), "charge-1").await.unwrap()).await;
    assert_eq!((first_status.as_u16(), again_status.as_u16()), (202, 202));
    assert_eq!(first["id"], again["id"]);
    assert_eq!(server.intake().log.count(&server.app.id).await.unwrap(), 1);

    let other = json!({"channel": "pay", "event": "charged", "data": {"cents": 999}});
    assert_problem(
        send(other, "charge-1").await.unwrap(),
        409,
        "Idempotency-Key",
    )
    .await;
    assert_eq!(server.intake().log.count(&server.app.id).await.unwrap(), 1);

    let (status, _) = read(send(body, "charge-2").await.unwrap()).await;
    assert_eq!(status, 202);
    assert_eq!(server.intake().log.count(&server.app.id).await.unwrap(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after() {
    let server = Server::start_with(Options {
        app: comnestor_server::apps::AppSettings {
            intake_rate: 1,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let body = json!({"channel": "c", "event": "e", "data": 1});
    let mut limited = None;
    for _ in 0..50 {
        let response = server.publish(&body).await;
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("a 429 within 50 requests at 1 event per second");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_problem(response, 429, "rate limit").await;
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_retries_with_one_key_create_one_event() {
    let server = Server::start().await;
    let body = json!({"channel": "race", "event": "once", "data": 1});
    let attempts = (0..10).map(|_| {
        server
            .http
            .post(server.url("/api/events"))
            .basic_auth(&server.app.key, Some(&server.app.secret))
            .header("Idempotency-Key", "same-key")
            .json(&body)
            .send()
    });
    let mut ids = std::collections::BTreeSet::new();
    for response in futures_util::future::join_all(attempts).await {
        let (status, answer) = read(response.unwrap()).await;
        assert_eq!(status, 202, "{answer}");
        ids.insert(answer["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(server.intake().log.count(&server.app.id).await.unwrap(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn the_server_serves_interactive_docs_and_the_checked_in_spec() {
    let server = Server::start().await;
    let docs = server.http.get(server.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    let served: Value = server
        .http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let generated: Value = serde_json::from_str(&comnestor_server::intake::openapi_json()).unwrap();
    assert_eq!(served, generated);
    server.shutdown().await;
}

#[tokio::test]
async fn a_disabled_app_is_403_with_either_credential() {
    let server = Server::start().await;
    let mut app = server.app.clone();
    app.enabled = false;
    server.store().update(&app).await.unwrap();
    let body = json!({"channel": "c", "event": "e", "data": 1});
    // The registry picks the change up on its next refresh.
    let deadline = tokio::time::Instant::now() + crate::support::PATIENCE;
    let response = loop {
        let response = server.publish(&body).await;
        if response.status() != 202 || tokio::time::Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_problem(response, 403, "disabled").await;
    let text = body.to_string();
    let signed = server
        .signed("POST", "/api/events", Some(text.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_problem(signed, 403, "disabled").await;
    server.shutdown().await;
}
