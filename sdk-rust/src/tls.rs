//! The process-wide rustls crypto provider.
//!
//! reqwest and tokio-tungstenite are built without a provider of their own (that keeps
//! aws-lc-sys out of the build), so rustls needs one installed for the process before the first
//! `https://` or `wss://` connection. The SDK installs ring's provider the first time it builds
//! an HTTP client or opens a WebSocket, unless the application installed one first.

/// Installs rustls' ring provider as the process default, unless a provider is already
/// installed. Safe to call any number of times, from any thread.
///
/// Applications that want another provider install theirs before building a
/// [`Client`](crate::Client) or connecting a [`Subscriber`](crate::Subscriber).
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
