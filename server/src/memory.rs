//! Giving memory back to the system after connections leave.
//!
//! glibc's allocator keeps the pages that freed connections used, so a server that held 15,000
//! connections stays at its peak size after they disconnect (BENCHMARKS.md measured 380 MiB
//! kept, 29 MiB after a trim). This task watches the live connection count and, after a large
//! drop, asks glibc to return free memory with `malloc_trim`. On other C libraries it does
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::hub::Hub;

/// How often the connection count is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Connections that must have left since the last peak before a trim is worth its cost.
const MIN_DROP: usize = 1_000;

/// Trims after the live connection count fell by at least half of its peak (and by
/// [`MIN_DROP`]), then starts watching for the next peak. Returns when `stopped` turns true.
pub async fn trim_after_disconnects(hub: Arc<Hub>, stopped: watch::Receiver<bool>) {
    let mut peak = 0;
    let mut every = crate::periodic::Every::new(CHECK_EVERY, stopped);
    while every.tick().await {
        // The hub's own peak, so that a burst that came and went between two checks counts.
        let live = hub.live_connections();
        peak = peak.max(hub.take_peak_connections());
        if should_trim(peak, live) {
            // A trim walks the whole heap: keep it off the runtime's worker threads.
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
            tracing::debug!(peak, live, "returned free memory to the system");
            peak = live;
        }
    }
}

fn should_trim(peak: usize, live: usize) -> bool {
    peak - live >= MIN_DROP && live <= peak / 2
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only releases free heap pages; it takes no pointers and is safe to
    // call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::should_trim;

    #[test]
    fn trims_only_after_a_large_drop() {
        assert!(!should_trim(0, 0));
        assert!(!should_trim(1_500, 800), "a drop under 1,000 connections");
        assert!(!should_trim(10_000, 6_000), "less than half gone");
        assert!(should_trim(10_000, 5_000));
        assert!(should_trim(15_000, 0));
    }
}
