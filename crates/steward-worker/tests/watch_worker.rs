//! `WatchWorker`: Juju's `worker/notifyworker_test.go` and
//! `worker/stringsworker_test.go`, ported once as generic test bodies and
//! run for a notify watcher (`Change = ()`) and for a strings watcher
//! (`Change = Vec<String>`), plus coalescing of large bursts.
//!
//! Everything runs on paused time in a current-thread runtime: the worker
//! task only runs while the test awaits, so "send a change and kill in the
//! same step" really is one step. Every wait is bounded by [`within`].

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use steward_worker::{
    BoxFuture, Change, ChangeSender, Error, QueueWatcher, SetUpError, WatchHandler, WatchWorker,
    Watcher, Worker, change_queue,
};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- helpers

/// Paused time: a wait that cannot finish fails at once instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A named error of the test's own, to check which error came out.
#[derive(Debug)]
struct TestError(&'static str);

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for TestError {}

fn test_error(name: &'static str) -> Error {
    Error::other(TestError(name))
}

/// The name of a bare `Error::Other(TestError)`; panics on anything else
/// (in particular on an `Error::WithCleanup` wrapper).
fn bare(error: &Error) -> &'static str {
    match error {
        Error::Other(_) => error.downcast_ref::<TestError>().expect("a TestError").0,
        other => panic!("expected a bare test error, got {other:?}"),
    }
}

/// Splits an `Error::WithCleanup` into the primary error's name and the
/// names of the cleanup errors.
fn with_cleanup(error: &Error) -> (&'static str, Vec<&'static str>) {
    match error {
        Error::WithCleanup {
            error: primary,
            cleanup,
        } => (bare(primary), cleanup.iter().map(bare).collect()),
        other => panic!("expected an error with cleanup context, got {other:?}"),
    }
}

/// The two change types every watch-worker case runs with.
trait Kind: 'static {
    type C: Change + Clone + PartialEq + fmt::Debug;
    /// One change naming `keys` (a notify change ignores them).
    fn change<S: AsRef<str>>(keys: &[S]) -> Self::C;
}

struct NotifyKind;

impl Kind for NotifyKind {
    type C = ();
    fn change<S: AsRef<str>>(_keys: &[S]) {}
}

struct StringsKind;

impl Kind for StringsKind {
    type C = Vec<String>;
    fn change<S: AsRef<str>>(keys: &[S]) -> Vec<String> {
        keys.iter().map(|key| key.as_ref().to_owned()).collect()
    }
}

// ---------------------------------------------------------- watcher double

/// What the test can see of, and script into, a [`TestWatcher`].
#[derive(Default)]
struct WatcherProbe {
    kills: AtomicUsize,
    stop_error: Mutex<Option<Error>>,
}

impl WatcherProbe {
    fn kills(&self) -> usize {
        self.kills.load(Ordering::SeqCst)
    }

    /// Makes the watcher's `wait` fail with `error` once it has stopped.
    fn fail_stop(&self, error: Error) {
        *lock(&self.stop_error) = Some(error);
    }
}

/// A watcher fed by a `change_queue` (the test holds the sender) whose
/// stop can be made to fail.
struct TestWatcher<C: Change> {
    queue: QueueWatcher<C>,
    probe: Arc<WatcherProbe>,
}

impl<C: Change> Worker for TestWatcher<C> {
    fn kill(&self) {
        self.probe.kills.fetch_add(1, Ordering::SeqCst);
        self.queue.kill();
    }

    fn wait(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let stopped = self.queue.wait().await;
            match lock(&self.probe.stop_error).clone() {
                Some(error) => Err(error),
                None => stopped,
            }
        })
    }
}

impl<C: Change> Watcher for TestWatcher<C> {
    type Change = C;

    fn next_change(&mut self) -> BoxFuture<'_, Result<C, Error>> {
        self.queue.next_change()
    }
}

// ---------------------------------------------------------- handler double

