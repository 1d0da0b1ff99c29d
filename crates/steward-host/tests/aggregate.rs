//! [`Aggregate`] against the in-process fake [`RuntimeHost`] of
//! `steward_host::test_util` ([`FakeRuntime`]): every rule of the aggregate's contract (issue 5),
//! under paused time, with no real process.
//!
//! Every wait is explicit: on a fake's state (a `watch`), on a counter
//! through [`until`] (a bounded number of yields, for conditions that need
//! no timer), or a `tokio::time::timeout` (bounded under paused time: when
//! nothing else can happen, the clock jumps to the deadline). The few
//! paused-time sleeps are there to let virtual time pass on purpose (a call
//! that must be seen waiting), never to hope that something happened.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use steward_host::test_util::{FAKE_ID as ID, FakeLog as Log, FakeRuntime, FakeState as State};
use steward_host::{
    Aborted, Aggregate, AggregateConfig, Error, Event, OnUnknownVersion, RuntimeHost,
    TransitionMode,
};
use steward_protocol::{Body, CallRequest, Value};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, timeout};

/// A bound for waits on things that must happen without a timer.
const WAIT: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// An aggregate `ID` of `fakes` (by their versions).
fn aggregate(fakes: &[&Arc<FakeRuntime>], config: AggregateConfig) -> Aggregate {
    let versions: Vec<(Arc<str>, Arc<dyn RuntimeHost>)> = fakes
        .iter()
        .map(|f| (f.version().clone(), f.host()))
        .collect();
    match Aggregate::new(ID, versions, config) {
        Ok(aggregate) => aggregate,
        Err(error) => panic!("Aggregate::new: {error}"),
    }
}

fn stop_then_start() -> AggregateConfig {
    AggregateConfig {
        mode: TransitionMode::StopThenStart,
        ..AggregateConfig::default()
    }
}

fn request() -> Body {
    Body::RuntimeCallRequest(CallRequest {
        method: "version".to_owned(),
        args: Value::null(),
    })
}

/// The version that answered a fake's call.
fn answered_by(result: Result<Body, Error>) -> String {
    match result {
        Ok(Body::RuntimeCallResponse(response)) => response.result.decode::<String>().unwrap(),
        Ok(other) => panic!("unexpected answer {other:?}"),
        Err(error) => panic!("call failed: {error}"),
    }
}

/// Calls the aggregate and returns the version that answered.
async fn call(aggregate: &Aggregate) -> String {
    answered_by(
        timeout(WAIT, aggregate.call(request()))
            .await
            .expect("call never returned"),
    )
}

/// Yields until `condition` holds; panics after many yields. Only for
/// conditions that need no timer (yielding does not let paused time pass).
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if condition() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened: {what}");
}

/// Lets every task run until nothing is ready (no timer fires).
async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

