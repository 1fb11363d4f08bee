//! End-to-end encrypted channels (`private-encrypted-`), as the Pusher server SDKs do them.
//!
//! Each channel has its own key, SHA-256 of the channel name followed by the 32-byte master key
//! (derived by [`comnestor_protocol::auth::encrypted_channel_key`]). Event data is sealed with
//! NaCl `secretbox` (XSalsa20-Poly1305) under that key and sent as
//! `{"nonce":"<base64>","ciphertext":"<base64>"}`. The server never sees the plaintext or a key.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{Aead, AeadCore, KeyInit, OsRng};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;

/// The 32-byte encryption master key, configured as base64 (44 characters).
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// Decodes a base64 master key; it must hold exactly 32 bytes.
    pub fn from_base64(encoded: &str) -> Result<Self, ErrorKind> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| ErrorKind::Config("the encryption master key is not base64".into()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ErrorKind::Config("the encryption master key must be 32 bytes".into()))?;
        Ok(Self(key))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secretbox key of one channel.
    pub fn channel_key(&self, channel: &str) -> ChannelKey {
        ChannelKey(comnestor_protocol::auth::encrypted_channel_key(
            channel, &self.0,
        ))
    }

    /// The `shared_secret` an auth endpoint returns for `channel`: base64 of its key.
    pub fn shared_secret(&self, channel: &str) -> String {
        comnestor_protocol::auth::encrypted_shared_secret(channel, &self.0)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// The key of one encrypted channel, as the `shared_secret` of its authorization carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelKey([u8; 32]);

impl ChannelKey {
    /// Decodes a `shared_secret` (base64 of 32 bytes).
    pub fn from_shared_secret(shared_secret: &str) -> Result<Self, ErrorKind> {
        let bytes = STANDARD
            .decode(shared_secret)
            .map_err(|_| ErrorKind::Decrypt("shared_secret is not base64"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ErrorKind::Decrypt("shared_secret is not 32 bytes"))?;
        Ok(Self(key))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Seals `plaintext` under a fresh random nonce and returns the event `data` string.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let nonce = XSalsa20Poly1305::generate_nonce(&mut OsRng);
        self.encrypt_with_nonce(plaintext, nonce.into())
    }

    /// Seals `plaintext` under `nonce`. A nonce must never be used twice with the same key;
    /// this exists for test vectors, [`ChannelKey::encrypt`] is the call to use.
    pub fn encrypt_with_nonce(&self, plaintext: &[u8], nonce: [u8; 24]) -> String {
        let cipher = XSalsa20Poly1305::new(&Key::from(self.0));
        let nonce = Nonce::from(nonce);
        // Encryption into a Vec only fails when the buffer cannot grow, which aborts anyway.
        let ciphertext = cipher.encrypt(&nonce, plaintext).unwrap_or_default();
        let data = EncryptedData {
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
        };
        serde_json::to_string(&data).unwrap_or_default()
    }

    /// Opens the `data` of an encrypted event and returns the plaintext.
    pub fn decrypt(&self, data: &str) -> Result<Vec<u8>, ErrorKind> {
        let data: EncryptedData = serde_json::from_str(data)
            .map_err(|_| ErrorKind::Decrypt("data is not {\"nonce\", \"ciphertext\"}"))?;
        let nonce: [u8; 24] = STANDARD
            .decode(&data.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(ErrorKind::Decrypt("the nonce is not 24 bytes of base64"))?;
        let ciphertext = STANDARD
            .decode(&data.ciphertext)
            .map_err(|_| ErrorKind::Decrypt("the ciphertext is not base64"))?;
        XSalsa20Poly1305::new(&Key::from(self.0))
            .decrypt(&Nonce::from(nonce), ciphertext.as_slice())
            .map_err(|_| ErrorKind::Decrypt("the ciphertext does not open with this key"))
    }
}

impl fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelKey(..)")
    }
}

/// The wire form of encrypted event data; `nonce` comes first, as pusher-http-node writes it.
#[derive(Serialize, Deserialize)]
struct EncryptedData {
    nonce: String,
    ciphertext: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let master = MasterKey::from_bytes([7; 32]);
        let key = master.channel_key("private-encrypted-x");
        let data = key.encrypt(br#"{"a":1}"#);
        assert_eq!(key.decrypt(&data).unwrap(), br#"{"a":1}"#);
        let other = master.channel_key("private-encrypted-y");
        assert!(other.decrypt(&data).is_err());
        assert!(key.decrypt("{}").is_err());
    }

    #[test]
    fn master_key_must_be_32_bytes() {
        assert!(MasterKey::from_base64("AAAA").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
        assert!(MasterKey::from_base64(&STANDARD.encode([1u8; 32])).is_ok());
    }
}