/// What the handler did, in order.
struct Log<C> {
    actions: Vec<&'static str>,
    /// The change of every `handle` call.
    changes: Vec<C>,
    /// The value of the harness's `state` when each `handle` started.
    states: Vec<usize>,
    /// `handle` calls that ran to their end.
    handled: usize,
    /// `handle` calls that returned early because `stop` fired.
    stop_seen: usize,
}

/// The shared record of an [`ActionsHandler`]: `Arc<Mutex<..>>` plus a
/// wake-up for tests waiting on it.
struct Recorder<C> {
    log: Mutex<Log<C>>,
    changed: Notify,
}

impl<C: Clone> Recorder<C> {
    fn record(&self, update: impl FnOnce(&mut Log<C>)) {
        update(&mut lock(&self.log));
        self.changed.notify_waiters();
    }

    fn actions(&self) -> Vec<&'static str> {
        lock(&self.log).actions.clone()
    }

    fn changes(&self) -> Vec<C> {
        lock(&self.log).changes.clone()
    }

    fn handled(&self) -> usize {
        lock(&self.log).handled
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Log<C>) -> bool) {
        within(what, async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if done(&lock(&self.log)) {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }

    /// Waits until `handle` was entered `n` times in all.
    async fn wait_for_handle_calls(&self, n: usize) {
        self.wait_for("handle calls", |log| log.changes.len() >= n)
            .await;
    }

    /// Waits until `n` `handle` calls ran to their end.
    async fn wait_for_handled(&self, n: usize) {
        self.wait_for("handled changes", |log| log.handled >= n)
            .await;
    }
}

/// A scriptable [`WatchHandler`] recording "setup", "handler" and
/// "teardown" (Juju's `actionsHandler`).
struct ActionsHandler<W: Watcher> {
    watcher: Option<W>,
    rec: Arc<Recorder<W::Change>>,
    state: Arc<AtomicUsize>,
    /// Set-up fails with this; the bool says whether it still returns its
    /// watcher.
    set_up_error: Option<(Error, bool)>,
    handle_error: Option<Error>,
    tear_down_error: Option<Error>,
    /// Each `handle` takes a permit before returning.
    gate: Option<Arc<Semaphore>>,
    /// A gated `handle` returns early when `stop` fires.
    observe_stop: bool,
}

impl<W: Watcher> ActionsHandler<W> {
    fn fail_set_up(mut self, error: Error, returns_watcher: bool) -> Self {
        self.set_up_error = Some((error, returns_watcher));
        self
    }

    fn fail_handle(mut self, error: Error) -> Self {
        self.handle_error = Some(error);
        self
    }

    fn fail_tear_down(mut self, error: Error) -> Self {
        self.tear_down_error = Some(error);
        self
    }

    /// Every `handle` blocks until the returned semaphore gives a permit.
    fn gated(mut self) -> (Self, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        self.gate = Some(gate.clone());
        (self, gate)
    }

    fn observing_stop(mut self) -> Self {
        self.observe_stop = true;
        self
    }
}

impl<W: Watcher> WatchHandler for ActionsHandler<W>
where
    W::Change: Clone,
{
    type Watcher = W;

    async fn set_up(&mut self) -> Result<W, SetUpError<W>> {
        self.rec.record(|log| log.actions.push("setup"));
        let watcher = self.watcher.take().expect("set_up is called once");
        match self.set_up_error.take() {
            None => Ok(watcher),
            Some((error, returns_watcher)) => Err(SetUpError {
                error,
                watcher: returns_watcher.then_some(watcher),
            }),
        }
    }

    async fn handle(&mut self, change: W::Change, stop: &CancellationToken) -> Result<(), Error> {
        let state = self.state.load(Ordering::SeqCst);
        self.rec.record(|log| {
            log.actions.push("handler");
            log.changes.push(change);
            log.states.push(state);
        });
        if let Some(gate) = &self.gate {
            if self.observe_stop {
                tokio::select! {
                    permit = gate.acquire() => permit.expect("gate stays open").forget(),
                    () = stop.cancelled() => {
                        self.rec.record(|log| log.stop_seen += 1);
                        return Ok(());
                    }
                }
            } else {
                gate.acquire().await.expect("gate stays open").forget();
            }
        }
        self.rec.record(|log| log.handled += 1);
        self.handle_error.take().map_or(Ok(()), Err)
    }

    async fn tear_down(&mut self) -> Result<(), Error> {
        self.rec.record(|log| log.actions.push("teardown"));
        self.tear_down_error.take().map_or(Ok(()), Err)
    }
}

/// The test's side of one handler + watcher pair.
struct Harness<C: Change> {
    sender: ChangeSender<C>,
    probe: Arc<WatcherProbe>,
    rec: Arc<Recorder<C>>,
    state: Arc<AtomicUsize>,
}

fn harness<C: Change + Clone>() -> (Harness<C>, ActionsHandler<TestWatcher<C>>) {
    let (sender, queue) = change_queue::<C>();
    let probe = Arc::new(WatcherProbe::default());
    let rec = Arc::new(Recorder {
        log: Mutex::new(Log {
            actions: Vec::new(),
            changes: Vec::new(),
            states: Vec::new(),
            handled: 0,
            stop_seen: 0,
        }),
        changed: Notify::new(),
    });
    let state = Arc::new(AtomicUsize::new(0));
    let handler = ActionsHandler {
        watcher: Some(TestWatcher {
            queue,
            probe: probe.clone(),
        }),
        rec: rec.clone(),
        state: state.clone(),
        set_up_error: None,
        handle_error: None,
        tear_down_error: None,
        gate: None,
        observe_stop: false,
    };
    let harness = Harness {
        sender,
        probe,
        rec,
        state,
    };
    (harness, handler)
}

impl<C: Change> Harness<C> {
    /// The worker stopped the watcher: it was killed and accepts no more
    /// changes.
    fn assert_watcher_stopped(&self, change: C) {
        assert!(self.probe.kills() >= 1, "the watcher was never killed");
        assert!(self.sender.is_closed());
        assert!(!self.sender.send(change), "a stopped watcher took a change");
    }
}

async fn wait_for_end(worker: &WatchWorker) -> Result<(), Error> {
    within("the worker to end", worker.wait()).await
}

/// Asserts that the worker does not end while nothing makes it (paused
/// time jumps ahead as soon as everything is idle).
async fn assert_still_running(worker: &WatchWorker) {
    let ended = tokio::time::timeout(Duration::from_secs(3600), worker.wait()).await;
    assert!(ended.is_err(), "worker ended early with {ended:?}");
}

/// Instantiates every generic case for both change types.
macro_rules! for_both_kinds {
    ($($name:ident => $juju:literal),* $(,)?) => {
        mod notify_watcher {
            $(
                #[doc = concat!("Ports Juju's `notifyWorkerSuite.", $juju, "`.")]
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name::<super::NotifyKind>().await;
                }
            )*
        }
        mod strings_watcher {
            $(
                #[doc = concat!("Ports Juju's `stringsWorkerSuite.", $juju, "`.")]
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name::<super::StringsKind>().await;
                }
            )*
        }
    };
}

