//! Checks the shared test vectors in `conformance/vectors/` against this crate.
//!
//! Every file must exist, hold at least a minimum number of vectors, and every vector must run
//! at least one check: a missing file or an empty or unrecognised vector fails the test instead
//! of passing silently.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use base64::Engine;
use serde_json::{Map, Value, json};

use comnestor_protocol::auth::{
    AuthError, authenticate_user, authorize_channel, channel_string_to_sign, encrypted_channel_key,
    encrypted_shared_secret, user_string_to_sign, verify_channel_auth, verify_user_auth,
    verify_webhook, webhook_signature,
};
use comnestor_protocol::signing::{
    SignatureError, SignedRequest, body_md5, query_params, sign_request, string_to_sign,
    verify_request,
};

/// Every file in the folder and the fewest vectors it may hold.
const FILES: &[(&str, usize)] = &[
    ("channel-auth.json", 8),
    ("user-auth.json", 4),
    ("request-signing.json", 6),
    ("webhook.json", 3),
    ("encryption.json", 3),
];

fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../conformance/vectors/"
    ))
}

/// One vector being checked: field access that names the file and vector when it fails, and a
/// count of the checks run.
struct Vector<'a> {
    file: &'static str,
    name: &'a str,
    value: &'a Value,
    checks: usize,
}

impl<'a> Vector<'a> {
    fn str(&self, field: &str) -> &'a str {
        self.opt_str(field).unwrap_or_else(|| {
            panic!(
                "{}: vector {:?}: missing string field {field:?}",
                self.file, self.name
            )
        })
    }

    fn opt_str(&self, field: &str) -> Option<&'a str> {
        match self.value.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => panic!(
                "{}: vector {:?}: field {field:?} should be a string, is {other}",
                self.file, self.name
            ),
        }
    }

    fn u64(&self, field: &str) -> u64 {
        self.value[field].as_u64().unwrap_or_else(|| {
            panic!(
                "{}: vector {:?}: missing integer field {field:?}",
                self.file, self.name
            )
        })
    }

    fn expected_value(&self, field: &str) -> &'a Value {
        self.value["expected"].get(field).unwrap_or_else(|| {
            panic!(
                "{}: vector {:?}: missing expected.{field}",
                self.file, self.name
            )
        })
    }

    fn expected(&self, field: &str) -> &'a str {
        self.expected_value(field).as_str().unwrap_or_else(|| {
            panic!(
                "{}: vector {:?}: expected.{field} should be a string",
                self.file, self.name
            )
        })
    }

    fn opt_expected(&self, field: &str) -> Option<&'a str> {
        self.value["expected"].get(field).and_then(Value::as_str)
    }

    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, actual: T, expected: T) {
        assert_eq!(
            actual, expected,
            "{}: vector {:?}: {what}",
            self.file, self.name
        );
        self.checks += 1;
    }

    fn ok(&mut self, what: &str, condition: bool) {
        assert!(condition, "{}: vector {:?}: {what}", self.file, self.name);
        self.checks += 1;
    }
}

/// Loads `file`, asserts it holds at least `min` vectors, runs `check` on each and asserts each
/// ran at least one check. Returns the number of checks run.
fn run(file: &'static str, check: impl Fn(&mut Vector<'_>)) -> usize {
    let min = FILES
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, min)| *min)
        .unwrap_or_else(|| panic!("{file} is not listed in FILES"));
    let path = vectors_dir().join(file);
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read test-vector file {}: {error}", path.display()));
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{}: invalid JSON: {error}", path.display()));
    for field in ["description", "source"] {
        assert!(
            doc[field].as_str().is_some_and(|s| !s.is_empty()),
            "{file}: top-level {field:?} must be a non-empty string"
        );
    }
    let vectors = doc["vectors"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: \"vectors\" must be an array"));
    assert!(
        vectors.len() >= min,
        "{file}: expected at least {min} vectors, found {}",
        vectors.len()
    );

    let mut names = BTreeSet::new();
    let mut total = 0;
    for value in vectors {
        let name = value["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: a vector has no \"name\": {value}"));
        assert!(names.insert(name), "{file}: duplicate vector name {name:?}");
        assert!(
            value["source"].as_str().is_some_and(|s| !s.is_empty()),
            "{file}: vector {name:?} has no \"source\""
        );
        assert!(
            value["expected"].is_object(),
            "{file}: vector {name:?} has no \"expected\" object"
        );
        let mut vector = Vector {
            file,
            name,
            value,
            checks: 0,
        };
        check(&mut vector);
        assert!(vector.checks > 0, "{file}: vector {name:?} ran no checks");
        total += vector.checks;
    }
    total
}

