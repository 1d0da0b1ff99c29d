//! Integration tests for [`Runner`]: a port of Juju's `worker/runner_test.go`
//! suites, adapted to the documented semantics of this crate, plus tests for
//! the gaps the port closes (cancellable restart delays, panics as errors,
//! backoff, restart intensity, bounded shutdown, reports).
//!
//! Every test runs on a current-thread runtime with paused time, so delays
//! are exact and waiting costs nothing: the clock only moves when every task
//! is idle, or when a test moves it on purpose.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use steward_worker::test_util::{TestStarter, TestWorker, run_with_deadline, stubborn_worker};
use steward_worker::{
    Backoff, Error, Runner, RunnerBuilder, RunnerReport, RunnerState, SimpleWorker, Worker,
    WorkerState,
};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::{Instant, advance, sleep, timeout};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A long window of paused time in which nothing is expected to happen.
const QUIET: Duration = Duration::from_secs(3600);

/// Juju's default: every error stops the runner. Restarts (which should
/// never happen here) would come after 10 ms.
fn all_fatal() -> RunnerBuilder {
    Runner::builder()
        .is_fatal(|_| true)
        .backoff(Backoff::constant(Duration::from_millis(10)))
}

/// Only `TerminateAgent` is fatal (the crate's default); failed workers are
/// restarted after exactly `delay`.
fn restarting(delay: Duration) -> RunnerBuilder {
    Runner::builder().backoff(Backoff::constant(delay))
}

/// A worker error with a fixed message, recognisable with `downcast_ref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failure(&'static str);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Failure {}

fn failure(message: &'static str) -> Error {
    Error::other(Failure(message))
}

/// An error with an importance: higher levels are more important.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ErrorLevel(u32);

impl fmt::Display for ErrorLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error level {}", self.0)
    }
}

impl StdError for ErrorLevel {}

/// Asserts that `result` is the worker error `Failure(expected)`.
#[track_caller]
fn assert_failure(result: &Result<(), Error>, expected: &'static str) {
    match result {
        Err(error) => assert_eq!(
            error.downcast_ref::<Failure>(),
            Some(&Failure(expected)),
            "unexpected error: {error:?}"
        ),
        Ok(()) => panic!("expected error {expected:?}, got Ok"),
    }
}

/// Asserts that `result` is `NotFound` for `id`.
#[track_caller]
fn assert_not_found<T>(result: Result<T, Error>, id: &str) {
    match result {
        Err(Error::NotFound { id: got }) => assert_eq!(&*got, id),
        other => panic!(
            "expected NotFound {{ id: {id:?} }}, got {:?}",
            other.map(drop)
        ),
    }
}

/// Asserts that `result` is `AlreadyExists` for `id`.
#[track_caller]
fn assert_already_exists(result: Result<(), Error>, id: &str) {
    match result {
        Err(Error::AlreadyExists { id: got }) => assert_eq!(&*got, id),
        other => panic!("expected AlreadyExists {{ id: {id:?} }}, got {other:?}"),
    }
}

/// Which `TestStarter` instance a runner handed out.
fn instance_number(worker: Arc<dyn Worker>) -> usize {
    let any: Arc<dyn Any + Send + Sync> = worker;
    any.downcast::<TestWorker>()
        .expect("the instance is a TestWorker")
        .number()
}

/// A worker that runs until killed and then stops cleanly.
fn idle_worker() -> SimpleWorker {
    SimpleWorker::spawn(|stop: CancellationToken| async move {
        stop.cancelled().await;
        Ok(())
    })
}

/// A worker that takes `delay` (of tokio time) to stop once killed.
fn slow_to_stop(delay: Duration) -> SimpleWorker {
    SimpleWorker::spawn(move |stop: CancellationToken| async move {
        stop.cancelled().await;
        sleep(delay).await;
        Ok(())
    })
}

fn state_of(runner: &Runner, id: &str) -> WorkerState {
    runner.report().workers[id].state
}

// ---------------------------------------------------------------------------
// Ports of Juju's runner_test.go
// ---------------------------------------------------------------------------

/// Juju `TestOneWorkerStart`: a worker starts; killing the runner stops it
/// and the runner finishes cleanly.
#[tokio::test(start_paused = true)]
async fn one_worker_start() {
    let runner = all_fatal().build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);
    assert_eq!(runner.worker_names(), ["id"]);

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.assert_stopped().await, 1);
    starter.assert_no_event(QUIET).await;
    assert_eq!(starter.max_live(), 1);
}

/// Juju `TestOneWorkerFinish`: a worker that returns `Ok` is finished: it
/// is not restarted and leaves the runner, which keeps running.
#[tokio::test(start_paused = true)]
async fn one_worker_finish() {
    let runner = restarting(Duration::from_millis(10)).build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);

    assert!(starter.die(Ok(())));
    assert_eq!(starter.assert_stopped().await, 1);
    starter.assert_no_event(QUIET).await;
    assert!(runner.worker_names().is_empty());
    assert_not_found(runner.worker("id").await, "id");
    assert!(!runner.is_stopping());
    assert_eq!(runner.report().state, RunnerState::Running);

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.instances(), 1);
    assert_eq!(starter.max_live(), 1);
}

