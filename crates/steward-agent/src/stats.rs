//! Per-second call statistics of each runtime version over the last few
//! minutes, for the web UI's live plots (`GET /v1/runtimes/{id}/stats`):
//! how many calls, how many failed, and a latency histogram per second
//! that is good enough for p50 and p99.
//!
//! Prometheus (`crate::metrics`) stays the record for anything longer or
//! aggregated across agents; this module keeps only [`WINDOW`] seconds in
//! memory, per version that had calls lately, and forgets a version once
//! it has had none for a whole window. Each runtime has its own
//! [`CallStats`], which its owner keeps under that runtime's own lock, so
//! no call waits for another runtime's. Recording must stay constant work
//! that never allocates per call (only a version's first call in a window
//! allocates its ring).
//!
//! Latencies fall into fixed logarithmic buckets, [`SUB_BUCKETS`] per
//! doubling from 1 µs, so a quantile read off a histogram is within
//! half a bucket of the exact one on a log scale (the bucket's geometric
//! middle, kept inside the smallest and largest latency seen in that
//! second): 2^(1/8) − 1 ≈ 9.1 % at four buckets per doubling.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many seconds each version's ring holds.
pub(crate) const WINDOW: u32 = 300;

/// Buckets per doubling of latency.
pub(crate) const SUB_BUCKETS: u32 = 4;

/// Latency buckets: 1 µs · 2^(104/4) ≈ 67 s covers the call timeouts in
/// use; anything longer lands in the last bucket (and its estimate is
/// then kept at or under the largest latency seen).
pub(crate) const BUCKETS: usize = 104;

/// The lower edge of the first bucket, in nanoseconds (a loopback round
/// trip is ~50 µs, so nothing real is faster).
const MIN_NS: f64 = 1_000.0;

/// The worst relative error of a quantile estimate for latencies inside
/// the buckets' range: half a bucket's width on a log scale, 2^(1/8) − 1.
#[cfg(test)]
pub(crate) const MAX_RELATIVE_ERROR: f64 = 0.090_507_732_665_257_66;

/// The bucket a latency of `ns` nanoseconds falls in.
fn bucket_of(ns: u64) -> usize {
    // A latency's magnitude is what matters, not its last nanosecond.
    let ns = ns as f64;
    if ns < MIN_NS {
        return 0;
    }
    let index = ((ns / MIN_NS).log2() * f64::from(SUB_BUCKETS)).floor();
    // Non-negative and whole; the float-to-int cast saturates.
    let index = index as usize;
    index.min(BUCKETS - 1)
}

/// The value that stands for bucket `index`: its geometric middle, in
/// nanoseconds.
fn bucket_middle(index: usize) -> f64 {
    let exponent = (index as f64 + 0.5) / f64::from(SUB_BUCKETS);
    MIN_NS * exponent.exp2()
}

/// Latencies of a set of calls: a count per bucket, and the extremes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Histogram {
    counts: [u32; BUCKETS],
    count: u64,
    min_ns: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            count: 0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }
}

impl Histogram {
    /// Counts one latency.
    pub(crate) fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = &mut self.counts[bucket_of(ns)];
        *bucket = bucket.saturating_add(1);
        self.count += 1;
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds `other`'s latencies to these.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
        self.count += other.count;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// How many latencies it holds.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The `q`-quantile (0 < q ≤ 1) in nanoseconds: an estimate of the
    /// latency of rank ⌈q·n⌉ among the n recorded, `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        let index = self
            .counts
            .iter()
            .position(|&count| {
                seen += u64::from(count);
                seen >= rank
            })
            .unwrap_or(BUCKETS - 1);
        let (min, max) = (self.min_ns as f64, self.max_ns as f64);
        Some(bucket_middle(index).clamp(min, max))
    }
}

/// One second of one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Second {
    /// Which second (Unix time) this slot holds; a slot holding another
    /// second than the one asked for is empty for that one.
    at: u64,
    /// Calls that failed.
    pub(crate) errors: u64,
    /// Latencies of all calls (ok and failed); its count is the calls.
    pub(crate) latency: Histogram,
}

impl Second {
    /// Calls that ended in this second.
    pub(crate) fn calls(&self) -> u64 {
        self.latency.count()
    }
}

/// A version's last [`WINDOW`] seconds, slot `at % WINDOW` for second `at`.
#[derive(Debug)]
struct Ring {
    slots: Box<[Second]>,
    /// The latest second recorded.
    newest: u64,
}