/// The same hex signature with its last digit changed.
fn tamper_hex(signature: &str) -> String {
    let (head, last) = signature.split_at(signature.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

/// A socket id that differs from `socket_id` but keeps the `digits.digits` shape.
fn other_socket_id(socket_id: &str) -> String {
    format!("{socket_id}9")
}

fn decode_base64(vector: &Vector<'_>, field: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(vector.str(field))
        .unwrap_or_else(|error| {
            panic!(
                "{}: vector {:?}: {field} is not base64: {error}",
                vector.file, vector.name
            )
        })
}

#[test]
fn every_vector_file_is_checked() {
    let dir = vectors_dir();
    let on_disk: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    let known: BTreeSet<String> = FILES.iter().map(|(name, _)| (*name).to_owned()).collect();
    assert_eq!(
        on_disk,
        known,
        "the JSON files in {} and the files this test checks differ",
        dir.display()
    );
}

#[test]
fn channel_auth() {
    let checks = run("channel-auth.json", |v| {
        let key = v.str("key");
        let secret = v.str("secret");
        let socket_id = v.str("socket_id");
        let channel = v.str("channel_name");
        let data = v.opt_str("channel_data");
        let auth = v.expected("auth");

        v.eq(
            "string to sign",
            channel_string_to_sign(socket_id, channel, data).as_str(),
            v.expected("string_to_sign"),
        );
        let computed = authorize_channel(key, secret, socket_id, channel, data);
        v.eq("auth", computed.as_str(), auth);
        v.eq(
            "auth is key:signature",
            auth.to_owned(),
            format!("{key}:{}", v.expected("signature")),
        );
        v.eq(
            "verify accepts the vector's auth",
            verify_channel_auth(key, secret, socket_id, channel, data, auth),
            Ok(()),
        );

        let other_socket = other_socket_id(socket_id);
        let bad = verify_channel_auth(key, secret, &other_socket, channel, data, auth);
        v.ok(
            "verify rejects another socket id",
            matches!(bad, Err(AuthError::BadSignature { .. })),
        );
        let tampered = tamper_hex(auth);
        let bad = verify_channel_auth(key, secret, socket_id, channel, data, &tampered);
        v.ok(
            "verify rejects a tampered signature",
            matches!(bad, Err(AuthError::BadSignature { .. })),
        );
        let bad = verify_channel_auth("not-the-key", secret, socket_id, channel, data, auth);
        v.ok(
            "verify rejects another app key",
            matches!(bad, Err(AuthError::WrongKey(_))),
        );
        if data.is_some() {
            let bad = verify_channel_auth(key, secret, socket_id, channel, None, auth);
            v.ok(
                "channel_data is part of the signature",
                matches!(bad, Err(AuthError::BadSignature { .. })),
            );
        }

        let mut response = Map::new();
        response.insert("auth".into(), json!(computed));
        if let Some(data) = data {
            response.insert("channel_data".into(), json!(data));
        }
        if v.opt_str("master_key_base64").is_some() {
            let master_key = decode_base64(v, "master_key_base64");
            v.eq("master key length", master_key.len(), 32);
            let shared = encrypted_shared_secret(channel, &master_key);
            v.eq(
                "shared_secret",
                shared.as_str(),
                v.expected("shared_secret"),
            );
            response.insert("shared_secret".into(), json!(shared));
        } else {
            v.ok(
                "shared_secret only comes with a master key",
                v.opt_expected("shared_secret").is_none(),
            );
        }
        v.eq(
            "auth endpoint response",
            &Value::Object(response),
            v.expected_value("response"),
        );
    });
    assert!(checks > 0);
}

#[test]
fn user_auth() {
    let checks = run("user-auth.json", |v| {
        let key = v.str("key");
        let secret = v.str("secret");
        let socket_id = v.str("socket_id");
        let user_data = v.str("user_data");
        let auth = v.expected("auth");

        v.eq(
            "string to sign",
            user_string_to_sign(socket_id, user_data).as_str(),
            v.expected("string_to_sign"),
        );
        let computed = authenticate_user(key, secret, socket_id, user_data);
        v.eq("auth", computed.as_str(), auth);
        v.eq(
            "auth is key:signature",
            auth.to_owned(),
            format!("{key}:{}", v.expected("signature")),
        );
        v.eq(
            "verify accepts the vector's auth",
            verify_user_auth(key, secret, socket_id, user_data, auth),
            Ok(()),
        );

        let other_socket = other_socket_id(socket_id);
        let bad = verify_user_auth(key, secret, &other_socket, user_data, auth);
        v.ok(
            "verify rejects another socket id",
            matches!(bad, Err(AuthError::BadSignature { .. })),
        );
        let other_data = format!("{user_data} ");
        let bad = verify_user_auth(key, secret, socket_id, &other_data, auth);
        v.ok(
            "verify rejects re-serialized user_data",
            matches!(bad, Err(AuthError::BadSignature { .. })),
        );
        let bad = verify_user_auth(key, secret, socket_id, user_data, &tamper_hex(auth));
        v.ok(
            "verify rejects a tampered signature",
            matches!(bad, Err(AuthError::BadSignature { .. })),
        );
        let bad = verify_user_auth("not-the-key", secret, socket_id, user_data, auth);
        v.ok(
            "verify rejects another app key",
            matches!(bad, Err(AuthError::WrongKey(_))),
        );
        v.eq(
            "auth endpoint response",
            &json!({"auth": computed, "user_data": user_data}),
            v.expected_value("response"),
        );
    });
    assert!(checks > 0);
}

#[test]
fn request_signing() {
    let checks = run("request-signing.json", |v| {
        let key = v.str("key");
        let secret = v.str("secret");
        let method = v.str("method");
        let path = v.str("path");
        let timestamp = v.u64("timestamp");
        let body = v.opt_str("body");
        let signature = v.expected("auth_signature");
        let params: Vec<(&str, &str)> = v.value["params"]
            .as_array()
            .unwrap_or_else(|| panic!("{:?}: \"params\" must be an array", v.name))
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(k), Value::String(val)]) => (k.as_str(), val.as_str()),
                _ => panic!("{:?}: each param must be [key, value], got {pair}", v.name),
            })
            .collect();

        // body_md5 and the string to sign.
        let md5 = body.map(|body| body_md5(body.as_bytes()));
        v.eq("body_md5", md5.as_deref(), v.opt_expected("body_md5"));
        let timestamp_text = timestamp.to_string();
        let mut all = vec![
            ("auth_key", key),
            ("auth_timestamp", timestamp_text.as_str()),
            ("auth_version", "1.0"),
        ];
        if let Some(md5) = &md5 {
            all.push(("body_md5", md5));
        }
        all.extend(params.iter().copied());
        let expected_string = v.expected("string_to_sign");
        v.eq(
            "string to sign",
            string_to_sign(method, path, all.iter().copied()).as_str(),
            expected_string,
        );
        let with_signature = all.iter().copied().chain([("auth_signature", "x")]);
        v.eq(
            "auth_signature is left out of the string to sign",
            string_to_sign(method, path, with_signature).as_str(),
            expected_string,
        );

        // sign_request gives the vector's signature and body_md5.
        let body_bytes = body.map(str::as_bytes);
        let query = sign_request(key, secret, method, path, &params, body_bytes, timestamp);
        let signed = query_params(&query);
        let param = |name: &str| {
            signed
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, value)| value.as_str())
        };
        v.eq(
            "signed auth_signature",
            param("auth_signature"),
            Some(signature),
        );
        v.eq("signed auth_key", param("auth_key"), Some(key));
        v.eq("signed auth_version", param("auth_version"), Some("1.0"));
        v.eq(
            "signed auth_timestamp",
            param("auth_timestamp"),
            Some(timestamp_text.as_str()),
        );
        v.eq("signed body_md5", param("body_md5"), md5.as_deref());

        // verify_request accepts the request as sign_request built it, and as an SDK would
        // send it with the vector's own signature.
        let body = body_bytes.unwrap_or_default();
        let request = SignedRequest {
            method,
            path,
            query: &query,
            body,
        };
        v.eq(
            "verify accepts the signed request",
            verify_request(&request, key, secret, timestamp),
            Ok(()),
        );
        let mut sdk_query = form_urlencoded::Serializer::new(String::new());
        sdk_query.extend_pairs(all.iter().copied());
        sdk_query.append_pair("auth_signature", signature);
        let sdk_query = sdk_query.finish();
        let sdk_request = SignedRequest {
            query: &sdk_query,
            ..request
        };
        v.eq(
            "verify accepts the vector's signature",
            verify_request(&sdk_request, key, secret, timestamp),
            Ok(()),
        );
        v.eq(
            "verify accepts a timestamp 599 s old",
            verify_request(&request, key, secret, timestamp + 599),
            Ok(()),
        );
        v.ok(
            "verify rejects a timestamp 600 s old",
            matches!(
                verify_request(&request, key, secret, timestamp + 600),
                Err(SignatureError::TimestampExpired { .. })
            ),
        );

        // ...and rejects tampered ones.
        let other_path = format!("{path}x");
        let tampered = SignedRequest {
            path: &other_path,
            ..request
        };
        v.ok(
            "verify rejects another path",
            matches!(
                verify_request(&tampered, key, secret, timestamp),
                Err(SignatureError::InvalidSignature { .. })
            ),
        );
        let other_method = if method.eq_ignore_ascii_case("GET") {
            "POST"
        } else {
            "GET"
        };
        let tampered = SignedRequest {
            method: other_method,
            ..request
        };
        v.ok(
            "verify rejects another method",
            matches!(
                verify_request(&tampered, key, secret, timestamp),
                Err(SignatureError::InvalidSignature { .. })
            ),
        );
        let bad_signature = query.replace(signature, &tamper_hex(signature));
        let tampered = SignedRequest {
            query: &bad_signature,
            ..request
        };
        v.ok(
            "verify rejects a tampered signature",
            matches!(
                verify_request(&tampered, key, secret, timestamp),
                Err(SignatureError::InvalidSignature { .. })
            ),
        );
        if let Some((name, value)) = params.first() {
            let changed = format!("{value}x");
            let mut tampered_query = form_urlencoded::Serializer::new(String::new());
            for (k, val) in &signed {
                let val = if k == name { &changed } else { val };
                tampered_query.append_pair(k, val);
            }
            let tampered_query = tampered_query.finish();
            let tampered = SignedRequest {
                query: &tampered_query,
                ..request
            };
            v.ok(
                "verify rejects a changed parameter",
                matches!(
                    verify_request(&tampered, key, secret, timestamp),
                    Err(SignatureError::InvalidSignature { .. })
                ),
            );
        }
        let other_body = [body, b" "].concat();
        let tampered = SignedRequest {
            body: &other_body,
            ..request
        };
        let result = verify_request(&tampered, key, secret, timestamp);
        if md5.is_some() {
            v.eq(
                "verify rejects another body",
                result,
                Err(SignatureError::BodyMd5Mismatch),
            );
        } else {
            v.eq(
                "verify rejects a body without body_md5",
                result,
                Err(SignatureError::Missing("body_md5")),
            );
        }
        v.eq(
            "verify rejects another app key",
            verify_request(&request, "not-the-key", secret, timestamp),
            Err(SignatureError::UnknownKey),
        );
    });
    assert!(checks > 0);
}

