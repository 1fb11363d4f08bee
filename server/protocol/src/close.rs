//! Error and close codes, with the reconnect advice each range carries.
//!
//! 4000–4099: do not reconnect unchanged. 4100–4199: reconnect after backing off.
//! 4200–4299: reconnect at once. 4300–4399: other errors, sent without closing.

/// A Pusher protocol error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    SslOnly = 4000,
    AppNotFound = 4001,
    AppDisabled = 4003,
    OverConnectionQuota = 4004,
    PathNotFound = 4005,
    InvalidVersionFormat = 4006,
    UnsupportedProtocol = 4007,
    NoProtocol = 4008,
    Unauthorized = 4009,
    OverCapacity = 4100,
    Reconnect = 4200,
    PongNotReceived = 4201,
    ClosedAfterInactivity = 4202,
    ClientEventRateLimit = 4301,
    WatchlistLimit = 4302,
}

/// What a client should do after a close with a given code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectAdvice {
    /// Do not reconnect with the same settings (4000–4099).
    Refused,
    /// Back off at least a second, then reconnect (4100–4199).
    Backoff,
    /// Reconnect immediately (4200–4299).
    Immediately,
    /// Not a closing error (4300–4399).
    NotClosing,
}

impl CloseCode {
    const ALL: [Self; 15] = [
        Self::SslOnly,
        Self::AppNotFound,
        Self::AppDisabled,
        Self::OverConnectionQuota,
        Self::PathNotFound,
        Self::InvalidVersionFormat,
        Self::UnsupportedProtocol,
        Self::NoProtocol,
        Self::Unauthorized,
        Self::OverCapacity,
        Self::Reconnect,
        Self::PongNotReceived,
        Self::ClosedAfterInactivity,
        Self::ClientEventRateLimit,
        Self::WatchlistLimit,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    /// The code with this number, if the protocol defines one.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The message sent with the code.
    pub fn message(self) -> &'static str {
        match self {
            Self::SslOnly => "Application only accepts SSL connections, reconnect using wss://",
            Self::AppNotFound => "Application does not exist",
            Self::AppDisabled => "Application disabled",
            Self::OverConnectionQuota => "Application is over connection quota",
            Self::PathNotFound => "Path not found",
            Self::InvalidVersionFormat => "Invalid version string format",
            Self::UnsupportedProtocol => "Unsupported protocol version",
            Self::NoProtocol => "No protocol version supplied",
            Self::Unauthorized => "Connection is unauthorized",
            Self::OverCapacity => "Over capacity",
            Self::Reconnect => "Server is restarting, reconnect",
            Self::PongNotReceived => "Pong reply not received in time",
            Self::ClosedAfterInactivity => "Closed after inactivity",
            Self::ClientEventRateLimit => "Client event rejected due to rate limit",
            Self::WatchlistLimit => {
                "Watchlist limit exceeded. Only the first 100 user IDs are accepted."
            }
        }
    }

    /// Whether the server closes the connection after sending this code.
    pub fn closes(self) -> bool {
        self.advice() != ReconnectAdvice::NotClosing
    }

    pub fn advice(self) -> ReconnectAdvice {
        advice_for(self.code())
    }
}

/// The reconnect advice for any numeric close code.
pub fn advice_for(code: u16) -> ReconnectAdvice {
    match code {
        4000..=4099 => ReconnectAdvice::Refused,
        4100..=4199 => ReconnectAdvice::Backoff,
        4200..=4299 => ReconnectAdvice::Immediately,
        _ => ReconnectAdvice::NotClosing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(CloseCode::AppNotFound.advice(), ReconnectAdvice::Refused);
        assert_eq!(CloseCode::OverCapacity.advice(), ReconnectAdvice::Backoff);
        assert_eq!(
            CloseCode::PongNotReceived.advice(),
            ReconnectAdvice::Immediately
        );
        assert!(!CloseCode::ClientEventRateLimit.closes());
        assert!(CloseCode::Unauthorized.closes());
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(code.code()), Some(code));
        }
        assert_eq!(CloseCode::from_code(1000), None);
    }
}
