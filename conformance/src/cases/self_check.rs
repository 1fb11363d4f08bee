//! Checks the signing code the suite uses against values computed by hand from the Pusher
//! docs and SDK tests (§7 of `pusher-protocol.md`), so a bug shared by the suite and a server
//! built on the same protocol crate cannot hide. These cases contact no server.

use std::sync::Arc;

use anyhow::{Result, ensure};
use comnestor_protocol::{auth, signing};

use super::{Area, Ctx, Need};
use crate::http::{QueryEncoding, Request};

pub fn cases() -> Vec<super::Case> {
    let area = Area::SelfCheck;
    vec![
        case!(
            area,
            channel_auth_vectors,
            Need::Nothing,
            "§7 V1, V3, V6, V8: channel auth is key:hex(HMAC-SHA256(secret, socket_id:channel[:channel_data]))"
        ),
        case!(
            area,
            user_auth_vectors,
            Need::Nothing,
            "§7 V2, V7: user auth signs socket_id::user::user_data over its UTF-8 bytes"
        ),
        case!(
            area,
            request_signing_vectors,
            Need::Nothing,
            "§7 V4, V5, V11, V12: METHOD\\npath\\nsorted lowercase k=v params, body_md5 of the exact body"
        ),
        case!(
            area,
            webhook_vector,
            Need::Nothing,
            "§7 V10: X-Pusher-Signature is hex HMAC-SHA256 of the raw body"
        ),
        case!(
            area,
            encryption_vectors,
            Need::Nothing,
            "§7 V8, V9: the channel key is SHA256(channel || master key); data is NaCl secretbox"
        ),
    ]
}

const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";