/// Juju `TestOneWorkerRestart`: a worker failing with a non-fatal error is
/// restarted each time; the report counts the restarts and keeps the last
/// error.
#[tokio::test(start_paused = true)]
async fn one_worker_restart() {
    let runner = restarting(Duration::from_millis(10)).build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);

    for (n, message) in [(1, "boom 1"), (2, "boom 2"), (3, "boom 3")] {
        assert!(starter.die(Err(failure(message))));
        assert_eq!(starter.assert_stopped().await, n);
        assert_eq!(starter.assert_started().await, n + 1);
    }
    assert_eq!(instance_number(runner.worker("id").await.unwrap()), 4);

    let report = runner.report();
    let worker = &report.workers["id"];
    assert_eq!(worker.state, WorkerState::Running);
    assert_eq!(worker.restarts, 3);
    assert_eq!(worker.last_error.as_deref(), Some("boom 3"));

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.assert_stopped().await, 4);
    assert_eq!(starter.max_live(), 1);
}

/// Juju `TestOneWorkerStartFatalError`: with every error fatal, a start
/// function's error stops the runner and is its result.
#[tokio::test(start_paused = true)]
async fn start_error_is_fatal() {
    let runner = all_fatal().build();
    let starter = TestStarter::new();
    starter.set_start_error(Some(failure("cannot start")));
    runner.start_worker("id", starter.factory()).unwrap();

    assert_failure(&runner.wait().await, "cannot start");
    starter.assert_no_event(QUIET).await;
    assert_eq!(starter.instances(), 0);
}

/// Juju `TestOneWorkerDieFatalError`: a running worker's fatal error stops
/// the runner, which reports it; the worker is not restarted.
#[tokio::test(start_paused = true)]
async fn die_error_is_fatal() {
    let runner = all_fatal().build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);

    assert!(starter.die(Err(failure("died"))));
    assert_failure(&runner.wait().await, "died");
    assert_eq!(starter.assert_stopped().await, 1);
    starter.assert_no_event(QUIET).await;
    assert_eq!(starter.instances(), 1);
    assert_eq!(starter.max_live(), 1);
}

/// Juju `TestOneWorkerStartStop`: `stop_worker` stops the worker and removes
/// its id; the runner then finishes cleanly.
#[tokio::test(start_paused = true)]
async fn start_then_stop_worker() {
    let runner = all_fatal().build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);

    runner.stop_worker("id").unwrap();
    assert_eq!(starter.assert_stopped().await, 1);
    // `worker` waits for a stopping id to leave, then reports it gone.
    assert_not_found(runner.worker("id").await, "id");
    assert!(runner.worker_names().is_empty());
    starter.assert_no_event(QUIET).await;

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.max_live(), 1);
}

/// Juju `TestOneWorkerStopFatalError`: the error a worker returns when it is
/// stopped still goes through `is_fatal`; `stop_worker` itself succeeds.
#[tokio::test(start_paused = true)]
async fn stop_error_is_fatal() {
    let runner = all_fatal().build();
    let starter = TestStarter::new();
    starter.set_stop_error(Some(failure("stop failed")));
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);

    runner.stop_worker("id").unwrap();
    assert_failure(&runner.wait().await, "stop failed");
    assert_eq!(starter.assert_stopped().await, 1);
    starter.assert_no_event(QUIET).await;
    assert_eq!(starter.max_live(), 1);
}

/// Juju `TestOneWorkerStartWhenStopping` / `TestStartWorkerWhenStarted`:
/// an id that is starting, running or still stopping cannot be started
/// again; once `stop_and_remove` has returned it can.
#[tokio::test(start_paused = true)]
async fn start_worker_with_a_taken_id() {
    let runner = Runner::builder().build();
    let starts = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let factory = || {
        let starts = starts.clone();
        let gate = gate.clone();
        move || {
            let starts = starts.clone();
            let gate = gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                starts.fetch_add(1, Ordering::SeqCst);
                Ok(slow_to_stop(Duration::from_secs(1)))
            }
        }
    };
    runner.start_worker("slow", factory()).unwrap();

    // Starting.
    assert_eq!(state_of(&runner, "slow"), WorkerState::Starting);
    assert_already_exists(runner.start_worker("slow", factory()), "slow");

    // Running.
    gate.add_permits(1);
    let first = runner.worker("slow").await.unwrap();
    assert_already_exists(runner.start_worker("slow", factory()), "slow");

    // Stopping: the instance takes a second to exit.
    runner.stop_worker("slow").unwrap();
    assert_eq!(state_of(&runner, "slow"), WorkerState::Stopping);
    assert_already_exists(runner.start_worker("slow", factory()), "slow");
    assert_eq!(runner.worker_names(), ["slow"]);

    // Stopping again is harmless, and waits for the exit.
    let stopping = Instant::now();
    runner.stop_and_remove("slow").await.unwrap();
    assert_eq!(stopping.elapsed(), Duration::from_secs(1));
    assert!(runner.worker_names().is_empty());
    assert_eq!(
        starts.load(Ordering::SeqCst),
        1,
        "rejected factories must never run"
    );

    // The id is free again.
    runner.start_worker("slow", factory()).unwrap();
    gate.add_permits(1);
    let second = runner.worker("slow").await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(starts.load(Ordering::SeqCst), 2);

    runner.kill();
    runner.wait().await.unwrap();
}

/// Juju `TestOneWorkerRestartDelay`: a failed worker is restarted exactly
/// after the restart delay, not a moment before.
#[tokio::test(start_paused = true)]
async fn restart_delay_is_exact() {
    let runner = restarting(Duration::from_millis(100)).build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);

    let died = Instant::now();
    assert!(starter.die(Err(failure("transient"))));
    assert_eq!(starter.assert_stopped().await, 1);
    assert_eq!(died.elapsed(), Duration::ZERO);

    advance(Duration::from_millis(99)).await;
    tokio::task::yield_now().await;
    assert_eq!(starter.instances(), 1, "restarted before the delay");
    assert_eq!(state_of(&runner, "id"), WorkerState::BackingOff);

    advance(Duration::from_millis(1)).await;
    assert_eq!(starter.assert_started().await, 2);
    assert_eq!(died.elapsed(), Duration::from_millis(100));

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.max_live(), 1);
}