for_both_kinds! {
    kill => "TestKill",
    stop => "TestStop",
    wait => "TestWait",
    set_up_and_tear_down_are_called_once_in_order => "TestCallSetUpAndTearDown",
    changes_trigger_handler => "TestChangesTriggerHandler",
    set_up_failure_stops_watcher => "TestSetUpFailureStopsWithTearDown",
    set_up_failure_without_watcher => "TestSetUpFailureStopsWithTearDown (no watcher returned)",
    set_up_failure_keeps_stop_failure_as_context => "TestSetUpFailureStopsWithTearDown (watcher stop fails too)",
    watcher_stop_failure_propagates => "TestWatcherStopFailurePropagates",
    clean_run_notices_tear_down_error => "TestCleanRunNoticesTearDownError",
    clean_run_reports_first_cleanup_error => "TestCleanRunNoticesTearDownError (stop and tear-down both fail)",
    handle_error_stops_worker_and_watcher => "TestHandleErrorStopsWorkerAndWatcher",
    handle_error_keeps_tear_down_error_as_context => "TestHandleErrorStopsWorkerAndWatcher (tear-down fails too)",
    notices_stopped_watcher => "TestNoticesStoppedWatcher",
    closed_channel_is_watcher_stopped => "TestErrorsOnStillAliveButClosedChannel",
    dropped_sender_is_watcher_stopped => "TestErrorsOnClosedChannel",
    kill_while_handle_runs => "TestKill (while Handle runs; gap in the original)",
    kill_while_handle_observes_stop => "TestKill (Handle watching its stop token; gap in the original)",
    kill_wins_over_pending_change => "TestKill (kill and a change both ready; gap in the original)",
    kill_wins_over_initial_event => "TestKill (killed before the first change; gap in the original)",
    burst_is_coalesced_into_one_batch => "TestChangesTriggerHandler (10 000-change burst; gap in the original)",
}

