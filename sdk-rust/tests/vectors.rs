//! The SDK against the shared vectors in `conformance/vectors/`, through its public API.
//!
//! A missing file, or a file with fewer vectors than expected, fails the test.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use comnestor::protocol::signing::sign_request;
use comnestor::{Credentials, MasterKey, UserData};
use serde_json::Value;

fn vectors(file: &str, minimum: usize) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../conformance/vectors")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let parsed: Value = serde_json::from_str(&text).expect("vector file is JSON");
    let list = parsed["vectors"]
        .as_array()
        .expect("a vectors array")
        .clone();
    assert!(
        list.len() >= minimum,
        "{file}: {} vectors, expected at least {minimum}",
        list.len()
    );
    list
}

fn text<'a>(vector: &'a Value, field: &str) -> &'a str {
    vector[field]
        .as_str()
        .unwrap_or_else(|| panic!("vector {}: no string {field}", vector["name"]))
}

fn credentials(vector: &Value) -> Credentials {
    let credentials = Credentials::new("1", text(vector, "key"), text(vector, "secret"));
    match vector["master_key_base64"].as_str() {
        Some(master) => credentials
            .with_master_key_base64(master)
            .expect("master key"),
        None => credentials,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn channel_authorization() {
    for vector in vectors("channel-auth.json", 8) {
        let name = &vector["name"];
        let credentials = credentials(&vector);
        let socket_id = text(&vector, "socket_id");
        let channel = text(&vector, "channel_name");
        let auth = match vector["channel_data"].as_str() {
            Some(data) => credentials.authorize_channel_with_data(socket_id, channel, data),
            None => credentials.authorize_channel(socket_id, channel),
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = &vector["expected"];
        assert_eq!(auth.auth, expected["auth"], "{name}");
        let response = serde_json::to_value(&auth).unwrap();
        assert_eq!(response, expected["response"], "{name}");
    }
}

#[test]
fn user_authentication() {
    for vector in vectors("user-auth.json", 4) {
        let name = &vector["name"];
        let credentials = credentials(&vector);
        let socket_id = text(&vector, "socket_id");
        let user_data = text(&vector, "user_data");
        let auth = credentials
            .authenticate_user_with_data(socket_id, user_data)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let response = serde_json::to_value(&auth).unwrap();
        assert_eq!(response, vector["expected"]["response"], "{name}");

        // Where the typed user serializes to the same bytes, it must sign the same way.
        if let Ok(user) = serde_json::from_str::<UserData>(user_data)
            && serde_json::to_string(&user).unwrap() == user_data
        {
            let typed = credentials.authenticate_user(socket_id, &user).unwrap();
            assert_eq!(typed, auth, "{name}");
        }
    }
}

#[test]
fn webhooks() {
    for vector in vectors("webhook.json", 3) {
        let name = &vector["name"];
        let credentials = credentials(&vector);
        let body = text(&vector, "body").as_bytes();
        let headers = &vector["expected"]["headers"];
        let key = headers["X-Pusher-Key"].as_str();
        let signature = headers["X-Pusher-Signature"].as_str();
        let webhook = credentials
            .verify_webhook(key, signature, body)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!webhook.events.is_empty(), "{name}");

        let mut tampered = body.to_vec();
        tampered.push(b' ');
        assert!(
            credentials
                .verify_webhook(key, signature, &tampered)
                .is_err(),
            "{name}"
        );
        assert!(
            credentials
                .verify_webhook(Some("other"), signature, body)
                .is_err(),
            "{name}"
        );
    }
}

#[test]
fn encryption() {
    let mut sealed = 0;
    for vector in vectors("encryption.json", 3) {
        let name = &vector["name"];
        let expected = &vector["expected"];
        let master = MasterKey::from_base64(text(&vector, "master_key_base64")).unwrap();
        let channel = text(&vector, "channel_name");
        assert_eq!(
            master.shared_secret(channel),
            expected["shared_secret_base64"],
            "{name}"
        );
        let key = master.channel_key(channel);
        assert_eq!(hex(key.as_bytes()), expected["shared_secret_hex"], "{name}");

        let Some(plaintext) = vector["plaintext"].as_str() else {
            continue;
        };
        let nonce: [u8; 24] = STANDARD
            .decode(text(&vector, "nonce_base64"))
            .unwrap()
            .try_into()
            .expect("24-byte nonce");
        let data = key.encrypt_with_nonce(plaintext.as_bytes(), nonce);
        assert_eq!(data, expected["event_data"], "{name}");
        assert_eq!(key.decrypt(&data).unwrap(), plaintext.as_bytes(), "{name}");
        sealed += 1;
    }
    assert!(sealed >= 2, "too few secretbox vectors");
}

/// The client signs with `comnestor_protocol::signing::sign_request`; this checks that
/// function's output as the client sends it (the server side is checked by the protocol crate).
#[test]
fn request_signing() {
    for vector in vectors("request-signing.json", 6) {
        let name = &vector["name"];
        let params: Vec<(String, String)> = vector["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
            .collect();
        let params: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let query = sign_request(
            text(&vector, "key"),
            text(&vector, "secret"),
            text(&vector, "method"),
            text(&vector, "path"),
            &params,
            vector["body"].as_str().map(str::as_bytes),
            vector["timestamp"].as_u64().unwrap(),
        );
        let signature = format!(
            "auth_signature={}",
            vector["expected"]["auth_signature"].as_str().unwrap()
        );
        assert!(query.ends_with(&signature), "{name}: {query}");
    }
}