/// The events waiting in `events` (after letting the forwarders run).
async fn pending_events(events: &mut broadcast::Receiver<Event>) -> Vec<Event> {
    settle().await;
    let mut found = Vec::new();
    loop {
        match events.try_recv() {
            Ok(event) => found.push(event),
            Err(TryRecvError::Empty) => return found,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
}

fn kinds(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let kind = match e {
                Event::Started { .. } => "started",
                Event::FailedToStart { .. } => "failed_to_start",
                Event::Stopped { .. } => "stopped",
                Event::Updated { .. } => "updated",
            };
            format!("{kind} {}", e.version())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// new()
// ---------------------------------------------------------------------------

/// `new()` with no version fails with `Error::NoVersions`.
#[tokio::test(start_paused = true)]
async fn new_needs_at_least_one_version() {
    let none: Vec<(&str, Arc<dyn RuntimeHost>)> = Vec::new();
    let Err(error) = Aggregate::new(ID, none, AggregateConfig::default()) else {
        panic!("an aggregate without versions was made");
    };
    assert!(matches!(error, Error::NoVersions { .. }), "{error:?}");
}

/// Every sub-runtime must have the aggregate's id: otherwise
/// `Error::IdMismatch`, naming both ids (and the version).
#[tokio::test(start_paused = true)]
async fn new_refuses_a_sub_runtime_with_another_id() {
    let log = Log::default();
    let good = FakeRuntime::new("1", &log);
    let bad = FakeRuntime::with_id("other", "2", &log);
    let Err(error) = Aggregate::new(
        ID,
        [("1", good.host()), ("2", bad.host())],
        AggregateConfig::default(),
    ) else {
        panic!("an aggregate with a foreign sub-runtime was made");
    };
    let Error::IdMismatch {
        aggregate,
        version,
        runtime,
    } = &error
    else {
        panic!("expected IdMismatch, got {error:?}");
    };
    assert_eq!(&**aggregate, ID);
    assert_eq!(&**version, "2");
    assert_eq!(runtime, "other");
    let message = error.to_string();
    assert!(
        message.contains("\"rt\"") && message.contains("\"other\""),
        "{message}"
    );
    assert_eq!(good.start_calls() + bad.start_calls(), 0);
}

/// `new()` subscribes to every version's events, starts nothing and
/// activates nothing; `id()` and `versions()` answer.
#[tokio::test(start_paused = true)]
async fn new_starts_nothing_and_has_no_active_version() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    settle().await;
    assert_eq!(agg.id(), ID);
    assert_eq!(agg.active_version(), None);
    assert_eq!(agg.versions(), ["1", "2"]);
    for fake in [&a, &b] {
        assert_eq!(fake.start_calls(), 0);
        assert_eq!(fake.stop_calls(), 0);
        assert_eq!(fake.state(), State::Idle);
        assert!(
            fake.subscribers() >= 1,
            "version {} not watched",
            fake.version()
        );
    }
    assert!(log.entries().is_empty(), "{:?}", log.entries());
}

// ---------------------------------------------------------------------------
// No active version
// ---------------------------------------------------------------------------

/// Without an active version `info()` and `abort()` fail at once with
/// `NoActiveVersion` (and abort reaches no sub-runtime).
#[tokio::test(start_paused = true)]
async fn info_and_abort_without_active_version_fail() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let agg = aggregate(&[&a], AggregateConfig::default());
    let started = Instant::now();
    let info = timeout(WAIT, agg.info()).await.unwrap();
    assert!(
        matches!(info, Err(Error::NoActiveVersion { ref runtime }) if &**runtime == ID),
        "{info:?}"
    );
    let abort = timeout(WAIT, agg.abort(true)).await.unwrap();
    assert!(
        matches!(abort, Err(Error::NoActiveVersion { .. })),
        "{abort:?}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(a.aborts().is_empty());
}

/// Without an active version `call()` waits `AggregateConfig::call_wait`
/// (and `call_within` its own wait), then fails with `NoActiveVersion`.
#[tokio::test(start_paused = true)]
async fn call_without_active_version_waits_then_fails() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let agg = aggregate(
        &[&a],
        AggregateConfig {
            call_wait: Duration::from_secs(5),
            ..AggregateConfig::default()
        },
    );
    let started = Instant::now();
    let result = timeout(WAIT, agg.call(request())).await.unwrap();
    assert!(
        matches!(result, Err(Error::NoActiveVersion { .. })),
        "{result:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(5));

    let started = Instant::now();
    let result = timeout(WAIT, agg.call_within(request(), Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(
        matches!(result, Err(Error::NoActiveVersion { .. })),
        "{result:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(a.calls(), 0);
}

/// A call issued while no version is active succeeds once `set_version`
/// activates one within the call's wait.
#[tokio::test(start_paused = true)]
async fn call_waiting_for_an_active_version_succeeds_after_set_version() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log).start_delay(Duration::from_secs(2));
    let agg = aggregate(&[&a], AggregateConfig::default());
    let issued = Instant::now();
    let waiting = tokio::spawn({
        let agg = agg.clone();
        async move { agg.call(request()).await }
    });
    // Let one second of paused time pass: the call must still be waiting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "the call did not wait");
    agg.set_version("1").await.unwrap();
    let answer = answered_by(timeout(WAIT, waiting).await.unwrap().unwrap());
    assert_eq!(answer, "1");
    assert_eq!(issued.elapsed(), Duration::from_secs(3));
}

// ---------------------------------------------------------------------------
// set_version basics
// ---------------------------------------------------------------------------

/// An unknown version gives `NoSuchVersion` (naming the known ones) and, by
/// default (`OnUnknownVersion::KeepActive`), the active version keeps
/// serving untouched.
#[tokio::test(start_paused = true)]
async fn unknown_version_keeps_the_active_one_by_default() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    agg.set_version("1").await.unwrap();
    let result = agg.set_version("9").await;
    let Err(Error::NoSuchVersion { version, known, .. }) = &result else {
        panic!("expected NoSuchVersion, got {result:?}");
    };
    assert_eq!(&**version, "9");
    assert_eq!(known, "1, 2");
    assert_eq!(agg.active_version().as_deref(), Some("1"));
    assert_eq!(call(&agg).await, "1");
    assert_eq!(a.stop_calls(), 0);
    assert_eq!(b.start_calls(), 0);
}

/// With `OnUnknownVersion::StopActive` (what Oasis Core's aggregate does) an unknown
/// version gives `NoSuchVersion` after stopping the active version, which
/// leaves no active version.
#[tokio::test(start_paused = true)]
async fn unknown_version_with_stop_active_stops_the_active_one() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let agg = aggregate(
        &[&a],
        AggregateConfig {
            on_unknown_version: OnUnknownVersion::StopActive,
            ..AggregateConfig::default()
        },
    );
    agg.set_version("1").await.unwrap();
    let result = agg.set_version("9").await;
    assert!(
        matches!(result, Err(Error::NoSuchVersion { .. })),
        "{result:?}"
    );
    assert_eq!(agg.active_version(), None);
    assert_eq!(a.stops(), 1);
    assert_eq!(a.state(), State::Stopped);
    let info = agg.info().await;
    assert!(
        matches!(info, Err(Error::NoActiveVersion { .. })),
        "{info:?}"
    );
}

/// `set_version` to the active version does nothing: no start, no stop.
#[tokio::test(start_paused = true)]
async fn set_version_to_the_active_version_is_a_no_op() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    agg.set_version("1").await.unwrap();
    assert_eq!((a.start_calls(), a.stop_calls()), (1, 0));
    let entries = log.entries();
    agg.set_version("1").await.unwrap();
    assert_eq!((a.start_calls(), a.stop_calls()), (1, 0));
    assert_eq!((b.start_calls(), b.stop_calls()), (0, 0));
    assert_eq!(log.entries(), entries);
    assert_eq!(agg.active_version().as_deref(), Some("1"));
}