/// Juju `TestOneWorkerShouldRestart`: when `should_restart` says no, a
/// failed worker is forgotten instead of restarted.
#[tokio::test(start_paused = true)]
async fn should_restart_false_forgets_the_worker() {
    let runner = restarting(Duration::from_millis(10))
        .should_restart(|_| false)
        .build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);

    assert!(starter.die(Err(failure("not again"))));
    assert_eq!(starter.assert_stopped().await, 1);
    starter.assert_no_event(QUIET).await;
    assert_not_found(runner.worker("id").await, "id");
    assert!(runner.worker_names().is_empty());
    assert!(!runner.is_stopping());

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.instances(), 1);
}

/// Juju `TestErrorImportance`: when many workers fail fatally, the runner
/// reports the most important error according to `more_important`.
#[tokio::test(start_paused = true)]
async fn most_important_error_wins() {
    fn level(error: &Error) -> Option<u32> {
        error.downcast_ref::<ErrorLevel>().map(|level| level.0)
    }
    let runner = all_fatal()
        .more_important(|new, current| level(new) > level(current))
        .build();
    let starters: Vec<TestStarter> = (0..10).map(|_| TestStarter::new()).collect();
    for (i, starter) in (0u32..).zip(&starters) {
        starter.set_stop_error(Some(Error::other(ErrorLevel(i))));
        runner
            .start_worker(i.to_string(), starter.factory())
            .unwrap();
        assert_eq!(starter.assert_started().await, 1);
    }

    runner.stop_worker("4").unwrap();
    let error = runner.wait().await.unwrap_err();
    assert_eq!(error.downcast_ref::<ErrorLevel>(), Some(&ErrorLevel(9)));
    for starter in &starters {
        assert_eq!(starter.assert_stopped().await, 1);
        assert_eq!(starter.max_live(), 1);
    }
}

/// Juju `TestStartWorkerWhenDead` / `TestStopWorkerWhenDead`: a runner that
/// is stopping or stopped refuses every operation with `Dead`.
#[tokio::test(start_paused = true)]
async fn operations_on_a_dead_runner_fail_with_dead() {
    let runner = all_fatal().build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);

    runner.kill();
    // Stopping, not yet stopped.
    assert_eq!(runner.report().state, RunnerState::Stopping);
    assert!(matches!(
        runner.start_worker("other", starter.factory()),
        Err(Error::Dead)
    ));
    assert!(matches!(runner.stop_worker("id"), Err(Error::Dead)));

    runner.wait().await.unwrap();
    assert_eq!(runner.report().state, RunnerState::Stopped);
    assert!(matches!(
        runner.start_worker("id", starter.factory()),
        Err(Error::Dead)
    ));
    assert!(matches!(runner.stop_worker("id"), Err(Error::Dead)));
    assert!(matches!(
        runner.stop_and_remove("id").await,
        Err(Error::Dead)
    ));
    assert!(matches!(runner.worker("id").await, Err(Error::Dead)));
    assert_eq!(starter.assert_stopped().await, 1);
    starter.assert_no_event(QUIET).await;
}

/// Juju `TestAllWorkersStoppedWhenOneDiesWithFatalError`: one fatal error
/// stops every other worker.
#[tokio::test(start_paused = true)]
async fn fatal_error_stops_every_worker() {
    let runner = restarting(Duration::from_millis(10)).build();
    let starters: Vec<TestStarter> = (0..10).map(|_| TestStarter::new()).collect();
    for (i, starter) in starters.iter().enumerate() {
        runner
            .start_worker(i.to_string(), starter.factory())
            .unwrap();
        assert_eq!(starter.assert_started().await, 1);
    }

    // The default `is_fatal`: only `TerminateAgent` stops the runner.
    assert!(starters[3].die(Err(Error::TerminateAgent)));
    assert!(runner.wait().await.unwrap_err().is_terminate_agent());
    for starter in &starters {
        assert_eq!(starter.assert_stopped().await, 1);
        starter.assert_no_event(QUIET).await;
        assert_eq!(starter.max_live(), 1);
    }
}

/// Juju `TestFatalErrorWhileStarting`: a fatal error while another worker's
/// start function is still running; the runner waits for that start, stops
/// the instance it produced, then reports the fatal error.
#[tokio::test(start_paused = true)]
async fn fatal_error_while_another_worker_starts() {
    let runner = all_fatal().build();
    let held = TestStarter::new();
    held.hold_starts();
    runner.start_worker("held", held.factory()).unwrap();
    let fatal = TestStarter::new();
    runner.start_worker("fatal", fatal.factory()).unwrap();
    assert_eq!(fatal.assert_started().await, 1);

    assert!(fatal.die(Err(failure("fatal"))));
    assert_eq!(fatal.assert_stopped().await, 1);
    assert!(
        timeout(Duration::from_secs(1), runner.wait())
            .await
            .is_err(),
        "the runner finished while a start function was still running"
    );
    let report = runner.report();
    assert_eq!(report.state, RunnerState::Stopping);
    assert_eq!(report.workers.keys().collect::<Vec<_>>(), ["held"]);
    assert_eq!(report.workers["held"].state, WorkerState::Stopping);

    held.release_start();
    assert_eq!(held.assert_started().await, 1);
    assert_eq!(held.assert_stopped().await, 1);
    assert_failure(&runner.wait().await, "fatal");
    held.assert_no_event(QUIET).await;
    assert_eq!(held.max_live(), 1);
}

