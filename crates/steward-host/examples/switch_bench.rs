//! Version switches under load: the real `echo` runtime behind an
//! [`Aggregate`] of versions 1.0.0 and 2.0.0, 64 concurrent callers for
//! 10 s, the version switched every 500 ms, once per transition mode —
//! next to a control in the same run: the same aggregate, load and time
//! with no switch at all (`mode=control`), measured first.
//!
//! ```text
//! cargo run --release -p steward-host --example switch_bench
//! ```
//!
//! One line per mode: `workload=switch lib=steward mode=control|…` with
//! calls/s, failed calls, call latency p50/p99/max, the number of
//! switches, the longest switch, the longest window in which no call
//! completed (`max_gap_ms`, over the whole run, so it bounds every
//! switch's gap), the 99.9th percentile of the windows between
//! consecutive completions (`p999_gap_ms`), the longest window that
//! overlaps a switch (`switch_gap_ms`: a switch's own stall, apart from
//! the ones a busy machine makes between switches), and for the
//! switching modes the gaps as ratios to the control's (`max_gap_x_control`,
//! `switch_gap_x_control` against the control's `max_gap_ms`,
//! `p999_gap_x_control`): what a switch adds beyond what the scheduler
//! does to the same load anyway.
//!
//! `BENCH_GAPS=1` also prints each mode's longest windows and the switch
//! each overlaps, if any.
//!
//! `BENCH_THREADS=N` sets the host's tokio worker threads (default: one per
//! core). With the default, the host's workers and the echo process share
//! 2 cores, and the OS scheduler alone makes windows of a few ms without a
//! completed call, switch or no switch.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly when its setup fails"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use steward_host::{
    Aggregate, AggregateConfig, Event, MemoryStorage, ProcessConfig, ProcessHost, RuntimeHost,
    TransitionMode,
};
use steward_protocol::{Body, CallRequest, Value};

mod common;
use common::{AS_RUNTIME, echo_binary, micros, millis, percentile};

const CALLERS: usize = 64;
const RUN: Duration = Duration::from_secs(10);
const SWITCH_EVERY: Duration = Duration::from_millis(500);
const WARM_UP: Duration = Duration::from_secs(2);
/// Windows starting this soon after the callers are spawned are not
/// counted: each caller's first call is on its way then.
const SETTLE: Duration = Duration::from_millis(100);
/// Windows longer than this are kept with their time, for `BENCH_GAPS`.
const LONG_GAP: Duration = Duration::from_millis(1);

