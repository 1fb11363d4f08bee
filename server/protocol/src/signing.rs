//! HTTP API request signing, as every Pusher server SDK does it, and its verification.
//!
//! The string to sign is `METHOD\npath\nquery`, where `query` holds every parameter except
//! `auth_signature`, keys lowercased, sorted by key and joined as `k=v` with `&`, unescaped.

use md5::Md5;
use sha2::Digest;

use crate::auth;

/// Requests whose `auth_timestamp` is this many seconds or more away from the server's clock
/// are refused.
pub const TIMESTAMP_WINDOW_SECS: u64 = 600;

/// Why a signed request was refused. Every variant is answered with 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("Missing parameter: {0}")]
    Missing(&'static str),
    #[error("Unknown auth_key")]
    UnknownKey,
    #[error("Version not supported: auth_version must be 1.0")]
    UnsupportedVersion,
    #[error("Timestamp expired: given timestamp ({given}) not within 600s of server time ({now})")]
    TimestampExpired { given: String, now: u64 },
    #[error("body_md5 does not match the MD5 of the request body")]
    BodyMd5Mismatch,
    #[error(
        "Invalid signature: you should have sent HmacSHA256Hex(\"{string_to_sign}\", your_secret_key), but you sent \"{given}\""
    )]
    InvalidSignature {
        string_to_sign: String,
        given: String,
    },
}

/// Hex MD5 of a request body.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// The string to sign for `method`, `path` and the (decoded) query parameters.
pub fn string_to_sign<'a>(
    method: &str,
    path: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut params: Vec<(String, &str)> = params
        .into_iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .filter(|(key, _)| key != "auth_signature")
        .collect();
    params.sort();
    let query: Vec<String> = params
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    format!(
        "{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path,
        query.join("&")
    )
}

/// Signs a request: returns the full, URL-encoded query string (with `auth_signature`).
///
/// `body` adds `body_md5`; pass `None` for a request without a body.
pub fn sign_request(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: Option<&[u8]>,
    timestamp: u64,
) -> String {
    let timestamp = timestamp.to_string();
    let md5 = body.map(body_md5);
    let mut all: Vec<(&str, &str)> = vec![
        ("auth_key", key),
        ("auth_timestamp", &timestamp),
        ("auth_version", "1.0"),
    ];
    if let Some(md5) = &md5 {
        all.push(("body_md5", md5));
    }
    all.extend_from_slice(params);
    let signature = auth::sign(secret, &string_to_sign(method, path, all.iter().copied()));
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in &all {
        query.append_pair(name, value);
    }
    query.append_pair("auth_signature", &signature);
    query.finish()
}

/// A request as received, for [`verify_request`].
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path the client signed, such as `/apps/3/events`.
    pub path: &'a str,
    /// The raw query string, still percent-encoded.
    pub query: &'a str,
    pub body: &'a [u8],
}

