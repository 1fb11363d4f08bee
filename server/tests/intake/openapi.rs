//! The checked-in spec is the one the code generates.

use std::path::Path;

#[test]
fn checked_in_spec_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = format!("{}\n", comnestor_server::intake::openapi_json());
    assert!(
        checked_in == generated,
        "openapi/openapi.json is stale. Regenerate it from the repository root with:\n\n    \
         cargo run -q -p comnestor-server --bin comnestor -- openapi > openapi/openapi.json\n"
    );
}

/// Every operation, the live stream included, declares the problem answers its credentials
/// check gives (401, 403), so generated clients and fuzzers accept them.
#[test]
fn every_operation_declares_its_auth_problems() {
    let spec: serde_json::Value =
        serde_json::from_str(&comnestor_server::intake::openapi_json()).unwrap();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for status in ["401", "403"] {
                let content = &operation["responses"][status]["content"];
                assert!(
                    content["application/problem+json"].is_object(),
                    "{method} {path} does not declare {status}"
                );
            }
        }
    }
}

fn nulls(value: &serde_json::Value, at: &str, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Null => found.push(at.to_owned()),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                nulls(item, &format!("{at}[{i}]"), found);
            }
        }
        serde_json::Value::Object(fields) => {
            for (name, field) in fields {
                nulls(field, &format!("{at}.{name}"), found);
            }
        }
        _ => {}
    }
}

/// The spec declares no field nullable: an unset optional field is left out, never `null`.
#[tokio::test]
async fn responses_leave_unset_fields_out_instead_of_null() {
    let server = crate::support::Server::start().await;
    let id = server
        .publish_ok(&serde_json::json!({"channel": "c", "event": "e", "data": 1}))
        .await;
    let event = server.wait_status(&id, "delivered").await;
    let (_, page) = server.get("/api/events").await;
    let (_, history) = server.get("/api/channels/c/history").await;
    let mut found = Vec::new();
    nulls(&event, "event", &mut found);
    nulls(&page, "page", &mut found);
    nulls(&history, "history", &mut found);
    assert!(found.is_empty(), "null fields: {found:?}");
    assert!(page.get("next_cursor").is_none(), "{page}");
}

/// `POST /api/events` takes `null` for an optional field as absent, so the spec declares the
/// optional fields nullable (a fuzzer sending `null` must not find the server more lenient).
#[test]
fn optional_publish_fields_are_nullable() {
    let spec: serde_json::Value =
        serde_json::from_str(&comnestor_server::intake::openapi_json()).unwrap();
    let schema = &spec["components"]["schemas"]["PublishRequest"];
    let required = schema["required"].as_array().unwrap();
    for (name, field) in schema["properties"].as_object().unwrap() {
        let optional = !required.iter().any(|r| r == name);
        assert_eq!(field["nullable"] == true, optional, "{name}: {field}");
    }
}

/// A method a path does not take is a 405 problem document with `Allow` (RFC 9110).
#[tokio::test]
async fn a_wrong_method_is_a_405_naming_the_allowed_ones() {
    let server = crate::support::Server::start().await;
    let client = crate::support::http_client();
    for (method, path, allow) in [
        ("DELETE", "/api/events", "GET, POST"),
        ("PUT", "/api/events/someid", "GET"),
        ("GET", "/api/events/someid/replay", "POST"),
        ("TRACE", "/api/stream", "GET"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client
            .request(method.clone(), server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        crate::support::assert_problem(response, 405, "method not allowed").await;
    }
    server.shutdown().await;
}
