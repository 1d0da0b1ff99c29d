//! Version switches under load: the real `echo` runtime behind an
//! [`Aggregate`] of versions 1.0.0 and 2.0.0, 64 concurrent callers for
//! 10 s, the version switched every 500 ms, once per transition mode.
//!
//! ```text
//! cargo run --release -p steward-host --example switch_bench
//! ```
//!
//! One line per mode: `workload=switch lib=steward mode=…` with calls/s,
//! failed calls, call latency p50/p99/max, the number of switches, the
//! longest switch, and the longest window in which no call completed
//! (`max_gap_ms`, over the whole run, so it bounds every switch's gap).
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
    Aggregate, AggregateConfig, MemoryStorage, ProcessConfig, ProcessHost, RuntimeHost,
    TransitionMode,
};
use steward_protocol::{Body, CallRequest, Value};

mod common;
use common::{AS_RUNTIME, echo_binary, micros, millis, percentile};

const CALLERS: usize = 64;
const RUN: Duration = Duration::from_secs(10);
const SWITCH_EVERY: Duration = Duration::from_millis(500);

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
            for mode in [
                TransitionMode::MakeBeforeBreak,
                TransitionMode::StopThenStart,
            ] {
                println!("{}", run(&echo, mode).await);
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

async fn run(echo: &std::path::Path, mode: TransitionMode) -> String {
    let aggregate = aggregate(echo, mode);
    aggregate.set_version("1.0.0").await.expect("first version");
    let origin = Instant::now();
    let last_done = Arc::new(AtomicU64::new(since(origin)));
    let max_gap = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let args = Value::encode(&"a 64-byte-ish argument for the echo runtime, as in call_bench")
        .expect("args");
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (aggregate, last_done, max_gap, failed, stop) = (
                aggregate.clone(),
                last_done.clone(),
                max_gap.clone(),
                failed.clone(),
                stop.clone(),
            );
            let request = Body::RuntimeCallRequest(CallRequest {
                method: "echo".into(),
                args: args.clone(),
            });
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(100_000);
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let result = aggregate.call(request.clone()).await;
                    latencies.push(t0.elapsed());
                    if result.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    let now = since(origin);
                    let previous = last_done.swap(now, Ordering::Relaxed);
                    max_gap.fetch_max(now.saturating_sub(previous), Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();

    let mut switches = 0u32;
    let mut max_switch = Duration::ZERO;
    let started = Instant::now();
    let mut next_switch = started + SWITCH_EVERY;
    while next_switch < started + RUN {
        tokio::time::sleep_until(next_switch.into()).await;
        let target = if switches.is_multiple_of(2) {
            "2.0.0"
        } else {
            "1.0.0"
        };
        let t0 = Instant::now();
        aggregate.set_version(target).await.expect("switch");
        max_switch = max_switch.max(t0.elapsed());
        switches += 1;
        next_switch += SWITCH_EVERY;
    }
    tokio::time::sleep_until((started + RUN).into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for caller in callers {
        latencies.extend(caller.await.expect("caller"));
    }
    let elapsed = started.elapsed();
    aggregate.stop().await;
    latencies.sort_unstable();
    let mode = match mode {
        TransitionMode::MakeBeforeBreak => "make-before-break",
        TransitionMode::StopThenStart => "stop-then-start",
    };
    format!(
        "workload=switch lib=steward mode={mode} callers={CALLERS} duration_s={:.2} calls={} calls_per_sec={:.0} \
         failed_calls={} p50_us={:.1} p99_us={:.1} max_us={:.1} switches={switches} max_switch_ms={:.2} max_gap_ms={:.2}",
        elapsed.as_secs_f64(),
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        failed.load(Ordering::Relaxed),
        micros(percentile(&latencies, 0.50)),
        micros(percentile(&latencies, 0.99)),
        micros(*latencies.last().expect("some calls")),
        millis(max_switch),
        max_gap.load(Ordering::Relaxed) as f64 / 1e6,
    )
}