#[test]
fn webhook() {
    let checks = run("webhook.json", |v| {
        let key = v.str("key");
        let secret = v.str("secret");
        let body = v.str("body").as_bytes();
        let signature = v.expected("signature");

        v.eq(
            "signature",
            webhook_signature(secret, body).as_str(),
            signature,
        );
        v.ok(
            "verify accepts the signature",
            verify_webhook(secret, body, signature),
        );
        v.ok(
            "verify rejects a tampered signature",
            !verify_webhook(secret, body, &tamper_hex(signature)),
        );
        let other_body = [body, b" "].concat();
        v.ok(
            "verify rejects another body",
            !verify_webhook(secret, &other_body, signature),
        );
        v.ok(
            "verify rejects another secret",
            !verify_webhook("not-the-secret", body, signature),
        );
        v.eq(
            "headers",
            v.expected_value("headers"),
            &json!({"X-Pusher-Key": key, "X-Pusher-Signature": signature}),
        );
    });
    assert!(checks > 0);
}

#[test]
fn encryption() {
    let checks = run("encryption.json", |v| {
        let channel = v.str("channel_name");
        let master_key = decode_base64(v, "master_key_base64");
        v.eq("master key length", master_key.len(), 32);
        v.eq(
            "channel key",
            hex::encode(encrypted_channel_key(channel, &master_key)).as_str(),
            v.expected("shared_secret_hex"),
        );
        v.eq(
            "shared_secret",
            encrypted_shared_secret(channel, &master_key).as_str(),
            v.expected("shared_secret_base64"),
        );

        // This crate has no secretbox: the ciphertext itself is checked by the SDKs. Check only
        // that the vector is well formed.
        if let Some(plaintext) = v.opt_str("plaintext") {
            let nonce = decode_base64(v, "nonce_base64");
            v.eq("nonce length", nonce.len(), 24);
            let ciphertext = base64::engine::general_purpose::STANDARD
                .decode(v.expected("ciphertext_base64"))
                .expect("ciphertext_base64 is base64");
            v.eq(
                "ciphertext length is plaintext + 16-byte tag",
                ciphertext.len(),
                plaintext.len() + 16,
            );
            let event_data: Value = serde_json::from_str(v.expected("event_data"))
                .expect("event_data is a JSON string");
            v.eq(
                "event data",
                event_data,
                json!({
                    "nonce": v.str("nonce_base64"),
                    "ciphertext": v.expected("ciphertext_base64"),
                }),
            );
        }
    });
    assert!(checks > 0);
}