// ---------------------------------------------------------------------------
// start / stop / abort / info
// ---------------------------------------------------------------------------

/// `start()` with no active version is no error and starts nothing;
/// `stop()` stops the active version and `start()` starts it again; both
/// are idempotent.
#[tokio::test(start_paused = true)]
async fn start_and_stop_drive_the_active_version_idempotently() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], AggregateConfig::default());

    agg.start().unwrap();
    agg.stop().await;
    assert_eq!((a.start_calls(), b.start_calls()), (0, 0));
    assert_eq!((a.stops(), b.stops()), (0, 0));

    agg.set_version("1").await.unwrap();
    assert_eq!(a.state(), State::Started);

    agg.stop().await;
    assert_eq!(a.state(), State::Stopped);
    agg.stop().await;
    assert_eq!(a.stops(), 1, "stop is not idempotent");
    assert_eq!(agg.active_version().as_deref(), Some("1"));

    agg.start().unwrap();
    agg.start().unwrap();
    assert_eq!(a.starts(), 2, "start is not idempotent");
    a.wait_state(State::Started).await;
    assert_eq!(call(&agg).await, "1");
    // `stop` also asks the other versions (in case one was pre-warmed),
    // which for a version that never started changes nothing.
    assert_eq!((b.start_calls(), b.stops()), (0, 0));
}

/// `stop()` is "for good": a pre-warmed version stops too, not only the
/// active one, so no process outlives the aggregate.
#[tokio::test(start_paused = true)]
async fn stop_also_stops_a_prewarmed_version() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    agg.set_version("1").await.unwrap();
    agg.set_next_version("2").await.unwrap();
    assert_eq!(b.state(), State::Started);

    agg.stop().await;
    assert_eq!(a.state(), State::Stopped);
    assert_eq!(
        b.state(),
        State::Stopped,
        "the pre-warmed version kept running"
    );
    assert_eq!(agg.active_version().as_deref(), Some("1"));
}

/// `abort(force)` and `info()` go to the active version, and the abort's
/// outcome is the version's.
#[tokio::test(start_paused = true)]
async fn abort_and_info_go_to_the_active_version() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    agg.set_version("2").await.unwrap();
    assert_eq!(agg.abort(false).await.unwrap(), Aborted::Abandoned);
    assert_eq!(agg.abort(true).await.unwrap(), Aborted::Killed);
    assert_eq!(b.aborts(), [false, true]);
    assert!(a.aborts().is_empty());
    let info = agg.info().await.unwrap();
    assert_eq!(info.runtime_version, "2");
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// Only the active version's events reach subscribers, each tagged with
/// its version: an inactive version's events are not forwarded.
#[tokio::test(start_paused = true)]
async fn only_the_active_versions_events_are_forwarded() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    let mut events = agg.watch_events();
    agg.set_version("1").await.unwrap();
    pending_events(&mut events).await;

    b.emit_updated("from the inactive version");
    a.emit_updated("from the active version");
    let seen = pending_events(&mut events).await;
    assert_eq!(
        seen,
        [Event::Updated {
            version: Arc::from("1"),
            what: "from the active version".to_owned(),
        }]
    );
    assert_eq!(&**seen[0].version(), "1");
}

/// During a switch the old version's final `Stopped` still reaches
/// subscribers (tagged with the old version), and after it the old
/// version's events no longer do.
///
/// Fails against `src/aggregate.rs` as of 070f324: `retire()` takes the
/// old version out of `retiring` as soon as its `stop()` returns, before
/// the forwarder task has handled the `Stopped` that `stop()` emitted, so
/// the forwarder drops it (here every time: the fake's `stop()` emits and
/// returns without yielding).
#[tokio::test(start_paused = true)]
async fn old_versions_final_stopped_is_forwarded_during_a_switch() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    let mut events = agg.watch_events();
    agg.set_version("1").await.unwrap();
    pending_events(&mut events).await;

    agg.set_version("2").await.unwrap();
    let seen = pending_events(&mut events).await;
    assert!(
        kinds(&seen).contains(&"stopped 1".to_owned()),
        "the old version's final Stopped was not forwarded; got {:?}",
        kinds(&seen)
    );

    a.emit_updated("after retirement");
    let seen = pending_events(&mut events).await;
    assert!(seen.is_empty(), "{seen:?}");
}

/// The same, in stop-then-start mode (fails for the same reason).
#[tokio::test(start_paused = true)]
async fn old_versions_final_stopped_is_forwarded_in_stop_then_start() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], stop_then_start());
    let mut events = agg.watch_events();
    agg.set_version("1").await.unwrap();
    pending_events(&mut events).await;

    agg.set_version("2").await.unwrap();
    let seen = pending_events(&mut events).await;
    assert!(
        kinds(&seen).contains(&"stopped 1".to_owned()),
        "the old version's final Stopped was not forwarded; got {:?}",
        kinds(&seen)
    );
}

