//! Background work that runs every so often until the server stops: sweeps, retention, app
//! refreshes, lease renewals, memory trims, job pruning, checkpoints.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

/// Ticks at once and then every period, until a stop signal turns true:
/// `while every.tick().await { … }`. A round that overruns its period delays the next instead
/// of bunching them up; a stop that comes during a round takes effect when the round is done.
pub struct Every {
    ticker: Interval,
    stop: watch::Receiver<bool>,
}

impl Every {
    pub fn new(period: Duration, stop: watch::Receiver<bool>) -> Self {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { ticker, stop }
    }

    /// Waits for the next round: `true` when it is due, `false` once the stop signal is set.
    pub async fn tick(&mut self) -> bool {
        if *self.stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = self.ticker.tick() => true,
            _ = self.stop.wait_for(|stopped| *stopped) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_at_once_then_every_period_until_stopped() {
        let (stop, stopped) = watch::channel(false);
        let mut every = Every::new(Duration::from_secs(10), stopped);
        let mut ticks = 0;
        let rounds = async {
            while every.tick().await {
                ticks += 1;
            }
        };
        let stopper = async {
            tokio::time::sleep(Duration::from_secs(25)).await;
            stop.send(true).unwrap();
        };
        tokio::join!(rounds, stopper);
        // At 0, 10 and 20 s.
        assert_eq!(ticks, 3);
    }
}
