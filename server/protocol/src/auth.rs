//! Signatures that prove a backend approved something: channel subscriptions, user sign-in and
//! webhooks. All are lowercase hex HMAC-SHA256 keyed with the app secret.
//!
//! Verification always runs over the exact bytes the client sent (`channel_data`, `user_data`),
//! never over a re-serialization, and compares in constant time.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. The message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Invalid auth format: expected <app key>:<signature>")]
    Malformed,
    #[error("Invalid key in auth: {0}")]
    WrongKey(String),
    #[error(
        "Invalid signature: Expected HMAC SHA256 hex digest of {string_to_sign}, but got {given}"
    )]
    BadSignature {
        string_to_sign: String,
        given: String,
    },
}

/// Hex HMAC-SHA256 of `message` with `secret`.
pub fn sign(secret: &str, message: &str) -> String {
    hex::encode(mac(secret, message.as_bytes()).finalize().into_bytes())
}

/// Constant-time check of a hex signature.
pub fn verify(secret: &str, message: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex) else {
        return false;
    };
    mac(secret, message).verify_slice(&signature).is_ok()
}

fn mac(secret: &str, message: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    mac
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The string signed to authorize a channel subscription: `socket_id:channel[:channel_data]`.
///
/// `channel_data` is included whenever present, for every channel kind, as pusher-http-node
/// does when it is given data.
pub fn channel_string_to_sign(
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The `auth` value for a subscription: `key:signature`.
pub fn authorize_channel(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let signature = sign(
        secret,
        &channel_string_to_sign(socket_id, channel, channel_data),
    );
    format!("{key}:{signature}")
}

/// Checks a subscription's `auth` against the app's credentials.
pub fn verify_channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> Result<(), AuthError> {
    let string_to_sign = channel_string_to_sign(socket_id, channel, channel_data);
    verify_key_and_signature(key, secret, string_to_sign, auth)
}

/// The string signed for user authentication: `socket_id::user::user_data`.
pub fn user_string_to_sign(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// The `auth` value for `pusher:signin`.
pub fn authenticate_user(key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    format!(
        "{key}:{}",
        sign(secret, &user_string_to_sign(socket_id, user_data))
    )
}

/// Checks a `pusher:signin` `auth` against the app's credentials.
pub fn verify_user_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> Result<(), AuthError> {
    verify_key_and_signature(key, secret, user_string_to_sign(socket_id, user_data), auth)
}

fn verify_key_and_signature(
    key: &str,
    secret: &str,
    string_to_sign: String,
    auth: &str,
) -> Result<(), AuthError> {
    let (given_key, signature) = auth.split_once(':').ok_or(AuthError::Malformed)?;
    if !constant_time_eq(key.as_bytes(), given_key.as_bytes()) {
        return Err(AuthError::WrongKey(given_key.to_owned()));
    }
    if verify(secret, string_to_sign.as_bytes(), signature) {
        Ok(())
    } else {
        Err(AuthError::BadSignature {
            string_to_sign,
            given: auth.to_owned(),
        })
    }
}

/// The per-channel key of a `private-encrypted-` channel: SHA-256 of the channel name followed
/// by the 32-byte master key.
pub fn encrypted_channel_key(channel: &str, master_key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(channel.as_bytes());
    hasher.update(master_key);
    hasher.finalize().into()
}

/// The `shared_secret` returned when authorizing an encrypted channel: base64 of its key.
pub fn encrypted_shared_secret(channel: &str, master_key: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(encrypted_channel_key(channel, master_key))
}

/// `X-Pusher-Signature` of a webhook: HMAC-SHA256 over the raw body.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, body).finalize().into_bytes())
}

/// Checks a webhook's `X-Pusher-Signature` over the untouched body.
pub fn verify_webhook(secret: &str, body: &[u8], signature: &str) -> bool {
    verify(secret, body, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn private_channel_vector() {
        let auth = authorize_channel(KEY, SECRET, "1234.1234", "private-foobar", None);
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert!(
            verify_channel_auth(KEY, SECRET, "1234.1234", "private-foobar", None, &auth).is_ok()
        );
        assert!(matches!(
            verify_channel_auth(KEY, SECRET, "1234.1235", "private-foobar", None, &auth),
            Err(AuthError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_channel_auth("other", SECRET, "1234.1234", "private-foobar", None, &auth),
            Err(AuthError::WrongKey(_))
        ));
        assert_eq!(
            verify_channel_auth(KEY, SECRET, "1234.1234", "private-foobar", None, "nocolon"),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn user_auth_vector() {
        let auth = authenticate_user(KEY, SECRET, "1234.1234", r#"{"id":"12345"}"#);
        assert!(auth.ends_with("4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"));
    }

    #[test]
    fn webhook_vector() {
        let body = br#"{"time_ms":1403175510755,"events":[{"channel":"test_channel","name":"channel_vacated"}]}"#;
        let signature = webhook_signature("tofu", body);
        assert_eq!(
            signature,
            "c17257e92037cd7de407ebc1ed174ceb7b2e518db127f44411b9ffc4f5b28cc5"
        );
        assert!(verify_webhook("tofu", body, &signature));
    }
}