/// Juju `TestFatalErrorWhileSelfStartWorker`: a start function that calls
/// `start_worker` on its own runner during a fatal shutdown gets `Dead`,
/// without deadlocking, and the runner reports the fatal error.
#[tokio::test(start_paused = true)]
async fn start_worker_from_a_factory_during_shutdown() {
    let runner = all_fatal().build();
    let gate = Arc::new(Semaphore::new(0));
    let (sent, received) = oneshot::channel();
    let sent = Arc::new(Mutex::new(Some(sent)));
    {
        let runner_inside = runner.clone();
        let gate = gate.clone();
        runner
            .start_worker("self-starter", move || {
                let runner = runner_inside.clone();
                let gate = gate.clone();
                let sent = sent.clone();
                async move {
                    gate.acquire().await.unwrap().forget();
                    let result = runner.start_worker("child", || async { Ok(idle_worker()) });
                    if let Some(sent) = sent.lock().unwrap().take() {
                        sent.send(result).unwrap();
                    }
                    Ok(idle_worker())
                }
            })
            .unwrap();
    }
    let fatal = TestStarter::new();
    runner.start_worker("fatal", fatal.factory()).unwrap();
    assert_eq!(fatal.assert_started().await, 1);

    assert!(fatal.die(Err(failure("fatal"))));
    assert!(
        timeout(Duration::from_secs(1), runner.wait())
            .await
            .is_err()
    );
    assert!(runner.is_stopping());

    gate.add_permits(1);
    let from_factory = timeout(Duration::from_secs(1), received)
        .await
        .expect("the factory's start_worker call returned")
        .unwrap();
    assert!(matches!(from_factory, Err(Error::Dead)), "{from_factory:?}");
    let result = timeout(Duration::from_secs(1), runner.wait())
        .await
        .expect("the runner finished");
    assert_failure(&result, "fatal");
}

/// Juju `TestWorker` (unknown id): `worker` of an id the runner never saw.
#[tokio::test(start_paused = true)]
async fn worker_of_an_unknown_id_is_not_found() {
    let runner = Runner::new();
    assert_not_found(runner.worker("nope").await, "nope");
    runner.kill();
    runner.wait().await.unwrap();
}

/// Juju `TestWorkerWithWorkerImmediatelyAvailable`: a running instance is
/// returned on the first poll, even against an already-cancelled token in a
/// biased select.
#[tokio::test(start_paused = true)]
async fn worker_immediately_available() {
    let runner = Runner::new();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    let first = runner.worker("id").await.unwrap();

    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let got = tokio::select! {
        biased;
        got = runner.worker("id") => got.unwrap(),
        () = cancelled.cancelled() => panic!("a running instance was not returned on the first poll"),
    };
    assert!(Arc::ptr_eq(&first, &got));
    assert_eq!(instance_number(got), 1);

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.max_live(), 1);
}

/// Juju `TestWorkerWithWorkerNotImmediatelyAvailable`: `worker` waits for a
/// start function in progress and resolves when it returns.
#[tokio::test(start_paused = true)]
async fn worker_waits_for_a_start_in_progress() {
    let runner = Runner::new();
    let starter = TestStarter::new();
    starter.hold_starts();
    runner.start_worker("id", starter.factory()).unwrap();

    let mut waiting = Box::pin(runner.worker("id"));
    assert!(timeout(Duration::from_secs(1), &mut waiting).await.is_err());
    starter.release_start();
    assert_eq!(instance_number(waiting.await.unwrap()), 1);

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.max_live(), 1);
}

/// Juju `TestWorkerWithAbort`: dropping a waiting `worker` future (here, in
/// a select against a token) during a restart delay has no effect on the
/// runner.
#[tokio::test(start_paused = true)]
async fn worker_future_dropped_during_restart_delay() {
    let runner = restarting(Duration::from_secs(10)).build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);

    let died = Instant::now();
    assert!(starter.die(Err(failure("transient"))));
    assert_eq!(starter.assert_stopped().await, 1);

    let abort = CancellationToken::new();
    let abort_later = abort.clone();
    tokio::spawn(async move {
        sleep(Duration::from_secs(1)).await;
        abort_later.cancel();
    });
    tokio::select! {
        got = runner.worker("id") => panic!("worker resolved during the restart delay: {:?}", got.map(drop)),
        () = abort.cancelled() => {}
    }
    assert_eq!(died.elapsed(), Duration::from_secs(1));

    // The runner carries on: the restart happens on schedule.
    assert_eq!(instance_number(runner.worker("id").await.unwrap()), 2);
    assert_eq!(died.elapsed(), Duration::from_secs(10));
    assert_eq!(starter.assert_started().await, 2);
    assert_eq!(runner.report().workers["id"].restarts, 1);

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.max_live(), 1);
}

/// Juju `TestWorkerConcurrent`: concurrent `worker` calls all get the same
/// instance.
#[tokio::test(start_paused = true)]
async fn worker_called_concurrently() {
    let runner = Runner::new();
    let starter = TestStarter::new();
    starter.hold_starts();
    runner.start_worker("id", starter.factory()).unwrap();

    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let runner = runner.clone();
            tokio::spawn(async move { runner.worker("id").await })
        })
        .collect();
    sleep(Duration::from_secs(1)).await;
    assert!(waiters.iter().all(|waiter| !waiter.is_finished()));

    starter.release_start();
    let mut instances = Vec::new();
    for waiter in waiters {
        instances.push(waiter.await.unwrap().unwrap());
    }
    assert!(
        instances
            .iter()
            .all(|instance| Arc::ptr_eq(instance, &instances[0]))
    );
    assert_eq!(instance_number(instances[0].clone()), 1);

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.instances(), 1);
    assert_eq!(starter.max_live(), 1);
}