/// The version a `set_version` makes active announces itself: its
/// `Started` reaches subscribers (as in Oasis Core's aggregate, where the new version is
/// made active before it starts), whoever calls `set_version`.
///
/// Fails against `src/aggregate.rs` as of 070f324: the target is made
/// active only after its `Started`, and the forwarder decides when it gets
/// to the event; whether the `Started` is forwarded depends on which task
/// the scheduler polls first (forwarded when `set_version` runs in a
/// spawned task, dropped when it runs in the test's own task).
#[tokio::test(start_paused = true)]
async fn newly_active_versions_started_is_forwarded() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    let mut events = agg.watch_events();

    // From a spawned task...
    let spawned = tokio::spawn({
        let agg = agg.clone();
        async move { agg.set_version("1").await }
    });
    timeout(WAIT, spawned).await.unwrap().unwrap().unwrap();
    let from_task = kinds(&pending_events(&mut events).await);

    // ... and from the test's own task.
    agg.set_version("2").await.unwrap();
    let from_test = kinds(&pending_events(&mut events).await);

    assert!(
        from_task.contains(&"started 1".to_owned()) && from_test.contains(&"started 2".to_owned()),
        "the newly active version's Started is not (reliably) forwarded: \
         set_version from a spawned task forwarded {from_task:?}, \
         from the test task {from_test:?}"
    );
}

/// A subscriber that does not read while more than 256 events are
/// forwarded gets `RecvError::Lagged(missed)` and then the newest 256
/// events, in order; a reading subscriber loses nothing.
#[tokio::test(start_paused = true)]
async fn a_lagging_subscriber_gets_lagged_then_continues() {
    const SENT: usize = 300;
    const BUFFER: usize = 256;
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let agg = aggregate(&[&a], AggregateConfig::default());
    agg.set_version("1").await.unwrap();
    settle().await;
    let mut eager = agg.watch_events();
    let mut lazy = agg.watch_events();

    for i in 0..SENT {
        a.emit_updated(&i.to_string());
        let event = timeout(WAIT, eager.recv()).await.unwrap().unwrap();
        assert_eq!(
            event,
            Event::Updated {
                version: Arc::from("1"),
                what: i.to_string(),
            }
        );
    }

    let missed = (SENT - BUFFER) as u64;
    match lazy.recv().await {
        Err(RecvError::Lagged(n)) => assert_eq!(n, missed),
        other => panic!("expected Lagged({missed}), got {other:?}"),
    }
    for i in SENT - BUFFER..SENT {
        let event = lazy.recv().await.unwrap();
        let Event::Updated { what, .. } = &event else {
            panic!("unexpected {event:?}");
        };
        assert_eq!(what, &i.to_string());
    }
    assert!(matches!(lazy.try_recv(), Err(TryRecvError::Empty)));
    // The aggregate kept working for everyone.
    assert_eq!(call(&agg).await, "1");
}

// ---------------------------------------------------------------------------
// Make-before-break
// ---------------------------------------------------------------------------

/// Make-before-break: the target is started (and serving) before the old
/// version is stopped, and calls go to the new version after the switch.
#[tokio::test(start_paused = true)]
async fn make_before_break_starts_the_target_before_stopping_the_old() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log).start_delay(Duration::from_secs(2));
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    agg.set_version("1").await.unwrap();
    assert_eq!(call(&agg).await, "1");

    let switching = Instant::now();
    agg.set_version("2").await.unwrap();
    assert_eq!(switching.elapsed(), Duration::from_secs(2));
    assert_eq!(
        log.only(&["start ", "started ", "stop "]),
        ["start 1", "started 1", "start 2", "started 2", "stop 1"]
    );
    assert_eq!(agg.active_version().as_deref(), Some("2"));
    assert_eq!(call(&agg).await, "2");
    assert_eq!(a.state(), State::Stopped);
    assert_eq!(log.max_running(), 2);
}

/// Calls keep being answered by the old version while the target starts.
#[tokio::test(start_paused = true)]
async fn calls_are_served_by_the_old_version_while_the_target_starts() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log).start_delay(Duration::from_secs(10));
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    agg.set_version("1").await.unwrap();
    let switching = tokio::spawn({
        let agg = agg.clone();
        async move { agg.set_version("2").await }
    });
    until("the target starting", || b.state() == State::Starting).await;
    let answered = Instant::now();
    assert_eq!(call(&agg).await, "1");
    assert_eq!(answered.elapsed(), Duration::ZERO);
    timeout(WAIT, switching).await.unwrap().unwrap().unwrap();
    assert_eq!(call(&agg).await, "2");
}

