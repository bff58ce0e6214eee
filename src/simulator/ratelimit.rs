//! Per-client token buckets for the simulated rate limit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One bucket per client id. The rate may change at any time (`PUT /_sim/faults`); buckets adapt
/// on their next use.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: HashMap<String, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// Takes one token from `client`'s bucket, refilled at `per_second` with a burst of one
    /// second's worth (at least 1). `Err` carries how long until a token is available.
    pub(crate) fn acquire(
        &mut self,
        client: &str,
        per_second: f64,
        now: Instant,
    ) -> Result<(), Duration> {
        let capacity = per_second.max(1.0);
        let bucket = match self.buckets.get_mut(client) {
            Some(bucket) => bucket,
            None => self.buckets.entry(client.to_string()).or_insert(Bucket {
                tokens: capacity,
                refilled: now,
            }),
        };
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(
                Duration::try_from_secs_f64((1.0 - bucket.tokens) / per_second)
                    .unwrap_or(Duration::MAX),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refills_at_the_rate() {
        let mut limiter = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.acquire("a", 5.0, t0).is_ok());
        }
        let wait = limiter.acquire("a", 5.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.2).abs() < 1e-9, "{wait:?}");
        // Another client has its own bucket.
        assert!(limiter.acquire("b", 5.0, t0).is_ok());
        // After 200 ms one more token is there, and only one.
        let t1 = t0 + Duration::from_millis(200);
        assert!(limiter.acquire("a", 5.0, t1).is_ok());
        assert!(limiter.acquire("a", 5.0, t1).is_err());
    }

    #[test]
    fn slow_rates_still_allow_one_request() {
        let mut limiter = RateLimiter::default();
        let t0 = Instant::now();
        assert!(limiter.acquire("a", 0.5, t0).is_ok());
        let wait = limiter.acquire("a", 0.5, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 2.0).abs() < 1e-9);
    }
}