// ------------------------------------------------------------------ cases

/// Kill ends the worker cleanly, stops the watcher and tears down once.
async fn kill<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    let worker = WatchWorker::spawn(handler);
    h.rec
        .wait_for("set-up", |log| log.actions == ["setup"])
        .await;
    worker.kill();
    wait_for_end(&worker)
        .await
        .expect("a killed worker ends Ok");
    assert_eq!(h.rec.actions(), ["setup", "teardown"]);
    h.assert_watcher_stopped(K::change(&["after"]));
}

/// Stop (kill, then wait) is clean, and waiting again gives the same
/// result.
async fn stop<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    h.sender.send(K::change(&["initial"]));
    let worker = WatchWorker::spawn(handler);
    h.rec.wait_for_handled(1).await;
    worker.kill();
    worker.kill();
    assert!(wait_for_end(&worker).await.is_ok());
    assert!(wait_for_end(&worker).await.is_ok());
    assert_eq!(h.rec.actions(), ["setup", "handler", "teardown"]);
    h.assert_watcher_stopped(K::change(&["after"]));
}

/// `wait` blocks while the worker runs and returns once it is killed.
async fn wait<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    let worker = Arc::new(WatchWorker::spawn(handler));
    let waiter = tokio::spawn({
        let worker = worker.clone();
        async move { worker.wait().await }
    });
    h.rec
        .wait_for("set-up", |log| log.actions == ["setup"])
        .await;
    assert_still_running(&worker).await;
    assert!(!waiter.is_finished());
    worker.kill();
    let result = within("the waiter", waiter).await.expect("waiter task");
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(h.rec.actions(), ["setup", "teardown"]);
}

/// Set-up runs once before any `handle`, tear-down once after the last.
async fn set_up_and_tear_down_are_called_once_in_order<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    h.sender.send(K::change(&["initial"]));
    let worker = WatchWorker::spawn(handler);
    h.rec.wait_for_handled(1).await;
    h.sender.send(K::change(&["x"]));
    h.rec.wait_for_handled(2).await;
    assert_eq!(h.rec.actions(), ["setup", "handler", "handler"]);
    worker.kill();
    wait_for_end(&worker).await.unwrap();
    assert_eq!(h.rec.actions(), ["setup", "handler", "handler", "teardown"]);
}

/// The initial event and every later change reach `handle` exactly as
/// sent; a burst sent before `handle` runs arrives as one merged change.
async fn changes_trigger_handler<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    assert!(h.sender.send(K::change(&["initial"])));
    let worker = WatchWorker::spawn(handler);
    h.rec.wait_for_handled(1).await;
    assert_eq!(h.rec.changes(), [K::change(&["initial"])]);

    // Both in one step: the worker cannot run in between.
    assert!(h.sender.send(K::change(&["a", "b"])));
    assert!(h.sender.send(K::change(&["b", "c"])));
    h.rec.wait_for_handled(2).await;

    assert!(h.sender.send(K::change(&["d"])));
    h.rec.wait_for_handled(3).await;
    assert!(h.sender.send(K::change(&["d", "a"])));
    h.rec.wait_for_handled(4).await;

    worker.kill();
    wait_for_end(&worker).await.unwrap();
    assert_eq!(
        h.rec.changes(),
        [
            K::change(&["initial"]),
            K::change(&["a", "b", "c"]),
            K::change(&["d"]),
            K::change(&["d", "a"]),
        ]
    );
}

