//! Liveness against real runtime processes (`steward-test-runtime`): a
//! runtime stopped with SIGSTOP is found hung, killed and restarted; one
//! whose calls are all slow, or that refuses pings as busy, is left alone;
//! a healthy one gets no extra events. Pings every 100 ms, hung after 3
//! misses of 100 ms each ([`FAST`]: to find a hang quickly) or of 500 ms
//! each ([`TOLERANT`]: where the test asserts that nothing is killed, so
//! that a loaded machine's stalls cannot fail it).
//!
//! Real processes mean real time: every wait is bounded and waits for
//! something observable (an event, an answer, a counter the runtime
//! reports); none sleeps hoping something happened.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_host::{
    Error, Event, ExitReason, Liveness, MemoryStorage, ProcessConfig, ProcessHost, ProcessStatus,
    RuntimeHost,
};
use steward_protocol::{Body, CallRequest, ErrorBody, Value};
use tokio::sync::broadcast;

/// The bound on every wait for something that should happen.
const WAIT: Duration = Duration::from_secs(20);

const FAST: Liveness = Liveness {
    interval: Duration::from_millis(100),
    timeout: Duration::from_millis(100),
    failures: 3,
};

/// Still 10 pings a second, but 1.5 s of silence before a kill. Pings that
/// waited behind slow calls (3 s of them in these tests) would still miss.
const TOLERANT: Liveness = Liveness {
    timeout: Duration::from_millis(500),
    ..FAST
};

/// The test runtime with `liveness` and `args` (after `--version 1.0.0`).
fn host(liveness: Liveness, args: &[&str]) -> ProcessHost {
    let mut all = vec!["--version", "1.0.0"];
    all.extend_from_slice(args);
    let mut config: ProcessConfig = support::config("live", "1.0.0", &all);
    config.liveness = liveness;
    ProcessHost::new(config, Arc::new(MemoryStorage::new()))
}

/// Calls `method` with JSON `args`, answered within [`WAIT`].
async fn call(host: &ProcessHost, method: &str, args: serde_json::Value) -> Result<Value, Error> {
    let body = Body::RuntimeCallRequest(CallRequest {
        method: method.into(),
        args: Value::encode(&args).unwrap(),
    });
    match tokio::time::timeout(WAIT, host.call(body)).await {
        Ok(Ok(Body::RuntimeCallResponse(response))) => Ok(response.result),
        Ok(Ok(other)) => panic!("{method} answered {other:?}"),
        Ok(Err(error)) => Err(error),
        Err(_) => panic!("{method} not answered within {WAIT:?}"),
    }
}

async fn call_ok<T: serde::de::DeserializeOwned>(host: &ProcessHost, method: &str) -> T {
    call(host, method, serde_json::Value::Null)
        .await
        .unwrap_or_else(|e| panic!("{method} failed: {e}"))
        .decode()
        .unwrap()
}

async fn expect_started(events: &mut broadcast::Receiver<Event>) {
    match support::next_event(events).await {
        Event::Started { .. } => {}
        other => panic!("expected Started, got {other:?}"),
    }
}

fn pending_events(events: &mut broadcast::Receiver<Event>) -> Vec<Event> {
    let mut found = Vec::new();
    while let Ok(event) = events.try_recv() {
        found.push(event);
    }
    found
}

/// Sends `signal` (`STOP`, ...) to `pid` with the `kill` command.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The process state letter of `pid` (`T` for stopped), if it exists.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 2..)?.chars().next()
}