/// The old version's call in flight finishes successfully during the
/// drain, and the old version is stopped only after it finished.
#[tokio::test(start_paused = true)]
async fn old_versions_call_in_flight_finishes_before_it_is_stopped() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log).holding();
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    agg.set_version("1").await.unwrap();
    let in_flight = tokio::spawn({
        let agg = agg.clone();
        async move { agg.call(request()).await }
    });
    a.wait_calls(1).await;

    let switching = tokio::spawn({
        let agg = agg.clone();
        async move { agg.set_version("2").await }
    });
    until("the switch to 2", || {
        agg.active_version().as_deref() == Some("2")
    })
    .await;
    // Three seconds of paused time: the old version must still be draining.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!switching.is_finished(), "the switch did not drain");
    assert_eq!(
        a.stop_calls(),
        0,
        "the old version was stopped during its call"
    );
    assert_eq!(call(&agg).await, "2");

    a.release();
    let answer = answered_by(timeout(WAIT, in_flight).await.unwrap().unwrap());
    assert_eq!(answer, "1");
    timeout(WAIT, switching).await.unwrap().unwrap().unwrap();
    let done = log.position("call-done 1").unwrap();
    let stopped = log.position("stop 1").unwrap();
    assert!(done < stopped, "{:?}", log.entries());
}

/// A call on the old version that never finishes is abandoned with
/// `Error::Drained` after `AggregateConfig::drain_timeout`, then the old
/// version is stopped and the switch completes.
///
/// Fails against `src/aggregate.rs` as of 070f324 (the call gets `Lost`):
/// `retire()` cancels the abandoned calls and stops the old version at
/// once, and `call_within`'s `biased` select polls the sub-runtime's call
/// (by then failed because its runtime stopped) before the cancellation.
#[tokio::test(start_paused = true)]
async fn drain_timeout_abandons_the_call_with_drained() {
    let drain = Duration::from_secs(3);
    let log = Log::default();
    let a = FakeRuntime::new("1", &log).holding();
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(
        &[&a, &b],
        AggregateConfig {
            drain_timeout: drain,
            ..AggregateConfig::default()
        },
    );
    agg.set_version("1").await.unwrap();
    let in_flight = tokio::spawn({
        let agg = agg.clone();
        async move { agg.call(request()).await }
    });
    a.wait_calls(1).await;

    let switching = Instant::now();
    timeout(WAIT, agg.set_version("2")).await.unwrap().unwrap();
    assert_eq!(switching.elapsed(), drain);
    let result = timeout(WAIT, in_flight).await.unwrap().unwrap();
    assert!(
        matches!(&result, Err(Error::Drained { runtime, version }) if &**runtime == ID && &**version == "1"),
        "{result:?}"
    );
    assert_eq!(a.stops(), 1);
    assert_eq!(a.state(), State::Stopped);
    assert_eq!(log.position("call-done 1"), None);
    assert_eq!(call(&agg).await, "2");
}

/// A target that fails to start leaves the old version active and serving;
/// `set_version` returns the start error (`FailedToStart` for the target)
/// and the failed target is stopped.
#[tokio::test(start_paused = true)]
async fn failed_target_keeps_the_old_version() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log)
        .failing()
        .start_delay(Duration::from_secs(1));
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    agg.set_version("1").await.unwrap();

    let result = agg.set_version("2").await;
    assert!(
        matches!(&result, Err(Error::FailedToStart { runtime, version, reason })
            if &**runtime == ID && &**version == "2" && reason.to_string().contains("scripted start failure")),
        "{result:?}"
    );
    assert_eq!(agg.active_version().as_deref(), Some("1"));
    assert_eq!(call(&agg).await, "1");
    assert_eq!(a.stop_calls(), 0);
    assert_eq!(b.stops(), 1, "the failed target was not stopped");
    assert_eq!(b.state(), State::Stopped);
}

/// A target that does not serve within `AggregateConfig::start_timeout`
/// counts as failed: the old version stays, the target is stopped.
#[tokio::test(start_paused = true)]
async fn target_not_serving_within_start_timeout_keeps_the_old_version() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log).start_delay(Duration::from_secs(3600));
    let agg = aggregate(
        &[&a, &b],
        AggregateConfig {
            start_timeout: Duration::from_secs(5),
            ..AggregateConfig::default()
        },
    );
    agg.set_version("1").await.unwrap();
    let switching = Instant::now();
    let result = timeout(WAIT, agg.set_version("2")).await.unwrap();
    assert_eq!(switching.elapsed(), Duration::from_secs(5));
    assert!(
        matches!(&result, Err(Error::FailedToStart { version, .. }) if &**version == "2"),
        "{result:?}"
    );
    assert_eq!(agg.active_version().as_deref(), Some("1"));
    assert_eq!(b.stops(), 1);
    assert_eq!(call(&agg).await, "1");
}

/// A version can be switched away from and back to: A → B → A.
#[tokio::test(start_paused = true)]
async fn switch_a_b_a() {
    for config in [AggregateConfig::default(), stop_then_start()] {
        let mode = config.mode;
        let log = Log::default();
        let a = FakeRuntime::new("1", &log).start_delay(Duration::from_millis(100));
        let b = FakeRuntime::new("2", &log).start_delay(Duration::from_millis(100));
        let agg = aggregate(&[&a, &b], config);
        agg.set_version("1").await.unwrap();
        assert_eq!(call(&agg).await, "1", "{mode:?}");
        agg.set_version("2").await.unwrap();
        assert_eq!(call(&agg).await, "2", "{mode:?}");
        agg.set_version("1").await.unwrap();
        assert_eq!(call(&agg).await, "1", "{mode:?}");
        assert_eq!(agg.active_version().as_deref(), Some("1"));
        assert_eq!((a.starts(), a.stops()), (2, 1), "{mode:?}");
        assert_eq!((b.starts(), b.stops()), (1, 1), "{mode:?}");
        assert_eq!(a.state(), State::Started);
        assert_eq!(b.state(), State::Stopped);
    }
}