impl Ring {
    fn new() -> Self {
        Self {
            slots: vec![Second::default(); WINDOW as usize].into_boxed_slice(),
            newest: 0,
        }
    }

    fn slot(at: u64) -> usize {
        usize::try_from(at % u64::from(WINDOW)).unwrap_or(0)
    }

    fn record(&mut self, at: u64, latency: Duration, ok: bool) {
        let slot = &mut self.slots[Self::slot(at)];
        if slot.at != at {
            *slot = Second {
                at,
                ..Second::default()
            };
        }
        slot.latency.record(latency);
        if !ok {
            slot.errors += 1;
        }
        self.newest = self.newest.max(at);
    }

    /// Second `at`, empty if it was not recorded or was overwritten.
    fn get(&self, at: u64) -> Option<&Second> {
        let slot = &self.slots[Self::slot(at)];
        (slot.at == at && slot.calls() > 0).then_some(slot)
    }
}

/// The clock of the buckets: Unix seconds, but advancing with the
/// monotonic clock so that a wall-clock step cannot reorder them.
#[derive(Debug, Clone, Copy)]
struct Clock {
    unix_at_start: Duration,
    start: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            unix_at_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            start: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        (self.unix_at_start + self.start.elapsed()).as_secs()
    }
}

/// The clock every runtime's seconds are counted by, so that their series
/// line up.
static CLOCK: LazyLock<Clock> = LazyLock::new(Clock::new);

/// The current second of the buckets (Unix time).
pub(crate) fn now() -> u64 {
    CLOCK.now()
}

/// One runtime's statistics: a ring per version that had a call lately.
#[derive(Debug, Default)]
pub(crate) struct CallStats {
    /// version → ring.
    versions: HashMap<String, Ring>,
    /// When idle rings were last dropped.
    pruned_at: u64,
}

/// One version's seconds, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionSeconds {
    /// The version.
    pub(crate) version: String,
    /// One entry per second of the series (`None`: no call ended then).
    pub(crate) seconds: Vec<Option<Second>>,
}

/// A runtime's last seconds, per version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Series {
    /// The Unix second of the first entry; entry `i` is second `start + i`.
    pub(crate) start: u64,
    /// How many seconds.
    pub(crate) len: u32,
    /// The versions with a call in the series, sorted by name.
    pub(crate) versions: Vec<VersionSeconds>,
}

impl CallStats {
    /// Records one call served by `version` that took `latency` and
    /// succeeded (`ok`) or not, in second `at` (from [`now`]).
    pub(crate) fn record(&mut self, at: u64, version: &str, latency: Duration, ok: bool) {
        if self.pruned_at != at {
            self.prune(at);
        }
        // Looked up before inserting, so that the usual call allocates no
        // key.
        if !self.versions.contains_key(version) {
            self.versions.insert(version.to_owned(), Ring::new());
        }
        if let Some(ring) = self.versions.get_mut(version) {
            ring.record(at, latency, ok);
        }
    }

    /// The last `seconds` complete seconds before second `now` (the
    /// current one is still filling, so it is left out), at most
    /// [`WINDOW`] − 1. Drops the rings that went idle first: a runtime
    /// whose calls stopped records nothing that would.
    pub(crate) fn series(&mut self, now: u64, seconds: u32) -> Series {
        if self.pruned_at != now {
            self.prune(now);
        }
        // The slot of the current second is being filled, and the one of
        // `now - WINDOW` is the same slot: the series ends before `now`.
        let len = seconds.clamp(1, WINDOW - 1);
        let start = now.saturating_sub(u64::from(len));
        let mut versions: Vec<VersionSeconds> = self
            .versions
            .iter()
            .filter(|(_, ring)| ring.newest >= start)
            .map(|(version, ring)| VersionSeconds {
                version: version.clone(),
                seconds: (start..now).map(|at| ring.get(at).cloned()).collect(),
            })
            .filter(|version| version.seconds.iter().any(Option::is_some))
            .collect();
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        Series {
            start,
            len,
            versions,
        }
    }

    /// Drops the rings without a call in the window ending at `now` (a
    /// version gone from the config, or idle).
    fn prune(&mut self, now: u64) {
        let oldest = now.saturating_sub(u64::from(WINDOW));
        self.versions.retain(|_, ring| ring.newest > oldest);
        self.pruned_at = now;
    }

