//! Restart delays: exponential backoff with jitter, a cap, and a reset after
//! a stable run.
//!
//! This module computes durations and nothing else: it must never sleep or
//! read a clock, so supervisors can drive it from paused tokio time and
//! tests can inject the randomness.

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

/// How long to wait before restarting something that failed.
///
/// The n-th consecutive delay is `initial × factorⁿ`, capped at `max`, then
/// spread by ± `jitter` (a fraction) so that many workers failing together
/// do not restart in lock-step. A run that lasted at least `reset_after`
/// counts as stable: the next delay starts again from `initial`.
///
/// | setting | default | why |
/// |---|---|---|
/// | `initial` | 3 s | Juju's `RestartDelay` |
/// | `factor` | 2.0 | the usual doubling |
/// | `max` | 60 s | a flapping worker still gets a try every minute |
/// | `jitter` | 0.1 | ±10 %: enough to spread a herd, small enough to reason about |
/// | `reset_after` | 60 s | one minute of health forgives earlier failures |
///
/// ```
/// use std::time::Duration;
/// use steward_worker::Backoff;
///
/// let backoff = Backoff::new(Duration::from_secs(1)).factor(3.0).max(Duration::from_secs(5)).jitter(0.0);
/// let mut delays = backoff.start();
/// assert_eq!(delays.next_delay(None), Duration::from_secs(1));
/// assert_eq!(delays.next_delay(None), Duration::from_secs(3));
/// assert_eq!(delays.next_delay(None), Duration::from_secs(5)); // capped
/// // The instance ran for a minute before failing: start over.
/// assert_eq!(delays.next_delay(Some(Duration::from_secs(60))), Duration::from_secs(1));
/// ```
#[derive(Clone)]
pub struct Backoff {
    initial: Duration,
    factor: f64,
    max: Duration,
    jitter: f64,
    reset_after: Duration,
    random: Option<Arc<dyn Fn() -> f64 + Send + Sync>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(3))
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("initial", &self.initial)
            .field("factor", &self.factor)
            .field("max", &self.max)
            .field("jitter", &self.jitter)
            .field("reset_after", &self.reset_after)
            .field("custom_random", &self.random.is_some())
            .finish()
    }
}

impl Backoff {
    /// The defaults of the table above, with a first delay of `initial`.
    pub fn new(initial: Duration) -> Self {
        Self {
            initial,
            factor: 2.0,
            max: Duration::from_secs(60).max(initial),
            jitter: 0.1,
            reset_after: Duration::from_secs(60),
            random: None,
        }
    }

    /// A backoff that always waits exactly `delay`: no growth, no jitter.
    pub fn constant(delay: Duration) -> Self {
        Self::new(delay).factor(1.0).max(delay).jitter(0.0)
    }

    /// The first delay; raises the cap to it if the cap was lower.
    pub fn initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self.max = self.max.max(initial);
        self
    }

    /// Growth per consecutive failure; values below 1 are treated as 1.
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// The cap on any delay, jitter included.
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// The spread, as a fraction of the delay, clamped to `0.0..=1.0`.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// How long a run must last to reset the delay to `initial`.
    pub fn reset_after(mut self, stable: Duration) -> Self {
        self.reset_after = stable;
        self
    }

    /// Replaces the source of randomness used for jitter. It must return
    /// values in `0.0..1.0`; tests use it to make delays exact.
    pub fn random(mut self, random: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.random = Some(Arc::new(random));
        self
    }

    /// A fresh sequence of delays.
    pub fn start(&self) -> BackoffState {
        BackoffState {
            config: self.clone(),
            attempt: 0,
        }
    }

    fn delay_for(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.factor.powi(exponent);
        let max = self.max.as_secs_f64();
        let mut secs = base.min(max);
        if self.jitter > 0.0 {
            let unit = self
                .random
                .as_ref()
                .map_or_else(thread_random, |random| random());
            secs *= 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        }
        Duration::try_from_secs_f64(secs.clamp(0.0, max)).unwrap_or(self.max)
    }
}

