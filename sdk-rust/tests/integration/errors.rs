//! Failures say which call failed and why, and bad answers never panic.

use comnestor::{Client, Credentials, ErrorKind, Event, Trigger};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{APP_ID, APP_KEY, Server};

#[tokio::test]
async fn wrong_credentials_are_status_errors_naming_the_call() {
    let server = Server::start().await;
    let wrong = Client::new(Credentials::new(APP_ID, APP_KEY, "wrong"), server.url()).unwrap();
    let error = wrong
        .send_event(&Event::new("a", "e", json!(1)))
        .await
        .unwrap_err();
    assert_eq!((error.call(), error.status()), ("send_event", Some(401)));
    let error = wrong
        .trigger(&Trigger::new("a", "e", json!(1)))
        .await
        .unwrap_err();
    assert_eq!((error.call(), error.status()), ("trigger", Some(401)));
    assert!(
        error
            .to_string()
            .starts_with("trigger failed: the server answered 401")
    );

    let missing = server
        .client()
        .event("01ARZ3NDEKTSV4RRFFQ69G5FAV")
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404));
    server.shutdown().await;
}

/// A server that answers every request with `200` and a body that is not JSON.
async fn garbage_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0; 4096];
            let _ = stream.read(&mut buffer).await;
            let body = "<html>not json</html>";
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn bad_answers_are_decode_errors() {
    let url = garbage_server().await;
    let client = Client::new(Credentials::new("1", "k", "s"), url).unwrap();
    let error = client
        .trigger(&Trigger::new("a", "e", json!(1)))
        .await
        .unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::Decode { .. }), "{error}");
    assert!(
        std::error::Error::source(&error).is_some(),
        "the JSON error is kept"
    );
    let error = client.channels(&Default::default()).await.unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::Decode { body, .. } if body.contains("not json")));
}

#[tokio::test]
async fn unreachable_servers_are_http_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = Client::new(Credentials::new("1", "k", "s"), url).unwrap();
    let error = client
        .event("01ARZ3NDEKTSV4RRFFQ69G5FAV")
        .await
        .unwrap_err();
    assert_eq!(error.call(), "event");
    assert!(matches!(error.kind(), ErrorKind::Http(_)), "{error}");
}
