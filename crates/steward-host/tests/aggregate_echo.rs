//! The aggregate with the real `echo` runtime: version switches while calls
//! flow, in both transition modes. Real processes, so real time; every wait
//! is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use steward_host::{
    Aggregate, AggregateConfig, MemoryStorage, ProcessHost, RuntimeHost, TransitionMode,
};
use steward_protocol::{Body, CallRequest, CallResponse, Value};

const CALLERS: usize = 8;
const RUN: Duration = Duration::from_secs(5);
const SWITCHES: u32 = 20;

fn echo_aggregate(mode: TransitionMode) -> Aggregate {
    let storage = Arc::new(MemoryStorage::new());
    let versions = ["1.0.0", "2.0.0"].map(|version| {
        let config = support::config("echo", version, &["--version", version]);
        let host: Arc<dyn RuntimeHost> = Arc::new(ProcessHost::new(config, storage.clone()));
        (version, host)
    });
    let config = AggregateConfig {
        mode,
        // Longer than any restart: callers in a stop-then-start gap wait.
        call_wait: Duration::from_secs(20),
        ..AggregateConfig::default()
    };
    Aggregate::new("echo", versions, config).unwrap()
}

fn version_call() -> Body {
    Body::RuntimeCallRequest(CallRequest {
        method: "version".into(),
        args: Value::null(),
    })
}

/// What one load run saw.
struct Load {
    calls: u64,
    failed: u64,
    /// Versions that answered, in order of first appearance.
    versions_seen: Vec<String>,
    /// The longest time in which no call completed.
    max_gap: Duration,
}

/// `CALLERS` tasks call `version` in a loop while the version is switched
/// `SWITCHES` times over `RUN`.
async fn switch_under_load(mode: TransitionMode) -> Load {
    let aggregate = echo_aggregate(mode);
    aggregate.set_version("1.0.0").await.unwrap();
    let origin = Instant::now();
    let last_done = Arc::new(AtomicU64::new(0));
    let max_gap = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (aggregate, last_done, max_gap, stop) = (
                aggregate.clone(),
                last_done.clone(),
                max_gap.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let (mut calls, mut failed, mut versions) = (0u64, 0u64, Vec::<String>::new());
                while !stop.load(Ordering::Relaxed) {
                    // The call's own deadline: a hang fails the test.
                    let answer = tokio::time::timeout(
                        Duration::from_secs(30),
                        aggregate.call(version_call()),
                    )
                    .await
                    .expect("no call may hang");
                    calls += 1;
                    match answer {
                        Ok(Body::RuntimeCallResponse(CallResponse { result })) => {
                            let version: String = result.decode().unwrap();
                            if versions.last() != Some(&version) {
                                versions.push(version);
                            }
                        }
                        other => {
                            eprintln!("failed call: {other:?}");
                            failed += 1;
                        }
                    }
                    let now = u64::try_from(origin.elapsed().as_nanos()).unwrap();
                    let previous = last_done.swap(now, Ordering::Relaxed);
                    max_gap.fetch_max(now.saturating_sub(previous), Ordering::Relaxed);
                }
                (calls, failed, versions)
            })
        })
        .collect();

    let every = RUN / SWITCHES;
    for switch in 0..SWITCHES {
        tokio::time::sleep(every).await;
        let target = if switch.is_multiple_of(2) {
            "2.0.0"
        } else {
            "1.0.0"
        };
        tokio::time::timeout(Duration::from_secs(30), aggregate.set_version(target))
            .await
            .expect("a switch within 30 s")
            .expect("switch succeeds");
        assert_eq!(aggregate.active_version().as_deref(), Some(target));
    }
    stop.store(true, Ordering::Relaxed);
    let mut load = Load {
        calls: 0,
        failed: 0,
        versions_seen: Vec::new(),
        max_gap: Duration::ZERO,
    };
    for caller in callers {
        let (calls, failed, versions) = caller.await.unwrap();
        load.calls += calls;
        load.failed += failed;
        if versions.len() > load.versions_seen.len() {
            load.versions_seen = versions;
        }
    }
    load.max_gap = Duration::from_nanos(max_gap.load(Ordering::Relaxed));
    aggregate.stop().await;
    load
}

/// Make-before-break: 20 switches under 8 concurrent callers, zero failed
/// calls, and the callers really saw both versions alternate.
#[tokio::test(flavor = "multi_thread")]
async fn make_before_break_switches_lose_no_call() {
    let load = switch_under_load(TransitionMode::MakeBeforeBreak).await;
    eprintln!(
        "make-before-break: {} calls, {} failed, longest gap without a completed call {:?}",
        load.calls, load.failed, load.max_gap
    );
    assert_eq!(load.failed, 0);
    assert!(load.calls > 1000, "only {} calls", load.calls);
    assert!(
        load.versions_seen.len() >= 10,
        "versions did not alternate: {:?}",
        load.versions_seen
    );
}

/// Stop-then-start: calls in the gap wait for the new version (their
/// deadline exceeds a restart), so no call fails; the gap is reported.
#[tokio::test(flavor = "multi_thread")]
async fn stop_then_start_calls_wait_out_the_gap() {
    let load = switch_under_load(TransitionMode::StopThenStart).await;
    eprintln!(
        "stop-then-start: {} calls, {} failed, longest gap without a completed call {:?}",
        load.calls, load.failed, load.max_gap
    );
    assert_eq!(load.failed, 0);
    assert!(load.calls > 1000, "only {} calls", load.calls);
    assert!(load.versions_seen.len() >= 10, "{:?}", load.versions_seen);
    // There is a real gap (the old process stops before the new starts).
    assert!(
        load.max_gap > Duration::from_micros(500),
        "{:?}",
        load.max_gap
    );
}

/// A → B → A with real processes: each switch starts the target fresh and
/// the answers follow the active version.
#[tokio::test(flavor = "multi_thread")]
async fn switch_there_and_back() {
    let aggregate = echo_aggregate(TransitionMode::MakeBeforeBreak);
    for version in ["1.0.0", "2.0.0", "1.0.0"] {
        aggregate.set_version(version).await.unwrap();
        let answer = aggregate.call(version_call()).await.unwrap();
        let Body::RuntimeCallResponse(CallResponse { result }) = answer else {
            panic!("unexpected answer {answer:?}");
        };
        assert_eq!(result.decode::<String>().unwrap(), version);
    }
    aggregate.stop().await;
}