/// The decoded query parameters of a request.
pub fn query_params(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Percent-decodes a request path (`+` stays a plus, as paths have no form encoding).
pub fn decode_path(path: &str) -> String {
    let protected = path.replace('+', "%2B");
    form_urlencoded::parse(format!("p={protected}").as_bytes())
        .next()
        .map_or_else(|| path.to_owned(), |(_, value)| value.into_owned())
}

/// Verifies a signed request against the app's key and secret, with `now` in Unix seconds.
///
/// `body_md5`, when present, is checked against the body even on GET, where the Python SDK sends
/// the MD5 of the empty body. A non-empty body without `body_md5` is refused.
pub fn verify_request(
    request: &SignedRequest<'_>,
    key: &str,
    secret: &str,
    now: u64,
) -> Result<(), SignatureError> {
    let params = query_params(request.query);
    let get = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let given_key = get("auth_key").ok_or(SignatureError::Missing("auth_key"))?;
    let signature = get("auth_signature").ok_or(SignatureError::Missing("auth_signature"))?;
    let timestamp = get("auth_timestamp").ok_or(SignatureError::Missing("auth_timestamp"))?;
    let version = get("auth_version").ok_or(SignatureError::Missing("auth_version"))?;
    if !auth::constant_time_eq(key.as_bytes(), given_key.as_bytes()) {
        return Err(SignatureError::UnknownKey);
    }
    if version != "1.0" {
        return Err(SignatureError::UnsupportedVersion);
    }
    let fresh = timestamp
        .parse::<u64>()
        .is_ok_and(|ts| ts.abs_diff(now) < TIMESTAMP_WINDOW_SECS);
    if !fresh {
        return Err(SignatureError::TimestampExpired {
            given: timestamp.to_owned(),
            now,
        });
    }
    match get("body_md5") {
        Some(md5) if !md5.eq_ignore_ascii_case(&body_md5(request.body)) => {
            return Err(SignatureError::BodyMd5Mismatch);
        }
        None if !request.body.is_empty() => return Err(SignatureError::Missing("body_md5")),
        _ => {}
    }

    let pairs = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let expected = string_to_sign(request.method, request.path, pairs);
    if auth::verify(secret, expected.as_bytes(), signature) {
        Ok(())
    } else {
        Err(SignatureError::InvalidSignature {
            string_to_sign: expected,
            given: signature.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const BODY: &str = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;

    #[test]
    fn documented_post_example() {
        assert_eq!(
            body_md5(BODY.as_bytes()),
            "ec365a775a4cd0599faeb73354201b6f"
        );
        let query = sign_request(
            KEY,
            SECRET,
            "POST",
            "/apps/3/events",
            &[],
            Some(BODY.as_bytes()),
            1353088179,
        );
        assert!(query.ends_with(
            "auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        ));
        let request = SignedRequest {
            method: "POST",
            path: "/apps/3/events",
            query: &query,
            body: BODY.as_bytes(),
        };
        assert_eq!(
            verify_request(&request, KEY, SECRET, 1353088179 + 599),
            Ok(())
        );
        assert!(matches!(
            verify_request(&request, KEY, SECRET, 1353088179 + 600),
            Err(SignatureError::TimestampExpired { .. })
        ));
        let tampered = SignedRequest {
            body: b"{}",
            ..request
        };
        assert_eq!(
            verify_request(&tampered, KEY, SECRET, 1353088179),
            Err(SignatureError::BodyMd5Mismatch)
        );
    }

    #[test]
    fn keys_are_lowercased_and_sorted() {
        let signed = string_to_sign(
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
        assert_eq!(
            auth::sign("secret", &signed),
            "3b237953a5ba6619875cbb2a2d43e8da9ef5824e8a2c689f6284ac85bc1ea0db"
        );
    }

    #[test]
    fn paths_decode_without_turning_plus_into_space() {
        assert_eq!(
            decode_path("/apps/1/channels/%23server-to-user-a+b"),
            "/apps/1/channels/#server-to-user-a+b"
        );
    }

    #[test]
    fn get_with_body_md5_of_empty_body() {
        let query = sign_request(
            KEY,
            SECRET,
            "GET",
            "/apps/3/channels",
            &[("info", "user_count")],
            Some(b""),
            100,
        );
        let request = SignedRequest {
            method: "GET",
            path: "/apps/3/channels",
            query: &query,
            body: b"",
        };
        assert_eq!(verify_request(&request, KEY, SECRET, 100), Ok(()));
    }

    #[test]
    fn percent_encoded_values_are_decoded() {
        let ts = "1353088179";
        let raw = format!(
            "auth_key={KEY}&auth_timestamp={ts}&auth_version=1.0&info=user_count%2Csubscription_count"
        );
        let signed = string_to_sign(
            "GET",
            "/apps/3/channels/x",
            query_params(&raw)
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert!(signed.ends_with("info=user_count,subscription_count"));
        let query = format!("{raw}&auth_signature={}", auth::sign(SECRET, &signed));
        let request = SignedRequest {
            method: "GET",
            path: "/apps/3/channels/x",
            query: &query,
            body: b"",
        };
        assert_eq!(verify_request(&request, KEY, SECRET, 1353088179), Ok(()));
        let wrong_key = verify_request(&request, "other", SECRET, 1353088179);
        assert_eq!(wrong_key, Err(SignatureError::UnknownKey));
    }
}