/// The position in a sequence of delays; one per supervised thing.
#[derive(Debug, Clone)]
pub struct BackoffState {
    config: Backoff,
    attempt: u32,
}

impl BackoffState {
    /// The delay before the next restart. `ran_for` is how long the failed
    /// run lasted (`None` when it never started); a run of at least
    /// `reset_after` resets the sequence first.
    pub fn next_delay(&mut self, ran_for: Option<Duration>) -> Duration {
        if ran_for.is_some_and(|ran| ran >= self.config.reset_after) {
            self.attempt = 0;
        }
        let delay = self.config.delay_for(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// How many delays were handed out since the last reset.
    #[cfg(test)]
    fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// A per-thread xorshift generator seeded from the OS-randomised std hasher:
/// jitter needs spread, not cryptographic quality, and this keeps the crate
/// free of an RNG dependency (tower does the same).
fn thread_random() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0x5eed_u64) | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        // 53 random bits → [0, 1).
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let backoff = Backoff::new(Duration::from_millis(100))
            .max(Duration::from_millis(700))
            .jitter(0.0);
        let mut state = backoff.start();
        let delays: Vec<_> = (0..5).map(|_| state.next_delay(None).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 700, 700]);
        assert_eq!(state.attempt(), 5);
    }

    #[test]
    fn resets_after_a_stable_run_only() {
        let backoff = Backoff::new(Duration::from_secs(1))
            .jitter(0.0)
            .reset_after(Duration::from_secs(10));
        let mut state = backoff.start();
        state.next_delay(None);
        state.next_delay(Some(Duration::from_secs(9)));
        assert_eq!(
            state.next_delay(Some(Duration::from_secs(9))),
            Duration::from_secs(4)
        );
        assert_eq!(
            state.next_delay(Some(Duration::from_secs(10))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn jitter_spreads_within_bounds_and_never_exceeds_cap() {
        let low = Backoff::new(Duration::from_secs(10))
            .jitter(0.5)
            .random(|| 0.0);
        assert_eq!(low.start().next_delay(None), Duration::from_secs(5));
        let high = Backoff::new(Duration::from_secs(10))
            .jitter(0.5)
            .max(Duration::from_secs(12))
            .random(|| 0.999_999);
        assert_eq!(high.start().next_delay(None), Duration::from_secs(12));
        let default = Backoff::new(Duration::from_secs(10));
        for _ in 0..1000 {
            let delay = default.start().next_delay(None);
            assert!(
                delay >= Duration::from_secs(9) && delay <= Duration::from_secs(11),
                "{delay:?}"
            );
        }
    }

    #[test]
    fn zero_delay_stays_zero() {
        let mut state = Backoff::new(Duration::ZERO).start();
        assert_eq!(state.next_delay(None), Duration::ZERO);
        assert_eq!(state.next_delay(None), Duration::ZERO);
    }

    #[test]
    fn constant_never_changes_and_nonsense_settings_are_tamed() {
        let mut state = Backoff::constant(Duration::from_secs(2)).start();
        for _ in 0..10 {
            assert_eq!(state.next_delay(None), Duration::from_secs(2));
        }
        let odd = Backoff::new(Duration::from_secs(1))
            .factor(f64::NAN)
            .jitter(-3.0);
        let mut state = odd.start();
        assert_eq!(state.next_delay(None), Duration::from_secs(1));
        assert_eq!(state.next_delay(None), Duration::from_secs(1));
    }

    #[test]
    fn huge_attempt_counts_saturate_at_the_cap() {
        let backoff = Backoff::new(Duration::from_secs(1)).jitter(0.0);
        let mut state = backoff.start();
        state.attempt = u32::MAX;
        assert_eq!(state.next_delay(None), Duration::from_secs(60));
        assert_eq!(state.attempt(), u32::MAX);
    }
}