/// A failed set-up that returned its watcher: the worker stops that
/// watcher, does not tear down, and ends with the set-up error as is.
async fn set_up_failure_stops_watcher<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    let handler = handler.fail_set_up(test_error("set-up failed"), true);
    let worker = WatchWorker::spawn(handler);
    let error = wait_for_end(&worker).await.unwrap_err();
    assert_eq!(bare(&error), "set-up failed");
    assert_eq!(h.rec.actions(), ["setup"]);
    h.assert_watcher_stopped(K::change(&["after"]));
}

/// A failed set-up that returned no watcher: its error as is, nothing to
/// stop, no tear-down.
async fn set_up_failure_without_watcher<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    let handler = handler.fail_set_up(test_error("set-up failed"), false);
    let worker = WatchWorker::spawn(handler);
    let error = wait_for_end(&worker).await.unwrap_err();
    assert_eq!(bare(&error), "set-up failed");
    assert_eq!(h.rec.actions(), ["setup"]);
    assert_eq!(h.probe.kills(), 0);
}

/// A failed set-up whose watcher also fails to stop: the set-up error is
/// the worker's error, the stop error is kept as cleanup context.
async fn set_up_failure_keeps_stop_failure_as_context<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    h.probe.fail_stop(test_error("stop failed"));
    let handler = handler.fail_set_up(test_error("set-up failed"), true);
    let worker = WatchWorker::spawn(handler);
    let error = wait_for_end(&worker).await.unwrap_err();
    assert_eq!(with_cleanup(&error), ("set-up failed", vec!["stop failed"]));
    assert_eq!(bare(error.primary()), "set-up failed");
    assert_eq!(
        error.downcast_ref::<TestError>().unwrap().0,
        "set-up failed"
    );
    assert_eq!(h.rec.actions(), ["setup"]);
    h.assert_watcher_stopped(K::change(&["after"]));
}

/// A watcher that fails to stop after a clean kill: its error is the
/// worker's error, and tear-down still runs.
async fn watcher_stop_failure_propagates<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    h.probe.fail_stop(test_error("stop failed"));
    let worker = WatchWorker::spawn(handler);
    h.rec
        .wait_for("set-up", |log| log.actions == ["setup"])
        .await;
    worker.kill();
    let error = wait_for_end(&worker).await.unwrap_err();
    assert_eq!(bare(&error), "stop failed");
    assert_eq!(h.rec.actions(), ["setup", "teardown"]);
    h.assert_watcher_stopped(K::change(&["after"]));
}

/// A tear-down error after a clean run is the worker's error.
async fn clean_run_notices_tear_down_error<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    let handler = handler.fail_tear_down(test_error("tear-down failed"));
    h.sender.send(K::change(&["initial"]));
    let worker = WatchWorker::spawn(handler);
    h.rec.wait_for_handled(1).await;
    worker.kill();
    let error = wait_for_end(&worker).await.unwrap_err();
    assert_eq!(bare(&error), "tear-down failed");
    assert_eq!(h.rec.actions(), ["setup", "handler", "teardown"]);
    h.assert_watcher_stopped(K::change(&["after"]));
}

/// After a clean run where both stopping the watcher and tearing down
/// fail, the first (the stop error) is the result and the tear-down error
/// its context.
async fn clean_run_reports_first_cleanup_error<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    h.probe.fail_stop(test_error("stop failed"));
    let handler = handler.fail_tear_down(test_error("tear-down failed"));
    let worker = WatchWorker::spawn(handler);
    h.rec
        .wait_for("set-up", |log| log.actions == ["setup"])
        .await;
    worker.kill();
    let error = wait_for_end(&worker).await.unwrap_err();
    assert_eq!(
        with_cleanup(&error),
        ("stop failed", vec!["tear-down failed"])
    );
    assert_eq!(h.rec.actions(), ["setup", "teardown"]);
}