/// Juju `TestWorkerWhenRunnerKilledWhileWaiting`: a waiting `worker` call
/// resolves to `Dead` when the runner is killed.
#[tokio::test(start_paused = true)]
async fn worker_when_runner_killed_while_waiting() {
    let runner = Runner::new();
    let starter = TestStarter::new();
    starter.hold_starts();
    runner.start_worker("id", starter.factory()).unwrap();

    let mut waiting = Box::pin(runner.worker("id"));
    assert!(timeout(Duration::from_secs(1), &mut waiting).await.is_err());
    runner.kill();
    assert!(matches!(waiting.await, Err(Error::Dead)));

    starter.release_start();
    runner.wait().await.unwrap();
    assert_eq!(starter.assert_started().await, 1);
    assert_eq!(starter.assert_stopped().await, 1);
}

/// Juju `TestWorkerWhenWorkerRemovedWhileWaiting`: a waiting `worker` call
/// resolves to `NotFound` when the id is stopped during its restart delay,
/// without waiting for the delay.
#[tokio::test(start_paused = true)]
async fn worker_when_removed_while_waiting() {
    let runner = restarting(Duration::from_secs(10)).build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);

    let died = Instant::now();
    assert!(starter.die(Err(failure("transient"))));
    assert_eq!(starter.assert_stopped().await, 1);

    let mut waiting = Box::pin(runner.worker("id"));
    assert!(timeout(Duration::from_secs(1), &mut waiting).await.is_err());
    runner.stop_worker("id").unwrap();
    assert_not_found(waiting.await, "id");
    assert_eq!(died.elapsed(), Duration::from_secs(1));
    starter.assert_no_event(QUIET).await;

    runner.kill();
    runner.wait().await.unwrap();
}

/// `stop_and_remove` returns the stopped instance's error (without making a
/// non-fatal error fatal), frees the id, and returns `Ok` for a worker that
/// was waiting to restart, which is never started again.
#[tokio::test(start_paused = true)]
async fn stop_and_remove() {
    let runner = restarting(Duration::from_secs(5)).build();
    let failing_stop = TestStarter::new();
    failing_stop.set_stop_error(Some(failure("stop failed")));
    runner
        .start_worker("failing-stop", failing_stop.factory())
        .unwrap();
    runner.worker("failing-stop").await.unwrap();

    assert_failure(&runner.stop_and_remove("failing-stop").await, "stop failed");
    assert_eq!(failing_stop.assert_started().await, 1);
    assert_eq!(failing_stop.assert_stopped().await, 1);
    assert_not_found(runner.stop_and_remove("failing-stop").await, "failing-stop");
    assert!(!runner.is_stopping());

    let backing_off = TestStarter::new();
    runner
        .start_worker("backing-off", backing_off.factory())
        .unwrap();
    assert_eq!(backing_off.assert_started().await, 1);
    assert!(backing_off.die(Err(failure("transient"))));
    assert_eq!(backing_off.assert_stopped().await, 1);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(state_of(&runner, "backing-off"), WorkerState::BackingOff);

    runner.stop_and_remove("backing-off").await.unwrap();
    assert!(runner.worker_names().is_empty());
    backing_off.assert_no_event(QUIET).await;
    failing_stop.assert_no_event(QUIET).await;

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(failing_stop.max_live(), 1);
    assert_eq!(backing_off.max_live(), 1);
}

