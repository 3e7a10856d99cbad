//! Per-peer token buckets: a peer may send `rate` messages a second, in bursts of `burst`.

use std::collections::HashMap;
use std::time::Instant;

use allmende_protocol::PeerId;

/// Token buckets keyed by peer.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<PeerId, (f64, Instant)>,
}

impl RateLimiter {
    /// A limiter allowing `rate` per second with bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `peer` at `now`; `false` when the peer is over its rate.
    pub fn allow(&mut self, peer: PeerId, now: Instant) -> bool {
        let (tokens, last) = self.buckets.entry(peer).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets a peer.
    pub fn remove(&mut self, peer: &PeerId) {
        self.buckets.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_bursts_then_the_rate() {
        let peer = PeerId::random();
        let mut limiter = RateLimiter::new(10, 5);
        let t0 = Instant::now();
        assert_eq!((0..20).filter(|_| limiter.allow(peer, t0)).count(), 5);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| limiter.allow(peer, t1)).count(), 5);
        assert!(limiter.allow(PeerId::random(), t1));
    }
}
