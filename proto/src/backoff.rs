//! Reconnect delays: exponential growth, a cap, and jitter so that clinics cut off by the same
//! outage do not all redial the gateway in the same instant.

use std::time::Duration;

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Largest delay ever waited.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl BackoffConfig {
    /// The delay after `failures` earlier failures, before jitter: `initial` doubled that many
    /// times, capped at `max`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        self.initial
            .saturating_mul(1u32 << failures.min(20))
            .min(self.max)
    }
}

#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
    rng: Rng,
}

impl Backoff {
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Self {
            config,
            failures: 0,
            rng: Rng::new(seed),
        }
    }

    /// The delay to wait after one more failure. "Equal jitter": half the exponential delay is
    /// fixed, the other half random, so retries never bunch at zero.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.config.ceiling(self.failures);
        self.failures = self.failures.saturating_add(1);
        ceiling / 2 + ceiling.mul_f64(self.rng.next_unit() / 2.0)
    }

    /// Called when a connection came fully up: the next failure starts small again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_caps_with_jitter_inside_bounds() {
        let cfg = BackoffConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        };
        let mut b = Backoff::new(cfg, 42);
        let mut ceiling = Duration::from_millis(500);
        for _ in 0..40 {
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(cfg.max);
        }
        assert!(b.next_delay() <= Duration::from_secs(30));
    }

    #[test]
    fn reset_starts_over_and_seeds_differ() {
        let mut a = Backoff::new(BackoffConfig::default(), 1);
        let mut b = Backoff::new(BackoffConfig::default(), 2);
        let da: Vec<_> = (0..10).map(|_| a.next_delay()).collect();
        let db: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert_ne!(da, db, "two clinics must not retry in lockstep");
        a.reset();
        assert!(a.next_delay() <= Duration::from_millis(500));
    }
}
