//! The Pusher Channels protocol (version 7) as Comnestor speaks it.
//!
//! This crate is the single place where the wire format and the signing rules live. The server,
//! the Rust SDK and the conformance suite all depend on it, so they cannot drift apart.
//!
//! - [`channel`]: channel names, their kinds and the naming rules.
//! - [`message`]: frames exchanged over the WebSocket, in both directions.
//! - [`close`]: error and close codes with the reconnect advice pusher-js follows.
//! - [`auth`]: channel authorization, user sign-in, encrypted-channel keys and webhook signatures.
//! - [`signing`]: HTTP API request signing and its server-side verification.
//! - [`api`]: request and response bodies of the HTTP API.

pub mod api;
pub mod auth;
pub mod channel;
pub mod close;
pub mod message;
pub mod signing;

pub use channel::{ChannelKind, ChannelName, ChannelNameError};
pub use close::CloseCode;

/// The protocol version pusher-js 8 announces and the one this crate implements.
pub const PROTOCOL_VERSION: u8 = 7;

/// Returns whether `socket_id` has the `digits.digits` shape every Pusher server SDK insists on.
pub fn is_valid_socket_id(socket_id: &str) -> bool {
    let Some((left, right)) = socket_id.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    digits(left) && digits(right)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids() {
        assert!(is_valid_socket_id("123.456"));
        assert!(is_valid_socket_id("1.1"));
        for bad in ["", "1", "1.", ".1", "a.1", "1.2.3", "1 .2", "-1.2"] {
            assert!(!is_valid_socket_id(bad), "{bad}");
        }
    }
}
