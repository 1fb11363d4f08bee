//! End-to-end encrypted channels (§5). The server authorizes them like private channels and
//! relays their data untouched; it never sees a key.

use std::sync::Arc;

use anyhow::{Result, anyhow, ensure};
use base64::Engine;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use serde_json::{Value, json};

use super::{Area, Ctx, Need};

pub fn cases() -> Vec<super::Case> {
    let area = Area::Encrypted;
    vec![
        case!(
            area,
            authorized_like_private,
            Need::Nothing,
            "§5: private-encrypted- channels are authorized with socket_id:channel, like private channels"
        ),
        case!(
            area,
            bad_signature_refused,
            Need::Nothing,
            "§5, §2.3: a wrong signature on an encrypted channel is refused"
        ),
        case!(
            area,
            ciphertext_relayed_opaque,
            Need::Nothing,
            "§5: the {\"nonce\",\"ciphertext\"} data is relayed as an opaque string and still decrypts"
        ),
        case!(
            area,
            single_element_channels_accepted,
            Need::Nothing,
            "§3.3, §5: a one-element channels array to an encrypted channel (pusher-http-node) is not rejected; the channel form works too"
        ),
    ]
}

/// The master key the suite encrypts with, as the app backend would; the server never sees it.
const MASTER_KEY: &[u8; 32] = b"comnestor-conformance-master-key";

/// NaCl secretbox of `plaintext`, as the `{"nonce","ciphertext"}` event data string.
pub fn encrypt(key: &[u8; 32], nonce: &[u8; 24], plaintext: &[u8]) -> Result<String> {
    let cipher = XSalsa20Poly1305::new(key.into());
    let ciphertext = cipher
        .encrypt(&Nonce::from(*nonce), plaintext)
        .map_err(|_| anyhow!("secretbox encryption failed"))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    // Written by hand so that `nonce` comes first, as the SDKs write it.
    Ok(format!(
        r#"{{"nonce":"{}","ciphertext":"{}"}}"#,
        b64.encode(nonce),
        b64.encode(ciphertext)
    ))
}

fn decrypt(key: &[u8; 32], data: &str) -> Result<Vec<u8>> {
    let value: Value = serde_json::from_str(data)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let nonce = b64.decode(value["nonce"].as_str().unwrap_or_default())?;
    let ciphertext = b64.decode(value["ciphertext"].as_str().unwrap_or_default())?;
    let nonce: [u8; 24] = nonce
        .try_into()
        .map_err(|_| anyhow!("the nonce is not 24 bytes"))?;
    XSalsa20Poly1305::new(key.into())
        .decrypt(&Nonce::from(nonce), ciphertext.as_slice())
        .map_err(|_| anyhow!("the relayed ciphertext no longer decrypts"))
}

async fn authorized_like_private(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("private-encrypted-");
    ctx.subscribe_private(&mut client, &channel).await?;
    Ok(())
}

async fn bad_signature_refused(ctx: Arc<Ctx>) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("private-encrypted-");
    let auth = ctx.auth(&client.socket_id, &format!("{channel}x"), None);
    client.subscribe(&channel, Some(&auth), None);
    super::refused(&mut client, &channel).await?;
    Ok(())
}

async fn relay(ctx: &Ctx, as_array: bool) -> Result<()> {
    let mut client = ctx.connect().await?;
    let channel = ctx.channel("private-encrypted-");
    ctx.subscribe_private(&mut client, &channel).await?;
    let key = comnestor_protocol::auth::encrypted_channel_key(&channel, MASTER_KEY);
    let mut nonce = [0u8; 24];
    let unique = ctx.user();
    for (slot, byte) in nonce.iter_mut().zip(unique.bytes().rev()) {
        *slot = byte;
    }
    let plaintext = json!({"message": "zażółć gęślą jaźń"}).to_string();
    let data = encrypt(&key, &nonce, plaintext.as_bytes())?;
    let body = if as_array {
        json!({"name": "secret", "channels": [channel], "data": data})
    } else {
        json!({"name": "secret", "channel": channel, "data": data})
    };
    ctx.api.trigger(body).await?;
    let frame = client.expect_event("secret", Some(&channel)).await?;
    let got = super::double_encoded(&frame)?;
    ensure!(
        got == data,
        "encrypted data changed in transit: sent {data}, got {got}"
    );
    ensure!(
        decrypt(&key, got)? == plaintext.as_bytes(),
        "decrypted text differs"
    );
    Ok(())
}

async fn ciphertext_relayed_opaque(ctx: Arc<Ctx>) -> Result<()> {
    relay(&ctx, true).await
}

async fn single_element_channels_accepted(ctx: Arc<Ctx>) -> Result<()> {
    relay(&ctx, true).await?;
    relay(&ctx, false).await
}