    #[cfg(test)]
    fn rings(&self) -> usize {
        self.versions.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn us(micros: u64) -> Duration {
        Duration::from_micros(micros)
    }

    #[test]
    fn the_error_bound_is_half_a_bucket() {
        let half = 1.0 / (2.0 * f64::from(SUB_BUCKETS));
        assert!((MAX_RELATIVE_ERROR - (half.exp2() - 1.0)).abs() < 1e-15);
    }

    #[test]
    fn buckets_double_every_sub_buckets() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(999), 0);
        assert_eq!(bucket_of(1_000), 0);
        assert_eq!(bucket_of(2_000), SUB_BUCKETS as usize);
        assert_eq!(bucket_of(4_000), 2 * SUB_BUCKETS as usize);
        assert_eq!(bucket_of(1_999), SUB_BUCKETS as usize - 1);
        // Past ~67 s everything shares the last bucket.
        assert_eq!(bucket_of(100_000_000_000), BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for index in 0..BUCKETS - 1 {
            let middle = bucket_middle(index) as u64;
            assert_eq!(bucket_of(middle), index, "middle of bucket {index}");
        }
    }

    #[test]
    fn an_empty_histogram_has_no_quantiles() {
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(Histogram::default().count(), 0);
    }

    #[test]
    fn one_latency_is_every_quantile_exactly() {
        let mut histogram = Histogram::default();
        histogram.record(us(437));
        for q in [0.01, 0.5, 0.99, 1.0] {
            assert_eq!(histogram.quantile(q), Some(437_000.0));
        }
    }

    #[test]
    fn p99_sees_the_slow_tail() {
        // 98 fast calls and 2 slow ones: p50 is fast, p99 is slow.
        let mut histogram = Histogram::default();
        for _ in 0..98 {
            histogram.record(us(100));
        }
        histogram.record(us(50_000));
        histogram.record(us(50_000));
        let p50 = histogram.quantile(0.5).unwrap();
        let p99 = histogram.quantile(0.99).unwrap();
        assert!((p50 / 100_000.0 - 1.0).abs() <= MAX_RELATIVE_ERROR, "{p50}");
        assert!(
            (p99 / 50_000_000.0 - 1.0).abs() <= MAX_RELATIVE_ERROR,
            "{p99}"
        );
    }

    #[test]
    fn latencies_beyond_the_last_bucket_stay_within_what_was_seen() {
        let mut histogram = Histogram::default();
        histogram.record(Duration::from_secs(100));
        histogram.record(Duration::from_secs(200));
        let p99 = histogram.quantile(0.99).unwrap();
        assert!((100e9..=200e9).contains(&p99), "{p99}");
    }