/// The report shows each state at the right moment, the restart count, the
/// last error, the start and restart times, and serialises to JSON.
#[tokio::test(start_paused = true)]
async fn report_follows_the_worker_and_serialises() {
    let runner = restarting(Duration::from_secs(5)).name("reporter").build();
    let starter = TestStarter::new();
    starter.hold_starts();
    runner.start_worker("w", starter.factory()).unwrap();

    // Starting.
    let report = runner.report();
    assert_eq!(report.name, "reporter");
    assert_eq!(report.state, RunnerState::Running);
    let worker = &report.workers["w"];
    assert_eq!(worker.state, WorkerState::Starting);
    assert_eq!(worker.restarts, 0);
    assert_eq!(worker.last_error, None);
    assert_eq!(worker.started_at, None);
    assert_eq!(worker.next_restart_at, None);

    // Running, for two seconds.
    starter.release_start();
    assert_eq!(starter.assert_started().await, 1);
    runner.worker("w").await.unwrap();
    sleep(Duration::from_secs(2)).await;
    let report = runner.report();
    let worker = &report.workers["w"];
    assert_eq!(worker.state, WorkerState::Running);
    assert_eq!(worker.next_restart_at, None);
    let ran = SystemTime::now()
        .duration_since(worker.started_at.expect("started_at once running"))
        .unwrap();
    assert!(
        ran >= Duration::from_secs(2) && ran < Duration::from_secs(3),
        "{ran:?}"
    );

    // Backing off: failed a second ago, restarts in four.
    assert!(starter.die(Err(failure("kaput"))));
    assert_eq!(starter.assert_stopped().await, 1);
    sleep(Duration::from_secs(1)).await;
    let report = runner.report();
    let worker = &report.workers["w"];
    assert_eq!(worker.state, WorkerState::BackingOff);
    assert_eq!(worker.restarts, 0);
    assert_eq!(worker.last_error.as_deref(), Some("kaput"));
    let until = worker
        .next_restart_at
        .expect("next_restart_at while backing off")
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        until > Duration::from_millis(3500) && until <= Duration::from_secs(4),
        "{until:?}"
    );

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["name"], "reporter");
    assert_eq!(json["state"], "running");
    let worker_json = json["workers"]["w"].as_object().unwrap();
    let mut keys: Vec<&str> = worker_json.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "last_error",
            "next_restart_at",
            "restarts",
            "started_at",
            "state"
        ]
    );
    assert_eq!(worker_json["state"], "backing_off");
    assert_eq!(worker_json["restarts"], 0);
    assert_eq!(worker_json["last_error"], "kaput");
    assert!(
        worker_json["next_restart_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(worker_json["started_at"].as_str().unwrap().ends_with('Z'));
    let back: RunnerReport = serde_json::from_value(json).unwrap();
    assert_eq!(back.workers["w"].state, WorkerState::BackingOff);
    assert_eq!(back.workers["w"].last_error.as_deref(), Some("kaput"));
    let drift = worker
        .next_restart_at
        .unwrap()
        .duration_since(back.workers["w"].next_restart_at.unwrap())
        .unwrap();
    assert!(
        drift < Duration::from_millis(1),
        "RFC 3339 keeps milliseconds: {drift:?}"
    );

    // Restarted (starts are still held: let the restart through).
    starter.release_start();
    assert_eq!(starter.assert_started().await, 2);
    runner.worker("w").await.unwrap();
    let report = runner.report();
    let worker = &report.workers["w"];
    assert_eq!(worker.state, WorkerState::Running);
    assert_eq!(worker.restarts, 1);
    assert_eq!(worker.last_error.as_deref(), Some("kaput"));
    assert_eq!(worker.next_restart_at, None);
    assert!(worker.started_at.is_some());

    // Stopping: visible as soon as the stop is requested.
    runner.stop_worker("w").unwrap();
    let report = runner.report();
    assert_eq!(report.workers["w"].state, WorkerState::Stopping);
    assert_eq!(
        serde_json::to_value(&report).unwrap()["workers"]["w"]["state"],
        "stopping"
    );
    assert_eq!(starter.assert_stopped().await, 2);

    runner.kill();
    assert_eq!(
        serde_json::to_value(runner.report()).unwrap()["state"],
        "stopping"
    );
    runner.wait().await.unwrap();
    let report = runner.report();
    assert_eq!(report.state, RunnerState::Stopped);
    assert!(report.workers.is_empty());
    assert_eq!(starter.max_live(), 1);
}

// ---------------------------------------------------------------------------
// Gaps closed by the port
// ---------------------------------------------------------------------------

/// Gap: Juju could restart a worker stopped during its restart delay. Here
/// it is never started again.
#[tokio::test(start_paused = true)]
async fn stop_during_restart_delay_is_final() {
    let runner = restarting(Duration::from_secs(1)).build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);
    assert!(starter.die(Err(failure("transient"))));
    assert_eq!(starter.assert_stopped().await, 1);

    runner.stop_worker("id").unwrap();
    starter.assert_no_event(QUIET).await;
    assert!(runner.worker_names().is_empty());
    assert_eq!(starter.instances(), 1);

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.max_live(), 1);
}

/// Gap: a panicking start function is an error for that worker only; with
/// the default rules it is restarted and the runner survives.
#[tokio::test(start_paused = true)]
async fn panic_in_start_function_is_restarted() {
    let runner = restarting(Duration::from_secs(1)).build();
    let starter = TestStarter::new();
    starter.set_start_panics(true);
    runner.start_worker("id", starter.factory()).unwrap();

    sleep(Duration::from_millis(500)).await;
    let report = runner.report();
    assert_eq!(report.workers["id"].state, WorkerState::BackingOff);
    assert_eq!(
        report.workers["id"].last_error.as_deref(),
        Some("worker panicked: test starter told to panic")
    );
    assert!(!runner.is_stopping());

    starter.set_start_panics(false);
    assert_eq!(starter.assert_started().await, 1);
    assert_eq!(runner.report().workers["id"].restarts, 1);

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.max_live(), 1);
}

