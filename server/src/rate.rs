//! A token bucket, for client events and the intake rate limit.

use tokio::time::Instant;

/// Allows `rate` events per second, with bursts of up to `rate`.
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32) -> Self {
        Self {
            tokens: f64::from(rate),
            updated: Instant::now(),
        }
    }

    /// How long until a token is available at `rate` per second.
    pub fn wait_time(&self, rate: u32) -> std::time::Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        std::time::Duration::from_secs_f64(missing / f64::from(rate.max(1)))
    }

    /// Takes a token if one is available at `rate` per second.
    pub fn try_take(&mut self, rate: u32) -> bool {
        let now = Instant::now();
        let rate = f64::from(rate);
        let refill = now.duration_since(self.updated).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(rate);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