// ---------------------------------------------------------------------------
// Stop-then-start
// ---------------------------------------------------------------------------

/// Stop-then-start: the old version is stopped before the new one is
/// started; calls issued in the gap wait and are answered by the new
/// version.
#[tokio::test(start_paused = true)]
async fn stop_then_start_stops_first_and_calls_in_the_gap_wait() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log).start_delay(Duration::from_secs(2));
    let agg = aggregate(&[&a, &b], stop_then_start());
    agg.set_version("1").await.unwrap();

    let switching = tokio::spawn({
        let agg = agg.clone();
        async move { agg.set_version("2").await }
    });
    until("the old version stopped", || a.state() == State::Stopped).await;
    assert_eq!(agg.active_version(), None);
    let issued = Instant::now();
    let in_gap = tokio::spawn({
        let agg = agg.clone();
        async move { agg.call(request()).await }
    });
    assert_eq!(
        answered_by(timeout(WAIT, in_gap).await.unwrap().unwrap()),
        "2"
    );
    assert_eq!(issued.elapsed(), Duration::from_secs(2));
    timeout(WAIT, switching).await.unwrap().unwrap().unwrap();
    assert_eq!(
        log.only(&["start ", "started ", "stop "]),
        ["start 1", "started 1", "stop 1", "start 2", "started 2"]
    );
    assert_eq!(log.max_running(), 1);
}

/// Stop-then-start: if the new version fails to start, the previous one is
/// started again and active, and the start error is returned.
#[tokio::test(start_paused = true)]
async fn stop_then_start_failed_target_restarts_the_previous_version() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log).failing();
    let agg = aggregate(&[&a, &b], stop_then_start());
    agg.set_version("1").await.unwrap();

    let result = agg.set_version("2").await;
    assert!(
        matches!(&result, Err(Error::FailedToStart { version, .. }) if &**version == "2"),
        "{result:?}"
    );
    assert_eq!(agg.active_version().as_deref(), Some("1"));
    assert_eq!(a.starts(), 2);
    assert_eq!(a.state(), State::Started);
    assert_eq!(b.state(), State::Stopped);
    assert_eq!(
        log.only(&["start ", "started ", "failed ", "stop "]),
        [
            "start 1",
            "started 1",
            "stop 1",
            "start 2",
            "failed 2",
            "stop 2",
            "start 1",
            "started 1"
        ]
    );
    assert_eq!(call(&agg).await, "1");
}

// ---------------------------------------------------------------------------
// The lock rule and bounded waits
// ---------------------------------------------------------------------------

/// No lock is held across an `.await` into a sub-runtime: a sub-runtime
/// whose call never returns blocks neither `set_version` (which completes
/// within the drain timeout) nor other calls (a call to the new version
/// returns at once while the old call still hangs), nor `info()`.
#[tokio::test(start_paused = true)]
async fn a_blocked_sub_runtime_blocks_neither_set_version_nor_other_calls() {
    let drain = AggregateConfig::default().drain_timeout;
    let log = Log::default();
    let a = FakeRuntime::new("1", &log).holding();
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    agg.set_version("1").await.unwrap();
    let stuck = tokio::spawn({
        let agg = agg.clone();
        async move { agg.call(request()).await }
    });
    a.wait_calls(1).await;

    let switch_began = Instant::now();
    let switching = tokio::spawn({
        let agg = agg.clone();
        async move { agg.set_version("2").await }
    });
    until("the switch to 2", || {
        agg.active_version().as_deref() == Some("2")
    })
    .await;
    let answer = timeout(Duration::from_millis(1), agg.call(request()))
        .await
        .expect("a call to the new version waited for the stuck one");
    assert_eq!(answered_by(answer), "2");
    let info = timeout(Duration::from_millis(1), agg.info())
        .await
        .expect("info waited for the stuck call")
        .unwrap();
    assert_eq!(info.runtime_version, "2");
    assert_eq!(switch_began.elapsed(), Duration::ZERO);
    assert!(!stuck.is_finished());

    timeout(drain + Duration::from_secs(1), switching)
        .await
        .expect("set_version was blocked by the stuck call")
        .unwrap()
        .unwrap();
    assert_eq!(switch_began.elapsed(), drain);
    // Abandoned (which error it gets is checked by
    // `drain_timeout_abandons_the_call_with_drained`).
    let result = timeout(WAIT, stuck).await.unwrap().unwrap();
    assert!(result.is_err(), "{result:?}");
    assert_eq!(a.stops(), 1);
}