/// A failed `handle` stops the worker and the watcher, and is the
/// worker's error as is.
async fn handle_error_stops_worker_and_watcher<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    let handler = handler.fail_handle(test_error("handle failed"));
    h.sender.send(K::change(&["initial"]));
    let worker = WatchWorker::spawn(handler);
    let error = wait_for_end(&worker).await.unwrap_err();
    assert_eq!(bare(&error), "handle failed");
    assert_eq!(h.rec.actions(), ["setup", "handler", "teardown"]);
    assert_eq!(h.rec.changes(), [K::change(&["initial"])]);
    h.assert_watcher_stopped(K::change(&["after"]));
}

/// A failed `handle` followed by a failed tear-down: the handle error
/// stays the worker's error, the tear-down error is only context.
async fn handle_error_keeps_tear_down_error_as_context<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    let handler = handler
        .fail_handle(test_error("handle failed"))
        .fail_tear_down(test_error("tear-down failed"));
    h.sender.send(K::change(&["initial"]));
    let worker = WatchWorker::spawn(handler);
    let error = wait_for_end(&worker).await.unwrap_err();
    assert_eq!(
        with_cleanup(&error),
        ("handle failed", vec!["tear-down failed"])
    );
    assert_eq!(
        error.downcast_ref::<TestError>().unwrap().0,
        "handle failed"
    );
    assert_eq!(h.rec.actions(), ["setup", "handler", "teardown"]);
    h.assert_watcher_stopped(K::change(&["after"]));
}

/// A watcher that dies with an error: its pending change is still
/// handled, then its error (once, not repeated as cleanup) is the
/// worker's, and tear-down runs.
async fn notices_stopped_watcher<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    h.sender.send(K::change(&["initial"]));
    let worker = WatchWorker::spawn(handler);
    h.rec.wait_for_handled(1).await;
    h.sender.send(K::change(&["last"]));
    h.sender.close(Err(test_error("watcher died")));
    let error = wait_for_end(&worker).await.unwrap_err();
    assert_eq!(bare(&error), "watcher died");
    assert_eq!(
        h.rec.changes(),
        [K::change(&["initial"]), K::change(&["last"])]
    );
    assert_eq!(h.rec.actions(), ["setup", "handler", "handler", "teardown"]);
}

/// A watcher whose changes end without an error while the worker still
/// wants them: `Error::WatcherStopped`.
async fn closed_channel_is_watcher_stopped<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    h.sender.send(K::change(&["initial"]));
    let worker = WatchWorker::spawn(handler);
    h.rec.wait_for_handled(1).await;
    h.sender.close(Ok(()));
    let error = wait_for_end(&worker).await.unwrap_err();
    assert!(matches!(error, Error::WatcherStopped), "{error:?}");
    assert_eq!(h.rec.actions(), ["setup", "handler", "teardown"]);
}

/// The producer going away (sender dropped) is a clean but unexpected
/// end: `Error::WatcherStopped`.
async fn dropped_sender_is_watcher_stopped<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    let worker = WatchWorker::spawn(handler);
    h.rec
        .wait_for("set-up", |log| log.actions == ["setup"])
        .await;
    drop(h.sender);
    let error = wait_for_end(&worker).await.unwrap_err();
    assert!(matches!(error, Error::WatcherStopped), "{error:?}");
    assert_eq!(h.rec.actions(), ["setup", "teardown"]);
}