async fn channel_auth_vectors(_: Arc<Ctx>) -> Result<()> {
    let v1 = auth::authorize_channel(KEY, SECRET, "1234.1234", "private-foobar", None);
    ensure!(
        v1 == "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4",
        "V1: {v1}"
    );
    let pusher = r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#;
    let v3 = auth::sign(SECRET, &format!("1234.1234:presence-foobar:{pusher}"));
    ensure!(
        v3 == "afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c",
        "V3: {v3}"
    );
    let channels = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
    let v3b = auth::authorize_channel(KEY, SECRET, "1234.1234", "presence-foobar", Some(channels));
    ensure!(
        v3b.ends_with(":31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"),
        "V3 (Mr. Channels): {v3b}"
    );
    let v6 = auth::authorize_channel("aaaa", "tofu", "123.456", "test", None);
    ensure!(
        v6 == "aaaa:efa6cf7644a0b35cba36aa0f776f3cbf7bb60e95ea2696bde1dbe8403b61bd7c",
        "V6: {v6}"
    );
    let v6b = auth::authorize_channel("aaaa", "tofu", "123.456", "test", Some(r#"{"foo":"bar"}"#));
    ensure!(
        v6b.ends_with(":f41faf9ead2ea76772cc6b1168363057459f02499ae4d92e88229dc7f4efa2d4"),
        "V6 with data: {v6b}"
    );
    let v8 = auth::authorize_channel(
        "f00d",
        "tofu",
        "123.456",
        "private-encrypted-bla",
        Some(r#""foo""#),
    );
    ensure!(
        v8 == "f00d:962c48b78bf93d98ff4c92ee7dff04865821455b7b401e9d60a9e0a90af2c105",
        "V8: {v8}"
    );
    Ok(())
}

async fn user_auth_vectors(_: Arc<Ctx>) -> Result<()> {
    let v2 = auth::authenticate_user(KEY, SECRET, "1234.1234", r#"{"id":"12345"}"#);
    ensure!(
        v2 == "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba",
        "V2: {v2}"
    );
    let v7 = auth::authenticate_user("aaaa", "tofu", "123.456", r#"{"id":"45678"}"#);
    ensure!(
        v7.ends_with(":f4b1fdeea7c93e32648c7230e32b172057c5623cace6cfce791c6e7035e0babd"),
        "V7: {v7}"
    );
    let utf8 = auth::authenticate_user("aaaa", "tofu", "1.1", r#"{"id":"ą§¶™€łü€ß£"}"#);
    ensure!(
        utf8.ends_with(":620494cee53d6c568b49598313194088afda37218f0d059af03c0c898ed61ff4"),
        "V7 UTF-8 user: {utf8}"
    );
    let channel = auth::authorize_channel("aaaa", "tofu", "1.1", "test", Some(r#""ą§¶™€łü€ß£""#));
    ensure!(
        channel.ends_with(":2a229263e89d9c50524fd80c2e88be2843379f6931e28995e2cc214282c9db0c"),
        "V7 UTF-8 channel: {channel}"
    );
    Ok(())
}

async fn request_signing_vectors(_: Arc<Ctx>) -> Result<()> {
    let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    let md5 = signing::body_md5(body.as_bytes());
    ensure!(
        md5 == "ec365a775a4cd0599faeb73354201b6f",
        "V4 body_md5: {md5}"
    );
    let to_sign = signing::string_to_sign(
        "POST",
        "/apps/3/events",
        [
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", md5.as_str()),
        ],
    );
    ensure!(
        to_sign
            == "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f",
        "V4 string to sign: {to_sign:?}"
    );
    // The suite's own request builder must produce the documented signature.
    let request = Request {
        method: "POST",
        path: "/apps/3/events".into(),
        params: vec![],
        body: Some(body.as_bytes().to_vec()),
        key: KEY.into(),
        secret: SECRET.into(),
        timestamp: 1_353_088_179,
        auth_version: Some("1.0".into()),
        body_md5: None,
        encoding: QueryEncoding::Form,
        signature: None,
    };
    let query = request.query();
    ensure!(
        query.ends_with(
            "auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        ),
        "V4 signed query: {query}"
    );

    let upper = signing::string_to_sign(
        "post",
        "/some/path",
        [
            ("auth_key", "key"),
            ("auth_timestamp", "1234"),
            ("auth_version", "1.0"),
            ("Query", "params"),
            ("GO", "here"),
        ],
    );
    let v5 = auth::sign("secret", &upper);
    ensure!(
        v5 == "3b237953a5ba6619875cbb2a2d43e8da9ef5824e8a2c689f6284ac85bc1ea0db",
        "V5 with upper-case keys: {upper:?} -> {v5}"
    );
    let one = signing::string_to_sign(
        "POST",
        "/some/path",
        [
            ("auth_key", "key"),
            ("auth_timestamp", "1234"),
            ("auth_version", "1.0"),
            ("query", "params"),
        ],
    );
    let v5b = auth::sign("secret", &one);
    ensure!(
        v5b == "da078fcedd72941b6c873caa40d0d6b2000ebfc700cee802b128dd20f72e74e9",
        "V5 one param: {v5b}"
    );

    let mut get = request.clone();
    get.method = "GET";
    get.path = "/apps/3/channels".into();
    get.body = None;
    get.params = vec![
        ("filter_by_prefix".into(), "presence-".into()),
        ("info".into(), "user_count".into()),
    ];
    let query = get.query();
    ensure!(
        query.ends_with(
            "auth_signature=16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291"
        ),
        "V11: {query}"
    );
    ensure!(
        signing::body_md5(b"{}") == "99914b932bd37a50b983c5e7c90ae93b",
        "V12 md5({{}})"
    );
    ensure!(
        signing::body_md5(b"") == "d41d8cd98f00b204e9800998ecf8427e",
        "V12 md5(\"\")"
    );
    Ok(())
}

async fn webhook_vector(_: Arc<Ctx>) -> Result<()> {
    let body = br#"{"time_ms":1403175510755,"events":[{"channel":"test_channel","name":"channel_vacated"}]}"#;
    let signature = auth::webhook_signature("tofu", body);
    ensure!(
        signature == "c17257e92037cd7de407ebc1ed174ceb7b2e518db127f44411b9ffc4f5b28cc5",
        "V10: {signature}"
    );
    Ok(())
}

async fn encryption_vectors(_: Arc<Ctx>) -> Result<()> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let master = b64.decode("zyrm8pvV2C9fJcBfhyXzvxbJVN/H7QLmbe0xJi1GhPU=")?;
    let shared = auth::encrypted_shared_secret("private-encrypted-bla", &master);
    ensure!(
        shared == "nlr49ISQHz91yS3cy/yWmW8wFMNeTnNL5tNHnbPJcLQ=",
        "V8 shared_secret: {shared}"
    );

    let key = auth::encrypted_channel_key(
        "pvUPIk0YG6MnxCEMIUUVFrbDmQwbhICXUcy",
        b"OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
    );
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    ensure!(
        hex == "709ef3090a24bfa98382cb5d025ca3622c82d31fa27f10b005c0dca27bae6516",
        "V9 key: {hex}"
    );
    let nonce: [u8; 24] = *b"XAJI0Y6DPBHSAHXTHV3A3ZMF";
    let data = super::encrypted::encrypt(&key, &nonce, b"kkkT5OOkOkO5kT5TOO5TkOT5TTk5O55T")?;
    ensure!(
        data == r#"{"nonce":"WEFKSTBZNkRQQkhTQUhYVEhWM0EzWk1G","ciphertext":"tsYJa2JgGDOpVIYFe4aNVWAvZlpB7z7CjN9mpIdbATE0Yc4izN8aM8D6VigBxnIQ"}"#,
        "V9 event data: {data}"
    );
    Ok(())
}