/// Gap: a start function's panic is `Error::Panicked`, which `is_fatal` can
/// match to stop the runner.
#[tokio::test(start_paused = true)]
async fn panic_in_start_function_can_be_fatal() {
    let runner = restarting(Duration::from_secs(1))
        .is_fatal(|error| matches!(error, Error::Panicked { .. }))
        .build();
    let bystander = TestStarter::new();
    runner
        .start_worker("bystander", bystander.factory())
        .unwrap();
    assert_eq!(bystander.assert_started().await, 1);
    let starter = TestStarter::new();
    starter.set_start_panics(true);
    runner.start_worker("id", starter.factory()).unwrap();

    match runner.wait().await {
        Err(Error::Panicked { message }) => assert_eq!(&*message, "test starter told to panic"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(bystander.assert_stopped().await, 1);
    assert_eq!(starter.instances(), 0);
}

/// Gap: a panic in a worker's body is `Error::Panicked` for that worker: it
/// is restarted, the other workers are untouched; and it can be fatal.
#[tokio::test(start_paused = true)]
async fn panic_in_worker_body() {
    fn bomb(
        starts: &Arc<AtomicUsize>,
    ) -> impl FnMut() -> std::future::Ready<Result<SimpleWorker, Error>> + Send + 'static {
        let starts = starts.clone();
        move || {
            let first = starts.fetch_add(1, Ordering::SeqCst) == 0;
            std::future::ready(Ok(SimpleWorker::spawn(
                move |stop: CancellationToken| async move {
                    assert!(!first, "body exploded");
                    stop.cancelled().await;
                    Ok(())
                },
            )))
        }
    }

    // Not fatal: restarted.
    let runner = restarting(Duration::from_secs(1)).build();
    let bystander = TestStarter::new();
    runner
        .start_worker("bystander", bystander.factory())
        .unwrap();
    assert_eq!(bystander.assert_started().await, 1);
    let starts = Arc::new(AtomicUsize::new(0));
    runner.start_worker("bomb", bomb(&starts)).unwrap();
    let panicked = Instant::now();
    sleep(Duration::from_millis(500)).await;
    let report = runner.report();
    assert_eq!(report.workers["bomb"].state, WorkerState::BackingOff);
    assert_eq!(
        report.workers["bomb"].last_error.as_deref(),
        Some("worker panicked: body exploded")
    );
    sleep(Duration::from_millis(500)).await;
    runner.worker("bomb").await.unwrap();
    assert_eq!(panicked.elapsed(), Duration::from_secs(1));
    assert_eq!(starts.load(Ordering::SeqCst), 2);
    assert_eq!(runner.report().workers["bomb"].restarts, 1);
    bystander.assert_no_event(QUIET).await;
    runner.kill();
    runner.wait().await.unwrap();

    // Fatal: the runner reports the panic.
    let runner = all_fatal().build();
    runner
        .start_worker("bomb", bomb(&Arc::new(AtomicUsize::new(0))))
        .unwrap();
    match runner.wait().await {
        Err(Error::Panicked { message }) => assert_eq!(&*message, "body exploded"),
        other => panic!("expected Panicked, got {other:?}"),
    }
}

/// Gap: restart delays grow exponentially (1 s, 2 s, 4 s without jitter)
/// and start over after a run of at least `reset_after`.
#[tokio::test(start_paused = true)]
async fn backoff_grows_and_resets_after_a_stable_run() {
    let runner = Runner::builder()
        .backoff(
            Backoff::new(Duration::from_secs(1))
                .jitter(0.0)
                .reset_after(Duration::from_secs(10)),
        )
        .build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);

    for (n, delay) in [(1, 1), (2, 2), (3, 4)] {
        let died = Instant::now();
        assert!(starter.die(Err(failure("flaky"))));
        assert_eq!(starter.assert_stopped().await, n);
        assert_eq!(starter.assert_started().await, n + 1);
        assert_eq!(
            died.elapsed(),
            Duration::from_secs(delay),
            "delay before instance {}",
            n + 1
        );
    }

    // Instance 4 runs for the stable period: the next delay is 1 s, not 8 s.
    runner.worker("id").await.unwrap();
    sleep(Duration::from_secs(10)).await;
    let died = Instant::now();
    assert!(starter.die(Err(failure("flaky"))));
    assert_eq!(starter.assert_stopped().await, 4);
    assert_eq!(starter.assert_started().await, 5);
    assert_eq!(died.elapsed(), Duration::from_secs(1));
    assert_eq!(runner.report().workers["id"].restarts, 4);

    runner.kill();
    runner.wait().await.unwrap();
    assert_eq!(starter.max_live(), 1);
}

/// Gap: a crash loop escalates. With `restart_intensity(3, 10 s)`, the
/// failure that would need a 4th restart within 10 s is fatal.
#[tokio::test(start_paused = true)]
async fn restart_intensity_exceeded_is_fatal() {
    let runner = restarting(Duration::from_secs(1))
        .restart_intensity(3, Duration::from_secs(10))
        .build();
    let starter = TestStarter::new();
    runner.start_worker("flaky", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);
    for n in 1..=3 {
        assert!(starter.die(Err(failure("flaky"))));
        assert_eq!(starter.assert_stopped().await, n);
        assert_eq!(starter.assert_started().await, n + 1);
    }
    assert!(starter.die(Err(failure("flaky"))));
    assert_eq!(starter.assert_stopped().await, 4);

    let error = runner.wait().await.unwrap_err();
    let Error::RestartIntensityExceeded {
        id,
        max_restarts,
        within,
        last_error,
    } = &error
    else {
        panic!("expected RestartIntensityExceeded, got {error:?}");
    };
    assert_eq!(&**id, "flaky");
    assert_eq!(*max_restarts, 3);
    assert_eq!(*within, Duration::from_secs(10));
    assert_eq!(
        last_error.downcast_ref::<Failure>(),
        Some(&Failure("flaky"))
    );
    assert_eq!(error.source().unwrap().to_string(), "flaky");
    starter.assert_no_event(QUIET).await;
    assert_eq!(starter.instances(), 4);
    assert_eq!(starter.max_live(), 1);
}

/// Gap: restarts spread wider than the intensity window never escalate.
#[tokio::test(start_paused = true)]
async fn restarts_outside_the_intensity_window_are_fine() {
    let runner = restarting(Duration::from_secs(1))
        .restart_intensity(1, Duration::from_secs(10))
        .build();
    let starter = TestStarter::new();
    runner.start_worker("id", starter.factory()).unwrap();
    assert_eq!(starter.assert_started().await, 1);
    for n in 1..=5 {
        sleep(Duration::from_secs(10)).await;
        assert!(starter.die(Err(failure("rare"))));
        assert_eq!(starter.assert_stopped().await, n);
        assert_eq!(starter.assert_started().await, n + 1);
    }
    assert!(!runner.is_stopping());

    // Two failures within 10 s: the second restart exceeds the limit of 1.
    assert!(starter.die(Err(failure("rare"))));
    assert_eq!(starter.assert_stopped().await, 6);
    assert!(matches!(
        runner.wait().await,
        Err(Error::RestartIntensityExceeded {
            max_restarts: 1,
            ..
        })
    ));
    assert_eq!(starter.max_live(), 1);
}