/// A kill during `handle` does not interrupt it: the worker waits for it,
/// then ends Ok without handling the change that arrived meanwhile.
async fn kill_while_handle_runs<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    let (handler, gate) = handler.gated();
    h.sender.send(K::change(&["initial"]));
    let worker = WatchWorker::spawn(handler);
    h.rec.wait_for_handle_calls(1).await;
    worker.kill();
    h.sender.send(K::change(&["meanwhile"]));
    assert_still_running(&worker).await;
    assert_eq!(h.rec.handled(), 0);
    assert_eq!(h.rec.actions(), ["setup", "handler"]);

    gate.add_permits(1);
    wait_for_end(&worker).await.expect("killed worker ends Ok");
    assert_eq!(h.rec.handled(), 1, "the running handle finished");
    assert_eq!(h.rec.changes(), [K::change(&["initial"])]);
    assert_eq!(h.rec.actions(), ["setup", "handler", "teardown"]);
}

/// A long `handle` that watches its stop token returns early on kill, and
/// the worker ends Ok.
async fn kill_while_handle_observes_stop<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    let (handler, _gate) = handler.gated();
    let handler = handler.observing_stop();
    h.sender.send(K::change(&["initial"]));
    let worker = WatchWorker::spawn(handler);
    h.rec.wait_for_handle_calls(1).await;
    worker.kill();
    wait_for_end(&worker).await.expect("killed worker ends Ok");
    let log = lock(&h.rec.log);
    assert_eq!(log.stop_seen, 1);
    assert_eq!(log.handled, 0);
    assert_eq!(log.actions, ["setup", "handler", "teardown"]);
}

/// A change and a kill that are both ready when the worker next runs:
/// the kill wins, the change is never handled.
async fn kill_wins_over_pending_change<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    h.sender.send(K::change(&["initial"]));
    let worker = WatchWorker::spawn(handler);
    h.rec.wait_for_handled(1).await;
    // One synchronous step: the worker task cannot run in between.
    assert!(h.sender.send(K::change(&["too late"])));
    worker.kill();
    wait_for_end(&worker).await.unwrap();
    assert_eq!(h.rec.changes(), [K::change(&["initial"])]);
    assert_eq!(h.rec.actions(), ["setup", "handler", "teardown"]);
}

/// Killed right after spawning, before the worker task ever ran: set-up
/// and tear-down still run once each, the pending initial event is not
/// handled.
async fn kill_wins_over_initial_event<K: Kind>() {
    let (h, handler) = harness::<K::C>();
    h.sender.send(K::change(&["initial"]));
    let worker = WatchWorker::spawn(handler);
    worker.kill();
    wait_for_end(&worker).await.unwrap();
    assert_eq!(h.rec.actions(), ["setup", "teardown"]);
    assert!(h.rec.changes().is_empty());
    h.assert_watcher_stopped(K::change(&["after"]));
}

/// 10 000 changes sent while `handle` is blocked arrive as one change
/// (notify) or one batch of every distinct key in first-seen order
/// (strings), and that `handle` sees the final state.
async fn burst_is_coalesced_into_one_batch<K: Kind>() {
    const SENDS: usize = 10_000;
    const KEYS: usize = 5_000;
    let (h, handler) = harness::<K::C>();
    let (handler, gate) = handler.gated();
    h.sender.send(K::change(&["initial"]));
    let worker = WatchWorker::spawn(handler);
    h.rec.wait_for_handle_calls(1).await;

    for i in 0..SENDS {
        h.state.store(i + 1, Ordering::SeqCst);
        assert!(h.sender.send(K::change(&[format!("k{}", i % KEYS)])));
    }
    gate.add_permits(2);
    h.rec.wait_for_handled(2).await;
    // Nothing else is pending: no third call however long we wait.
    gate.add_permits(1);
    assert_still_running(&worker).await;

    let keys: Vec<String> = (0..KEYS).map(|i| format!("k{i}")).collect();
    {
        let log = lock(&h.rec.log);
        assert_eq!(log.changes.len(), 2, "one call for the whole burst");
        assert!(log.changes[1] == K::change(&keys), "the burst's batch");
        assert_eq!(log.states, [0, SENDS], "handle saw the final state");
    }
    worker.kill();
    wait_for_end(&worker).await.unwrap();
    assert_eq!(h.rec.handled(), 2);
}