fn main() {
    common::serve_if_runtime();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Ok(threads) = std::env::var("BENCH_THREADS") {
        builder.worker_threads(
            threads
                .parse()
                .expect("BENCH_THREADS must be a positive integer"),
        );
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    runtime
        .block_on(runtime.spawn(async {
            let echo = echo_binary();
            let explain = std::env::var_os("BENCH_GAPS").is_some();
            // Unmeasured: the first run of a process is slower (page
            // faults, lazy binding, allocator growth), and the control
            // must not pay for that alone.
            run(&echo, None, WARM_UP).await;
            let control = run(&echo, None, RUN).await;
            println!("{}", control.line(None));
            if explain {
                print!("{}", control.explain_gaps());
            }
            for mode in [
                TransitionMode::MakeBeforeBreak,
                TransitionMode::StopThenStart,
            ] {
                let outcome = run(&echo, Some(mode), RUN).await;
                println!("{}", outcome.line(Some(&control)));
                if explain {
                    print!("{}", outcome.explain_gaps());
                }
            }
        }))
        .expect("bench task");
}

fn aggregate(echo: &std::path::Path, mode: TransitionMode) -> Aggregate {
    let storage = Arc::new(MemoryStorage::new());
    let versions = ["1.0.0", "2.0.0"].map(|version| {
        let config =
            ProcessConfig::new("echo", version, echo).args([AS_RUNTIME, "--version", version]);
        let host: Arc<dyn RuntimeHost> = Arc::new(ProcessHost::new(config, storage.clone()));
        (version, host)
    });
    let config = AggregateConfig {
        mode,
        ..AggregateConfig::default()
    };
    Aggregate::new("echo", versions, config).expect("aggregate")
}

/// Nanoseconds since `origin`, for lock-free "last completion" tracking.
fn since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What one mode's run measured.
struct Outcome {
    /// `None` for the control (no switches).
    mode: Option<TransitionMode>,
    elapsed: Duration,
    /// Call latencies, sorted.
    latencies: Vec<Duration>,
    failed: u64,
    switches: u32,
    max_switch: Duration,
    /// The windows between consecutive completions, sorted.
    gaps: Vec<Duration>,
    /// The windows longer than [`LONG_GAP`], each with when it ended
    /// since the start, longest first.
    long_gaps: Vec<(Duration, Duration)>,
    /// Each switch's start and end, since the start.
    switch_windows: Vec<(Duration, Duration)>,
    /// The aggregate's events as the bench saw them, since the start.
    events: Vec<(Duration, String)>,
}

impl Outcome {
    fn max_gap(&self) -> Duration {
        self.gaps.last().copied().unwrap_or_default()
    }

    fn p999_gap(&self) -> Duration {
        percentile(&self.gaps, 0.999)
    }

    /// The longest window that overlaps a switch (zero for the control).
    fn switch_gap(&self) -> Duration {
        self.long_gaps
            .iter()
            .filter(|&&(end, gap)| {
                let start = end.saturating_sub(gap);
                self.switch_windows
                    .iter()
                    .any(|&(s, e)| start < e && end > s)
            })
            .map(|&(_, gap)| gap)
            .max()
            .unwrap_or_default()
    }

    /// The longest windows, and the switch each overlaps (`BENCH_GAPS=1`):
    /// tells a switch's stall from the scheduler's.
    fn explain_gaps(&self) -> String {
        let mut out = String::new();
        for &(end, gap) in self.long_gaps.iter().take(8) {
            let start = end.saturating_sub(gap);
            let during = self
                .switch_windows
                .iter()
                .position(|&(s, e)| start < e && end > s)
                .map_or_else(
                    || "no switch".to_owned(),
                    |i| {
                        let (s, e) = self.switch_windows[i];
                        format!(
                            "switch {i} ({:.2}..{:.2} ms), gap starts {:+.2} ms into it",
                            millis(s),
                            millis(e),
                            millis(start) - millis(s)
                        )
                    },
                );
            let near: Vec<String> = self
                .events
                .iter()
                .filter(|(at, _)| *at + SWITCH_EVERY / 10 > start && *at < end + SWITCH_EVERY / 10)
                .map(|(at, what)| format!("{what} at {:+.2} ms", millis(*at) - millis(start)))
                .collect();
            out.push_str(&format!(
                "  gap {:.2} ms ending at {:.1} ms: {during}; events from the gap's start: [{}]\n",
                millis(gap),
                millis(end),
                near.join(", ")
            ));
        }
        out
    }

    /// The result line; with `control`, the gaps as ratios to its.
    fn line(&self, control: Option<&Outcome>) -> String {
        let mode = match self.mode {
            None => "control",
            Some(TransitionMode::MakeBeforeBreak) => "make-before-break",
            Some(TransitionMode::StopThenStart) => "stop-then-start",
        };
        let ratios = control.map_or_else(String::new, |control| {
            format!(
                " max_gap_x_control={:.2} switch_gap_x_control={:.2} p999_gap_x_control={:.2}",
                self.max_gap().as_secs_f64() / control.max_gap().as_secs_f64(),
                self.switch_gap().as_secs_f64() / control.max_gap().as_secs_f64(),
                self.p999_gap().as_secs_f64() / control.p999_gap().as_secs_f64(),
            )
        });
        let latencies = &self.latencies;
        format!(
            "workload=switch lib=steward mode={mode} callers={CALLERS} duration_s={:.2} calls={} calls_per_sec={:.0} \
             failed_calls={} p50_us={:.1} p99_us={:.1} max_us={:.1} switches={} max_switch_ms={:.2} \
             max_gap_ms={:.2} p999_gap_ms={:.3} switch_gap_ms={:.2}{ratios}",
            self.elapsed.as_secs_f64(),
            latencies.len(),
            latencies.len() as f64 / self.elapsed.as_secs_f64(),
            self.failed,
            micros(percentile(latencies, 0.50)),
            micros(percentile(latencies, 0.99)),
            micros(*latencies.last().expect("some calls")),
            self.switches,
            millis(self.max_switch),
            millis(self.max_gap()),
            millis(self.p999_gap()),
            millis(self.switch_gap()),
        )
    }
}

/// Runs the load for [`RUN`]; with a `mode`, switches every
/// [`SWITCH_EVERY`], without (the control) never.
async fn run(echo: &std::path::Path, mode: Option<TransitionMode>, time: Duration) -> Outcome {
    let aggregate = aggregate(echo, mode.unwrap_or_default());
    aggregate.set_version("1.0.0").await.expect("first version");
    let origin = Instant::now();
    let mut event_stream = aggregate.watch_events();
    let recorder = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Ok(event) = event_stream.recv().await {
            let what = match &event {
                Event::Started { version, .. } => format!("started {version}"),
                Event::Stopped { version, .. } => format!("stopped {version}"),
                Event::FailedToStart { version, .. } => format!("failed {version}"),
                Event::Updated { version, .. } => format!("updated {version}"),
            };
            events.push((origin.elapsed(), what));
        }
        events
    });
    let last_done = Arc::new(AtomicU64::new(since(origin)));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let args = Value::encode(&"a 64-byte-ish argument for the echo runtime, as in call_bench")
        .expect("args");
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (aggregate, last_done, failed, stop) = (
                aggregate.clone(),
                last_done.clone(),
                failed.clone(),
                stop.clone(),
            );
            let request = Body::RuntimeCallRequest(CallRequest {
                method: "echo".into(),
                args: args.clone(),
            });
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(100_000);
                let mut gaps = Vec::with_capacity(100_000);
                let mut longest = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let result = aggregate.call(request.clone()).await;
                    latencies.push(t0.elapsed());
                    if result.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    let now = since(origin);
                    let previous = last_done.swap(now, Ordering::Relaxed);
                    let gap = Duration::from_nanos(now.saturating_sub(previous));
                    // Neither the first windows nor the last count: a
                    // window ending after the stop is the drain of the
                    // calls still in flight, each caller leaving after its
                    // own, not a window of the load.
                    if Duration::from_nanos(previous) < SETTLE || stop.load(Ordering::Relaxed) {
                        continue;
                    }
                    gaps.push(gap);
                    if gap > LONG_GAP {
                        longest.push((Duration::from_nanos(now), gap));
                    }
                }
                (latencies, gaps, longest)
            })
        })
        .collect();

    let mut switches = 0u32;
    let mut max_switch = Duration::ZERO;
    let mut switch_windows = Vec::new();
    let started = Instant::now();
    let mut next_switch = started + SWITCH_EVERY;
    while mode.is_some() && next_switch < started + time {
        tokio::time::sleep_until(next_switch.into()).await;
        let target = if switches.is_multiple_of(2) {
            "2.0.0"
        } else {
            "1.0.0"
        };
        let t0 = Instant::now();
        aggregate.set_version(target).await.expect("switch");
        max_switch = max_switch.max(t0.elapsed());
        switch_windows.push((t0 - origin, origin.elapsed()));
        switches += 1;
        next_switch += SWITCH_EVERY;
    }
    tokio::time::sleep_until((started + time).into()).await;
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, mut gaps, mut longest) = (Vec::new(), Vec::new(), Vec::new());
    for caller in callers {
        let (caller_latencies, caller_gaps, caller_longest) = caller.await.expect("caller");
        latencies.extend(caller_latencies);
        gaps.extend(caller_gaps);
        longest.extend(caller_longest);
    }
    longest.sort_unstable_by_key(|&(_, gap)| std::cmp::Reverse(gap));
    let elapsed = started.elapsed();
    aggregate.stop().await;
    drop(aggregate);
    let events = recorder.await.expect("event recorder");
    latencies.sort_unstable();
    gaps.sort_unstable();
    Outcome {
        mode,
        elapsed,
        latencies,
        failed: failed.load(Ordering::Relaxed),
        switches,
        max_switch,
        gaps,
        long_gaps: longest,
        switch_windows,
        events,
    }
}
