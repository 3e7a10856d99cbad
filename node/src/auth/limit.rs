//! Per-address limit on failed authentications: after `max` failures within a window, the
//! address gets 429 until the window ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::AuthError;

/// Addresses tracked at most; older windows are dropped first.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub(super) struct FailureLimiter {
    max: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureLimiter {
    pub(super) fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses an address that failed too often in its current window.
    pub(super) fn check(&self, ip: IpAddr) -> Result<(), AuthError> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((start, count)) = failures.get(&ip) {
            let age = start.elapsed();
            if age < self.window && *count >= self.max {
                return Err(AuthError::RateLimited((self.window - age).as_secs().max(1)));
            }
        }
        Ok(())
    }

    /// Counts one failure of `ip`.
    pub(super) fn fail(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if failures.len() >= MAX_TRACKED {
            let window = self.window;
            failures.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        if failures.len() >= MAX_TRACKED {
            return;
        }
        let entry = failures.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 == self.max {
            tracing::warn!(%ip, "too many failed authentications; refusing this address for a while");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_until_the_window_ends() {
        let limiter = FailureLimiter::new(3, Duration::from_millis(200));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            limiter.check(ip).unwrap();
            limiter.fail(ip);
        }
        assert!(matches!(limiter.check(ip), Err(AuthError::RateLimited(_))));
        limiter.check(other).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        limiter.check(ip).unwrap();
    }
}