    #[test]
    fn merging_is_recording_both() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        let mut both = Histogram::default();
        for (i, micros) in [30, 70, 200, 5_000, 12, 900].into_iter().enumerate() {
            if i % 2 == 0 { &mut a } else { &mut b }.record(us(micros));
            both.record(us(micros));
        }
        a.merge(&b);
        assert_eq!(a, both);
    }

    proptest! {
        /// The estimate of any quantile is within the error bound of the
        /// exact latency of the same rank.
        #[test]
        fn quantiles_are_within_the_bound(
            latencies in prop::collection::vec(1_000u64..60_000_000_000, 1..400),
            q in 0.001f64..=1.0,
        ) {
            let mut histogram = Histogram::default();
            for &ns in &latencies {
                histogram.record(Duration::from_nanos(ns));
            }
            let mut sorted = latencies.clone();
            sorted.sort_unstable();
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            let exact = sorted[rank - 1] as f64;
            let estimate = histogram.quantile(q).unwrap();
            let error = (estimate / exact - 1.0).abs();
            prop_assert!(
                error <= MAX_RELATIVE_ERROR + 1e-12,
                "q {q}: estimate {estimate} for exact {exact} is off by {error}"
            );
        }
    }

    #[test]
    fn a_series_has_one_entry_per_complete_second() {
        let mut stats = CallStats::default();
        let now = 1_000_000;
        stats.record(now - 3, "1.0.0", us(100), true);
        stats.record(now - 3, "1.0.0", us(300), false);
        stats.record(now - 1, "1.0.0", us(200), true);
        // The current second is not complete: left out.
        stats.record(now, "1.0.0", us(200), true);
        stats.record(now - 2, "2.0.0", us(50), true);

        let series = stats.series(now, 4);
        assert_eq!(series.start, now - 4);
        assert_eq!(series.len, 4);
        let versions: Vec<&str> = series.versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(versions, ["1.0.0", "2.0.0"]);
        let calls = |v: &VersionSeconds| -> Vec<u64> {
            v.seconds
                .iter()
                .map(|s| s.as_ref().map_or(0, Second::calls))
                .collect()
        };
        assert_eq!(calls(&series.versions[0]), [0, 2, 0, 1]);
        assert_eq!(calls(&series.versions[1]), [0, 0, 1, 0]);
        let errors: Vec<u64> = series.versions[0]
            .seconds
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.errors))
            .collect();
        assert_eq!(errors, [0, 1, 0, 0]);

        assert!(CallStats::default().series(now, 10).versions.is_empty());
    }

    #[test]
    fn a_version_without_calls_in_the_series_is_left_out() {
        let mut stats = CallStats::default();
        let now = 5_000;
        stats.record(now - 100, "1.0.0", us(100), true);
        stats.record(now - 1, "2.0.0", us(100), true);
        let series = stats.series(now, 10);
        assert_eq!(series.versions.len(), 1);
        assert_eq!(series.versions[0].version, "2.0.0");
        assert_eq!(stats.series(now, 200).versions.len(), 2);
    }

    #[test]
    fn the_ring_forgets_seconds_older_than_the_window() {
        let mut stats = CallStats::default();
        let start = 10_000;
        // One call per second for two windows: each slot is reused.
        for at in start..start + 2 * u64::from(WINDOW) {
            stats.record(at, "1.0.0", us(100), true);
            stats.record(at, "1.0.0", us(100), !at.is_multiple_of(7));
        }
        let now = start + 2 * u64::from(WINDOW);
        let series = stats.series(now, WINDOW);
        // Asking for more than the ring can answer gets what it holds.
        assert_eq!(series.len, WINDOW - 1);
        assert_eq!(series.start, now - u64::from(WINDOW - 1));
        let seconds = &series.versions[0].seconds;
        assert_eq!(seconds.len(), (WINDOW - 1) as usize);
        for (i, second) in seconds.iter().enumerate() {
            let second = second.as_ref().expect("a call every second");
            assert_eq!(second.calls(), 2, "second {i} holds only its own calls");
            let at = series.start + i as u64;
            assert_eq!(second.errors, u64::from(at.is_multiple_of(7)), "second {i}");
        }
    }

    #[test]
    fn a_slot_reused_after_a_gap_holds_only_the_new_second() {
        let mut stats = CallStats::default();
        stats.record(1_000, "1.0.0", us(100), false);
        let later = 1_000 + u64::from(WINDOW);
        stats.record(later, "1.0.0", us(100), true);
        let series = stats.series(later + 1, 10);
        let second = series.versions[0].seconds.last().unwrap().as_ref().unwrap();
        assert_eq!((second.calls(), second.errors), (1, 0));
    }

    #[test]
    fn idle_rings_are_dropped() {
        let mut stats = CallStats::default();
        stats.record(1_000, "0.9.0", us(100), true);
        stats.record(1_000, "1.0.0", us(100), true);
        stats.record(1_000 + u64::from(WINDOW) - 1, "2.0.0", us(100), true);
        assert_eq!(stats.rings(), 3);
        // A whole window later, only what had a call within it stays.
        stats.record(1_000 + u64::from(WINDOW), "2.0.0", us(100), true);
        assert_eq!(stats.rings(), 1);
    }

    #[test]
    fn reading_drops_the_rings_of_a_runtime_whose_calls_stopped() {
        let mut stats = CallStats::default();
        stats.record(1_000, "1.0.0", us(100), true);
        assert_eq!(stats.series(1_001, 10).versions.len(), 1);
        assert_eq!(stats.rings(), 1);
        assert!(
            stats
                .series(1_000 + u64::from(WINDOW), 10)
                .versions
                .is_empty()
        );
        assert_eq!(stats.rings(), 0);
    }

    #[test]
    fn the_clock_counts_unix_seconds() {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now().abs_diff(unix) <= 1);
        let mut stats = CallStats::default();
        let at = now();
        stats.record(at, "1.0.0", us(10), true);
        // Recorded in the current second, so not yet in a series.
        assert!(stats.series(at, 5).versions.is_empty());
        assert_eq!(stats.series(at + 1, 5).versions.len(), 1);
    }
}