/// Gap: shutdown is bounded. A worker that ignores `kill` is aborted after
/// exactly the shutdown timeout and named in `ShutdownTimedOut`.
#[tokio::test(start_paused = true)]
async fn shutdown_timeout_aborts_and_names_stragglers() {
    let runner = Runner::builder()
        .shutdown_timeout(Duration::from_secs(5))
        .build();
    runner
        .start_worker("stubborn", || async { Ok(stubborn_worker()) })
        .unwrap();
    let polite = TestStarter::new();
    runner.start_worker("polite", polite.factory()).unwrap();
    runner.worker("stubborn").await.unwrap();
    assert_eq!(polite.assert_started().await, 1);

    let killed = Instant::now();
    runner.kill();
    assert_eq!(polite.assert_stopped().await, 1);
    assert!(
        timeout(Duration::from_millis(4999), runner.wait())
            .await
            .is_err()
    );

    let error = runner.wait().await.unwrap_err();
    assert_eq!(killed.elapsed(), Duration::from_secs(5));
    let Error::ShutdownTimedOut { timeout, aborted } = &error else {
        panic!("expected ShutdownTimedOut, got {error:?}");
    };
    assert_eq!(*timeout, Duration::from_secs(5));
    assert_eq!(
        aborted.iter().map(|id| &**id).collect::<Vec<_>>(),
        ["stubborn"]
    );
    assert!(runner.report().workers.is_empty());
    assert_eq!(polite.max_live(), 1);
}

/// An explicit abort skips the grace period and is never reported as a
/// clean stop: a parent aborting a child runner sees `Aborted`.
#[tokio::test(start_paused = true)]
async fn abort_stops_stragglers_at_once_and_is_reported() {
    let runner = Runner::builder()
        .shutdown_timeout(Duration::from_secs(5))
        .build();
    runner
        .start_worker("stubborn", || async { Ok(stubborn_worker()) })
        .unwrap();
    runner.worker("stubborn").await.unwrap();

    let aborted_at = Instant::now();
    runner.abort();
    assert!(matches!(runner.wait().await, Err(Error::Aborted)));
    assert_eq!(aborted_at.elapsed(), Duration::ZERO);
    assert_eq!(runner.report().state, RunnerState::Stopped);
}

/// Aborting a runner with nothing left to abort is a clean stop.
#[tokio::test(start_paused = true)]
async fn abort_of_an_idle_runner_is_clean() {
    let runner = Runner::new();
    runner.abort();
    assert!(runner.wait().await.is_ok());
}

/// A start function that fails at once, restarted with no delay, must
/// still let the rest of its thread run (it used to loop inside one poll).
#[test]
fn a_start_failing_at_once_with_no_delay_does_not_starve_its_thread() {
    run_with_deadline(Duration::from_secs(60), || async {
        let runner = restarting(Duration::ZERO).build();
        let starts = Arc::new(AtomicUsize::new(0));
        let counted = starts.clone();
        runner
            .start_worker("churn", move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Err::<SimpleWorker, _>(failure("cannot start")) }
            })
            .unwrap();
        // Only runs if the churning supervisor yields.
        while starts.load(Ordering::SeqCst) < 1000 {
            tokio::task::yield_now().await;
        }
        let _last = runner.stop_and_remove("churn").await;
        assert!(runner.report().workers.is_empty());
        runner.kill();
        runner.wait().await.unwrap();
    });
}

// ---------------------------------------------------------------------------
// Nesting
// ---------------------------------------------------------------------------

/// Runners nest: a runner started as a worker of another is stopped with
/// it, and stops its own workers.
#[tokio::test(start_paused = true)]
async fn nested_runner_is_stopped_with_its_parent() {
    let parent = Runner::builder().name("parent").build();
    let leaf = TestStarter::new();
    let leaf_factory = leaf.clone();
    parent
        .start_worker("child", move || {
            let leaf = leaf_factory.clone();
            async move {
                let child = Runner::builder().name("child").build();
                child.start_worker("leaf", leaf.factory())?;
                Ok(child)
            }
        })
        .unwrap();
    assert_eq!(leaf.assert_started().await, 1);

    let any: Arc<dyn Any + Send + Sync> = parent.worker("child").await.unwrap();
    let child = any.downcast::<Runner>().expect("the instance is a Runner");
    let report = child.report();
    assert_eq!(report.name, "child");
    assert_eq!(report.workers.keys().collect::<Vec<_>>(), ["leaf"]);

    parent.kill();
    parent.wait().await.unwrap();
    assert_eq!(leaf.assert_stopped().await, 1);
    assert!(child.is_stopping());
    child.wait().await.unwrap();
    assert_eq!(child.report().state, RunnerState::Stopped);
    leaf.assert_no_event(QUIET).await;
    assert_eq!(leaf.max_live(), 1);
}

/// Runners nest: a child runner's fatal error is its result, which its
/// parent treats like any worker error (here: fatal too).
#[tokio::test(start_paused = true)]
async fn nested_runner_fatal_error_reaches_the_parent() {
    let parent = all_fatal().name("parent").build();
    let leaf = TestStarter::new();
    let sibling = TestStarter::new();
    let leaf_factory = leaf.clone();
    parent
        .start_worker("child", move || {
            let leaf = leaf_factory.clone();
            async move {
                let child = all_fatal().name("child").build();
                child.start_worker("leaf", leaf.factory())?;
                Ok(child)
            }
        })
        .unwrap();
    parent.start_worker("sibling", sibling.factory()).unwrap();
    assert_eq!(leaf.assert_started().await, 1);
    assert_eq!(sibling.assert_started().await, 1);

    assert!(leaf.die(Err(failure("leaf failed"))));
    assert_failure(&parent.wait().await, "leaf failed");
    assert_eq!(leaf.assert_stopped().await, 1);
    assert_eq!(sibling.assert_stopped().await, 1);
    leaf.assert_no_event(QUIET).await;
}