/// A runtime stopped with SIGSTOP answers nothing: after 3 missed pings
/// (about 0.4 s) it is reported `Hung` and killed with its group, calls in
/// flight fail saying so, and a new process serves. (The host used to
/// never ping: a stopped runtime stayed "running" and every call waited
/// for its deadline, forever.)
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_runtime_is_found_hung_and_restarted() {
    let host = host(FAST, &[]);
    let mut events = host.watch_events();
    host.start().unwrap();
    expect_started(&mut events).await;
    let pid: u32 = call_ok(&host, "pid").await;
    let in_flight = {
        let host = host.clone();
        tokio::spawn(async move { call(&host, "sleep", serde_json::json!({"ms": 60_000})).await })
    };
    // The sleep has begun before the runtime stops.
    let deadline = Instant::now() + WAIT;
    loop {
        let sleeps: serde_json::Value = call_ok(&host, "sleeps").await;
        if sleeps["running"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the sleep never began");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    signal(pid, "STOP");
    let stopped_at = Instant::now();
    let reason = match support::next_event(&mut events).await {
        Event::Stopped { reason, .. } => reason,
        other => panic!("expected Stopped, got {other:?}"),
    };
    let took = stopped_at.elapsed();
    assert_eq!(
        reason,
        ExitReason::Hung {
            missed: 3,
            status: ProcessStatus::Signal(9)
        }
    );
    assert!(reason.is_failure());
    // interval + 3 × timeout is 0.4 s; the rest is slack for a loaded
    // machine, far below any call deadline.
    assert!(took < Duration::from_secs(5), "found hung after {took:?}");
    match tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap()
    {
        Err(Error::Lost { reason, .. }) => assert!(reason.contains("hung"), "{reason}"),
        other => panic!("the call in flight answered {other:?}"),
    }

    expect_started(&mut events).await;
    let new_pid: u32 = call_ok(&host, "pid").await;
    assert_ne!(new_pid, pid);
    assert_eq!(state(pid), None, "the stopped process is killed and reaped");
    let echoed: String = call(&host, "echo", serde_json::json!("again"))
        .await
        .unwrap()
        .decode()
        .unwrap();
    assert_eq!(echoed, "again");
    tokio::time::timeout(WAIT, host.stop()).await.unwrap();
}

/// A runtime serving one call at a time, with three 1 s sleeps queued on
/// it, is saturated for 3 s (30 ping intervals), yet answers its pings: it
/// is not killed, every sleep completes, nothing is reported.
#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_busy_with_slow_calls_is_not_killed() {
    let host = host(TOLERANT, &["--max-concurrent", "1"]);
    let mut events = host.watch_events();
    host.start().unwrap();
    expect_started(&mut events).await;

    let sleeps: Vec<_> = (0..3)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { call(&host, "sleep", serde_json::json!({"ms": 1000})).await })
        })
        .collect();
    for sleep in sleeps {
        let slept = tokio::time::timeout(WAIT, sleep).await.unwrap().unwrap();
        assert!(slept.is_ok(), "a slow call failed: {slept:?}");
    }
    let pings: u64 = call_ok(&host, "pings").await;
    assert!(pings >= 10, "only {pings} pings answered in 3 s");
    assert_eq!(pending_events(&mut events), Vec::new());
    tokio::time::timeout(WAIT, host.stop()).await.unwrap();
}

/// A runtime with no room for one more request refuses pings as busy: a
/// refusal is an answer, so it is not killed while its one call runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_refusing_pings_as_busy_is_not_killed() {
    let host = host(TOLERANT, &["--max-concurrent", "1", "--max-queued", "0"]);
    let mut events = host.watch_events();
    host.start().unwrap();
    expect_started(&mut events).await;

    let sleep = {
        let host = host.clone();
        tokio::spawn(async move { call(&host, "sleep", serde_json::json!({"ms": 1500})).await })
    };
    // Full: another call is refused as busy while the sleep runs.
    let deadline = Instant::now() + WAIT;
    loop {
        match call(&host, "echo", serde_json::json!(1)).await {
            Err(Error::Protocol(steward_protocol::Error::Remote(body)))
                if body.code == ErrorBody::CODE_BUSY =>
            {
                break;
            }
            Ok(_) => assert!(Instant::now() < deadline, "the runtime never filled up"),
            Err(other) => panic!("echo failed: {other}"),
        }
    }
    let slept = tokio::time::timeout(WAIT, sleep).await.unwrap().unwrap();
    assert!(slept.is_ok(), "the slow call failed: {slept:?}");
    assert_eq!(pending_events(&mut events), Vec::new());
    tokio::time::timeout(WAIT, host.stop()).await.unwrap();
}

/// A healthy runtime pinged every 100 ms: after it answered 10 pings, no
/// event but its start has been reported, and its stop is an ordinary one.
#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_runtime_gets_no_extra_events() {
    let host = host(TOLERANT, &[]);
    let mut events = host.watch_events();
    host.start().unwrap();
    expect_started(&mut events).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let pings: u64 = call_ok(&host, "pings").await;
        if pings >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "only {pings} pings answered");
        // Pacing between polls of an observable counter, not a wait for
        // something to have happened.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pending_events(&mut events), Vec::new());
    tokio::time::timeout(WAIT, host.stop()).await.unwrap();
    match support::next_event(&mut events).await {
        Event::Stopped {
            reason: ExitReason::Stopped { status },
            ..
        } => assert!(status.success(), "{status}"),
        other => panic!("expected an ordinary stop, got {other:?}"),
    }
    assert_eq!(pending_events(&mut events), Vec::new());
}