/// Waiting for a sub-runtime to stop is bounded by
/// `AggregateConfig::stop_timeout`: a switch away from a version whose
/// `stop()` never returns still completes.
#[tokio::test(start_paused = true)]
async fn waiting_for_a_stop_is_bounded_by_stop_timeout() {
    let stop_timeout = Duration::from_secs(4);
    let log = Log::default();
    let a = FakeRuntime::new("1", &log).stop_hanging();
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(
        &[&a, &b],
        AggregateConfig {
            stop_timeout,
            ..AggregateConfig::default()
        },
    );
    agg.set_version("1").await.unwrap();
    let switching = Instant::now();
    timeout(WAIT, agg.set_version("2"))
        .await
        .expect("the switch waited for a stop forever")
        .unwrap();
    assert_eq!(switching.elapsed(), stop_timeout);
    assert_eq!(call(&agg).await, "2");
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

/// Checks a make-before-break sequence of `start V`/`stop V` entries:
/// transitions never overlap (each `start T` is followed by `stop <the
/// previous active>` before the next start), starting from `first` active.
fn assert_transitions_in_order(entries: &[String], first: &str) {
    let mut active = first.to_owned();
    for pair in entries.chunks(2) {
        let [start, stop] = pair else {
            panic!("unpaired transition in {entries:?}");
        };
        let target = start
            .strip_prefix("start ")
            .unwrap_or_else(|| panic!("expected a start, got {start:?} in {entries:?}"));
        assert_eq!(
            stop,
            &format!("stop {active}"),
            "transitions overlapped: {entries:?}"
        );
        active = target.to_owned();
    }
}

/// 50 callers in parallel with 20 `set_version`s in a loop (1, 2, 1, ...):
/// in make-before-break no call fails, both versions answer, transitions
/// never overlap and at most one version is ever starting.
#[tokio::test(start_paused = true)]
async fn parallel_calls_during_twenty_switches_never_fail() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log)
        .start_delay(Duration::from_millis(50))
        .call_latency(Duration::from_millis(2));
    let b = FakeRuntime::new("2", &log)
        .start_delay(Duration::from_millis(50))
        .call_latency(Duration::from_millis(2));
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    agg.set_version("1").await.unwrap();
    let log_after_first = log.only(&["start ", "stop "]).len();
    assert_eq!(log_after_first, 1);

    let done = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let agg = agg.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut answers = BTreeMap::<String, usize>::new();
                let mut failures = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    match agg.call(request()).await {
                        Ok(body) => *answers.entry(answered_by(Ok(body))).or_default() += 1,
                        Err(error) => failures.push(error.to_string()),
                    }
                }
                (answers, failures)
            })
        })
        .collect();

    for i in 0..20 {
        let target = if i % 2 == 0 { "2" } else { "1" };
        timeout(WAIT, agg.set_version(target))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(agg.active_version().as_deref(), Some(target));
    }
    done.store(true, Ordering::SeqCst);

    let mut answers = BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for caller in callers {
        let (mine, failed) = timeout(WAIT, caller).await.unwrap().unwrap();
        for (version, n) in mine {
            *answers.entry(version).or_default() += n;
        }
        failures.extend(failed);
    }
    assert!(
        failures.is_empty(),
        "{} calls failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(answers.get("1").copied().unwrap_or(0) > 0, "{answers:?}");
    assert!(answers.get("2").copied().unwrap_or(0) > 0, "{answers:?}");
    assert_eq!((a.starts(), b.starts()), (11, 10));
    assert_eq!((a.stops(), b.stops()), (10, 10));
    let entries = log.only(&["start ", "stop "]);
    assert_transitions_in_order(&entries[1..], "1");
    assert_eq!(log.max_starting(), 1);
    assert_eq!(log.max_running(), 2);
}

/// `set_version`s issued concurrently never overlap: each waits for the
/// transition in progress to end (the log of starts and stops is a
/// sequence of whole transitions).
#[tokio::test(start_paused = true)]
async fn concurrent_set_versions_take_turns() {
    let log = Log::default();
    let fakes: Vec<_> = ["1", "2", "3"]
        .iter()
        .map(|v| FakeRuntime::new(v, &log).start_delay(Duration::from_millis(30)))
        .collect();
    let agg = aggregate(
        &fakes.iter().collect::<Vec<_>>(),
        AggregateConfig::default(),
    );
    agg.set_version("1").await.unwrap();
    let first = log.only(&["start ", "stop "]).len();

    let switches: Vec<_> = ["2", "3", "1", "3", "2", "1", "2", "3"]
        .into_iter()
        .map(|target| {
            let agg = agg.clone();
            tokio::spawn(async move { agg.set_version(target).await })
        })
        .collect();
    for switch in switches {
        timeout(WAIT, switch).await.unwrap().unwrap().unwrap();
    }
    let transitions = &log.only(&["start ", "stop "])[first..];
    assert_eq!(
        transitions.len(),
        16,
        "expected 8 transitions: {transitions:?}"
    );
    assert_transitions_in_order(transitions, "1");
    assert_eq!(log.max_starting(), 1);
    assert_eq!(log.max_running(), 2);
}

// ---------------------------------------------------------------------------
// add_version / remove_version / versions
// ---------------------------------------------------------------------------

