//! Encrypted channels: the SDK encrypts, and both its own subscriber and pusher-js decrypt.

use std::path::PathBuf;
use std::process::Stdio;

use comnestor::{Credentials, LocalAuthorizer, Subscriber, Trigger};
use poem::web::{Data, Form, Json};
use poem::{EndpointExt, Route, handler, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::{APP_KEY, Server, credentials, next_named, unique, within};

#[tokio::test]
async fn sdk_subscriber_decrypts_what_the_client_encrypted() {
    let server = Server::start().await;
    let channel = unique("private-encrypted-vault-");
    let subscriber = Subscriber::builder(server.url(), APP_KEY)
        .authorizer(LocalAuthorizer::new(credentials()))
        .connect()
        .await
        .expect("connects");
    let mut vault = subscriber.subscribe(&channel).await.expect("subscribed");
    let secret = json!({"code": "zażółć €", "n": 7});

    let trigger = Trigger::new(channel.as_str(), "classified", secret.clone());
    server.client().trigger(&trigger).await.expect("trigger");
    assert_eq!(next_named(&mut vault, "classified").await.data, secret);

    // The log holds only ciphertext: the server never saw the plaintext.
    let event = comnestor::Event::new(channel.as_str(), "logged", secret.clone());
    let accepted = server
        .client()
        .send_event(&event)
        .await
        .expect("send_event");
    assert_eq!(next_named(&mut vault, "logged").await.data, secret);
    let record = server.client().event(&accepted.id).await.expect("record");
    let stored: Value = serde_json::from_str(&record.data).expect("JSON data");
    assert!(stored["nonce"].is_string() && stored["ciphertext"].is_string());
    assert!(!record.data.contains("zażółć"));
    server.shutdown().await;
}

#[derive(Deserialize)]
struct AuthForm {
    socket_id: String,
    channel_name: String,
}

#[handler]
fn authorize(form: Form<AuthForm>, credentials: Data<&Credentials>) -> poem::Result<Json<Value>> {
    let auth = credentials
        .authorize_channel(&form.socket_id, &form.channel_name)
        .map_err(|e| poem::Error::from_string(e.to_string(), poem::http::StatusCode::FORBIDDEN))?;
    Ok(Json(serde_json::to_value(auth).expect("auth serializes")))
}

/// Serves `POST /pusher/auth` on loopback; returns its URL.
async fn auth_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let app = Route::new()
        .at("/pusher/auth", post(authorize))
        .data(credentials());
    let acceptor = poem::listener::TcpListener::bind(addr);
    tokio::spawn(poem::Server::new(acceptor).run(app));
    format!("http://{addr}/pusher/auth")
}

fn node_modules() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance/clients/node_modules");
    assert!(
        path.join("pusher-js").is_dir() && path.join("tweetnacl").is_dir(),
        "pusher-js is not installed: run `npm ci` in conformance/clients ({})",
        path.display()
    );
    path
}

#[tokio::test]
async fn pusher_js_decrypts_what_the_sdk_encrypted() {
    let node_path = node_modules();
    let server = Server::start().await;
    let endpoint = auth_endpoint().await;
    let channel = unique("private-encrypted-js-");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/integration/pusher-js-decrypt.cjs");
    let port = server.addr.port().to_string();
    let mut child = Command::new("node")
        .arg(&script)
        .args([
            "127.0.0.1",
            &port,
            APP_KEY,
            &endpoint,
            &channel,
            "classified",
        ])
        .env("NODE_PATH", &node_path)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || -> Value {
        let line = within("pusher-js output", lines.next_line())
            .await
            .expect("stdout");
        serde_json::from_str(&line.expect("pusher-js printed a line")).expect("a JSON line")
    };

    assert_eq!(next_line().await, json!({"subscribed": true}));
    let payload = json!({"secret": "the eagle lands at dawn", "list": ["ä", "ß"]});
    let trigger = Trigger::new(channel.as_str(), "classified", payload.clone());
    server.client().trigger(&trigger).await.expect("trigger");
    assert_eq!(next_line().await, json!({ "data": payload }));
    let status = within("node to exit", child.wait())
        .await
        .expect("exit status");
    assert!(status.success());
    server.shutdown().await;
}
