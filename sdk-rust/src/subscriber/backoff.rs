//! When to reconnect after a connection ends, following the close-code ranges.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use comnestor_protocol::close::{ReconnectAdvice, advice_for};

/// Exponential backoff between reconnect attempts: `initial`, doubling up to `max`, each delay
/// drawn at random from its upper half so that many clients do not reconnect in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// Servers asking a client to back off (41xx) get at least this long.
const PROTOCOL_MIN_BACKOFF: Duration = Duration::from_secs(1);

/// What to do after a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// 4000–4099: do not reconnect.
    GiveUp,
    Reconnect(Duration),
}

impl Backoff {
    /// The delay before attempt number `attempt` (0 for the first retry).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        let full = self.initial.saturating_mul(factor).min(self.max);
        let half = full / 2;
        half + half.mul_f64(random_unit())
    }

    /// The decision after a close with `code` (`None` when the connection dropped or could not
    /// be opened), on the `attempt`-th consecutive failure.
    pub(crate) fn next(&self, code: Option<u16>, attempt: u32) -> Next {
        let advice = code.map(advice_for);
        match advice {
            Some(ReconnectAdvice::Refused) => Next::GiveUp,
            Some(ReconnectAdvice::Backoff) => {
                Next::Reconnect(self.delay(attempt).max(PROTOCOL_MIN_BACKOFF))
            }
            Some(ReconnectAdvice::Immediately) if attempt == 0 => Next::Reconnect(Duration::ZERO),
            _ => Next::Reconnect(self.delay(attempt)),
        }
    }
}

/// A number in `[0, 1)` from the standard library's randomly keyed hasher.
fn random_unit() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u8(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(800),
    };

    #[test]
    fn follows_close_code_ranges() {
        assert_eq!(FAST.next(Some(4001), 0), Next::GiveUp);
        assert_eq!(FAST.next(Some(4099), 3), Next::GiveUp);
        assert_eq!(FAST.next(Some(4200), 0), Next::Reconnect(Duration::ZERO));
        assert_eq!(FAST.next(Some(4201), 0), Next::Reconnect(Duration::ZERO));
        let Next::Reconnect(wait) = FAST.next(Some(4100), 0) else {
            panic!("41xx must reconnect");
        };
        assert!(wait >= Duration::from_secs(1));
        let Next::Reconnect(wait) = FAST.next(None, 0) else {
            panic!("a dropped connection must reconnect");
        };
        assert!(wait <= FAST.initial);
    }

    #[test]
    fn immediate_reconnects_back_off_when_they_keep_failing() {
        let Next::Reconnect(wait) = FAST.next(Some(4200), 2) else {
            panic!("42xx must reconnect");
        };
        assert!(wait > Duration::ZERO);
    }

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        for attempt in 0..40 {
            let delay = FAST.delay(attempt);
            assert!(delay <= FAST.max, "{delay:?}");
        }
        assert!(FAST.delay(0) <= Duration::from_millis(100));
        assert!(FAST.delay(3) >= Duration::from_millis(400));
    }
}
