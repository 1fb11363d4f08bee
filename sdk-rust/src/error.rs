//! The one error type of the SDK: which call failed, and why.

use std::fmt;

/// A failed SDK call.
///
/// [`Error::call`] names the method that failed (`send_event`, `trigger`, `subscribe`, ...) and
/// [`Error::kind`] says why. The underlying error, when there is one (a transport error, a JSON
/// error), is kept and returned by [`std::error::Error::source`].
#[derive(Debug)]
pub struct Error {
    call: &'static str,
    kind: ErrorKind,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is incomplete or malformed (a missing variable, a bad URL or key).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An argument was refused before anything was sent (a bad channel name, socket id, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request could not be sent or its answer could not be read.
    #[error("HTTP request failed")]
    Http(#[source] reqwest::Error),
    /// The server answered with an error status.
    #[error("the server answered {status}: {message}")]
    Status {
        status: u16,
        /// The server's explanation: a problem's `detail`, an `error` field or the body text.
        message: String,
    },
    /// The server answered with a body this SDK cannot read.
    #[error("unexpected answer from the server: {body}")]
    Decode {
        /// The body (cut to 512 bytes).
        body: String,
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be serialized to JSON.
    #[error("cannot serialize the value to JSON")]
    Serialize(#[source] serde_json::Error),
    /// No encryption master key is configured, but the channel is `private-encrypted-`.
    #[error("channel {0} is encrypted, but no encryption master key is configured")]
    NoMasterKey(String),
    /// Encrypted event data could not be decrypted (wrong key, or not `{nonce, ciphertext}`).
    #[error("cannot decrypt the event data: {0}")]
    Decrypt(&'static str),
    /// A webhook failed verification.
    #[error("webhook refused: {0}")]
    Webhook(&'static str),
    /// The WebSocket connection failed.
    #[error("WebSocket error")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The server closed the connection with a code that forbids reconnecting unchanged.
    #[error("the server refused the connection with code {code}: {reason}")]
    Refused { code: u16, reason: String },
    /// The authorizer did not authorize a subscription.
    #[error("the authorizer refused the channel")]
    Authorizer(#[source] BoxError),
    /// Signing in as a user failed (the authenticator or the server refused).
    #[error("signing in failed: {0}")]
    SignInFailed(String),
    /// The server rejected a subscription.
    #[error("the server rejected the subscription: {0}")]
    SubscriptionRejected(String),
    /// The subscriber's connection task has stopped, so the call cannot be carried out.
    #[error("the subscriber is closed")]
    SubscriberClosed,
    /// The subscriber is between connections; the call needs a live one.
    #[error("the subscriber is not connected right now")]
    NotConnected,
    /// The server did not answer in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The server broke the Pusher protocol (a handshake without a socket id, say).
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
}

/// A boxed error, as authorizer callbacks return it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of SDK calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(call: &'static str, kind: ErrorKind) -> Self {
        Self { call, kind }
    }

    /// The SDK method that failed, such as `send_event`.
    pub fn call(&self) -> &'static str {
        self.call
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    pub fn into_kind(self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status, when the server answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            ErrorKind::Status { status, .. } => Some(status),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.call, self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// Attaches the name of the failing call to lower-level errors.
pub(crate) trait Context<T> {
    fn call(self, call: &'static str) -> Result<T>;
}

impl<T, E: Into<ErrorKind>> Context<T> for std::result::Result<T, E> {
    fn call(self, call: &'static str) -> Result<T> {
        self.map_err(|e| Error::new(call, e.into()))
    }
}

impl From<reqwest::Error> for ErrorKind {
    fn from(error: reqwest::Error) -> Self {
        Self::Http(error)
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ErrorKind {
    fn from(error: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(error))
    }
}

/// Cuts a body for an error message without splitting a character.
pub(crate) fn excerpt(body: &str) -> String {
    const MAX: usize = 512;
    if body.len() <= MAX {
        return body.to_owned();
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_call_and_keeps_the_source() {
        let json = serde_json::from_str::<u8>("x").unwrap_err();
        let error = Error::new(
            "trigger",
            ErrorKind::Decode {
                body: "x".into(),
                source: json,
            },
        );
        assert_eq!(
            error.to_string(),
            "trigger failed: unexpected answer from the server: x"
        );
        assert!(std::error::Error::source(&error).is_some());
        assert_eq!(error.call(), "trigger");
    }

    #[test]
    fn excerpts_respect_char_boundaries() {
        let long = "é".repeat(400);
        assert!(excerpt(&long).len() <= 515);
    }
}