/// A version added at run time can be switched to.
#[tokio::test(start_paused = true)]
async fn added_version_can_be_switched_to() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let agg = aggregate(&[&a], AggregateConfig::default());
    agg.set_version("1").await.unwrap();
    let c = FakeRuntime::new("3", &log);
    agg.add_version("3", c.host()).unwrap();
    assert_eq!(agg.versions(), ["1", "3"]);
    assert_eq!(c.start_calls(), 0, "adding a version started it");
    agg.set_version("3").await.unwrap();
    assert_eq!(call(&agg).await, "3");
    assert_eq!(a.state(), State::Stopped);
}

/// Removing the active version is refused (it keeps serving); removing
/// another version stops it and forgets it; removing an unknown version
/// gives `NoSuchVersion`.
#[tokio::test(start_paused = true)]
async fn remove_version_refuses_the_active_one_and_stops_others() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log);
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    agg.set_version("1").await.unwrap();
    agg.set_next_version("2").await.unwrap();
    assert_eq!(b.state(), State::Started);

    let refused = agg.remove_version("1").await;
    assert!(
        matches!(refused, Err(Error::VersionActive { .. })),
        "{refused:?}"
    );
    assert_eq!(agg.versions(), ["1", "2"]);
    assert_eq!(a.stop_calls(), 0);
    assert_eq!(call(&agg).await, "1");

    agg.remove_version("2").await.unwrap();
    assert_eq!(agg.versions(), ["1"]);
    assert_eq!(b.stops(), 1);
    assert_eq!(b.state(), State::Stopped);
    let gone = agg.set_version("2").await;
    assert!(matches!(gone, Err(Error::NoSuchVersion { .. })), "{gone:?}");
    let unknown = agg.remove_version("9").await;
    assert!(
        matches!(unknown, Err(Error::NoSuchVersion { .. })),
        "{unknown:?}"
    );
    assert_eq!(call(&agg).await, "1");
}

/// `versions()` is sorted; adding a version that exists, or a sub-runtime
/// with another id, fails and changes nothing.
#[tokio::test(start_paused = true)]
async fn versions_are_sorted_and_bad_additions_fail() {
    let log = Log::default();
    let b = FakeRuntime::new("b", &log);
    let agg = aggregate(&[&b], AggregateConfig::default());
    for v in ["d", "a", "c"] {
        agg.add_version(v, FakeRuntime::new(v, &log).host())
            .unwrap();
    }
    assert_eq!(agg.versions(), ["a", "b", "c", "d"]);

    let duplicate = agg.add_version("c", FakeRuntime::new("c", &log).host());
    assert!(
        matches!(duplicate, Err(Error::VersionExists { .. })),
        "{duplicate:?}"
    );
    let foreign = agg.add_version("e", FakeRuntime::with_id("other", "e", &log).host());
    assert!(
        matches!(&foreign, Err(Error::IdMismatch { aggregate, version, runtime })
            if &**aggregate == ID && &**version == "e" && runtime == "other"),
        "{foreign:?}"
    );
    assert_eq!(agg.versions(), ["a", "b", "c", "d"]);
}

// ---------------------------------------------------------------------------
// Pre-warm
// ---------------------------------------------------------------------------

/// `set_next_version` starts the version ahead of time without activating
/// it (its `Started` is not forwarded, calls still go to the active one);
/// a later `set_version` to it is instant and does not start it again.
#[tokio::test(start_paused = true)]
async fn set_next_version_prewarms_so_the_switch_is_instant() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log).start_delay(Duration::from_secs(5));
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    let mut events = agg.watch_events();
    agg.set_version("1").await.unwrap();
    pending_events(&mut events).await;

    let warming = Instant::now();
    agg.set_next_version("2").await.unwrap();
    assert_eq!(warming.elapsed(), Duration::from_secs(5));
    assert_eq!(b.state(), State::Started);
    assert_eq!(b.starts(), 1);
    assert_eq!(agg.active_version().as_deref(), Some("1"));
    assert_eq!(call(&agg).await, "1");
    let seen = pending_events(&mut events).await;
    assert!(seen.is_empty(), "a pre-warmed version's events: {seen:?}");

    let switching = Instant::now();
    agg.set_version("2").await.unwrap();
    assert_eq!(switching.elapsed(), Duration::ZERO);
    assert_eq!(b.starts(), 1, "the pre-warmed version was started again");
    assert_eq!(agg.active_version().as_deref(), Some("2"));
    assert_eq!(call(&agg).await, "2");
    assert_eq!(a.state(), State::Stopped);
}

/// Pre-warming an unknown version gives `NoSuchVersion`; pre-warming a
/// version that fails to start returns the start error and stops it.
#[tokio::test(start_paused = true)]
async fn set_next_version_errors() {
    let log = Log::default();
    let a = FakeRuntime::new("1", &log);
    let b = FakeRuntime::new("2", &log).failing();
    let agg = aggregate(&[&a, &b], AggregateConfig::default());
    agg.set_version("1").await.unwrap();
    let unknown = agg.set_next_version("9").await;
    assert!(
        matches!(unknown, Err(Error::NoSuchVersion { .. })),
        "{unknown:?}"
    );
    let failed = agg.set_next_version("2").await;
    assert!(
        matches!(&failed, Err(Error::FailedToStart { version, .. }) if &**version == "2"),
        "{failed:?}"
    );
    assert_eq!(b.state(), State::Stopped);
    assert_eq!(agg.active_version().as_deref(), Some("1"));
}
