//! The daemon's error policy in time: exponential backoff with jitter for failures that may
//! go away by themselves (a tenant's step, a fetch, an unreachable host), and the schedule of
//! tenants waiting for their next try.
//!
//! Time is tokio's clock ([`tokio::time::Instant`]), so the tests run on paused time and
//! jitter is an argument (`0.0..1.0`), so the arithmetic is exact.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// Exponential backoff: `base · 2^(n-1)` after the n-th failure in a row, stretched by up to
/// 50% of jitter, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(10 * 60),
        }
    }
}

impl Backoff {
    /// The wait after `failures` failures in a row (`failures` ≥ 1), with `jitter` in
    /// `0.0..1.0`.
    #[must_use]
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let stretched = exp.mul_f64(1.0 + 0.5 * jitter.clamp(0.0, 1.0));
        stretched.min(self.max)
    }
}

/// A fresh jitter value.
#[must_use]
pub fn jitter() -> f64 {
    use rand::Rng as _;
    rand::rng().random_range(0.0..1.0)
}

/// Tenants backing off: how often each failed in a row and when it may be tried again.
#[derive(Debug, Default)]
pub struct Retries {
    entries: BTreeMap<String, (u32, Instant)>,
}

impl Retries {
    /// Record a failure of `tenant`; returns the delay until its next try.
    pub fn fail(&mut self, tenant: &str, policy: &Backoff, jitter: f64) -> Duration {
        let failures = self.entries.get(tenant).map_or(0, |(n, _)| *n) + 1;
        let delay = policy.delay(failures, jitter);
        self.entries
            .insert(tenant.to_string(), (failures, Instant::now() + delay));
        delay
    }

    /// Forget `tenant` (it converged, or its file changed).
    pub fn clear(&mut self, tenant: &str) {
        self.entries.remove(tenant);
    }

    /// Failures in a row of `tenant`.
    #[must_use]
    pub fn failures(&self, tenant: &str) -> u32 {
        self.entries.get(tenant).map_or(0, |(n, _)| *n)
    }

    /// When `tenant` may be tried again, if it is backing off.
    #[must_use]
    pub fn next_try(&self, tenant: &str) -> Option<Instant> {
        self.entries.get(tenant).map(|(_, at)| *at)
    }

    /// Tenants still waiting at `now` (a pass leaves them alone).
    #[must_use]
    pub fn waiting(&self, now: Instant) -> std::collections::BTreeSet<String> {
        self.entries
            .iter()
            .filter(|(_, (_, at))| *at > now)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Tenants whose wait is over at `now`.
    #[must_use]
    pub fn due(&self, now: Instant) -> std::collections::BTreeSet<String> {
        self.entries
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The earliest next try still ahead of `now`.
    #[must_use]
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        self.entries
            .values()
            .map(|(_, at)| *at)
            .filter(|at| *at > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_bounded_jitter_and_stop_at_the_maximum() {
        let b = Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(2, 0.0), Duration::from_secs(4));
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(8));
        assert_eq!(b.delay(3, 0.999_999).as_secs(), 11);
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(12));
        assert_eq!(b.delay(6, 0.0), Duration::from_secs(60));
        assert_eq!(b.delay(40, 0.5), Duration::from_secs(60));
        for _ in 0..100 {
            let d = b.delay(2, jitter());
            assert!(d >= Duration::from_secs(4) && d < Duration::from_secs(6));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_tenant_waits_longer_each_time_on_tokio_time() {
        let policy = Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
        };
        let mut r = Retries::default();
        let start = Instant::now();
        assert_eq!(r.fail("t", &policy, 0.0), Duration::from_secs(10));
        assert_eq!(r.waiting(Instant::now()), ["t".to_string()].into());
        // Nothing is due before its time; sleeping until the next try lands exactly on it.
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(r.due(Instant::now()).is_empty());
        let next = r.next_due(Instant::now()).unwrap();
        tokio::time::sleep_until(next).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
        assert_eq!(r.due(Instant::now()), ["t".to_string()].into());
        // Second and third failures: 20 s, then 40 s stretched by half the jitter (50 s).
        assert_eq!(r.fail("t", &policy, 0.0), Duration::from_secs(20));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(r.fail("t", &policy, 0.5), Duration::from_secs(50));
        assert_eq!(r.failures("t"), 3);
        let t0 = Instant::now();
        tokio::time::sleep_until(r.next_due(t0).unwrap()).await;
        assert_eq!(Instant::now() - t0, Duration::from_secs(50));
        r.clear("t");
        assert!(r.next_due(Instant::now()).is_none());
        assert_eq!(r.failures("t"), 0);
    }
}
