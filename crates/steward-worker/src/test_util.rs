//! Helpers for testing code that supervises workers (feature `test-util`).
//!
//! [`TestStarter`] is a scriptable start function, in the spirit of Juju's
//! `testWorkerStarter`: it reports every start and stop as an event, can
//! fail its starts, make its instances fail on stop or die on demand, hold
//! starts until released, and checks that no two of its instances are ever
//! alive at once. [`run_with_deadline`] runs a test that could starve its
//! runtime on a thread of its own, so that it fails instead of hanging.
//! This module is for tests only: it must never be used by production code
//! paths.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use crate::worker::delegate_worker;
use crate::{BoxFuture, Error, SimpleWorker};

/// What a [`TestStarter`] observed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestEvent {
    /// Instance `n` (counting from 1) entered its body.
    Started(usize),
    /// Instance `n` left its body.
    Stopped(usize),
}

/// A scriptable start function for a runner; clone it freely, all clones
/// share the script and the event log.
#[derive(Clone, Default)]
pub struct TestStarter {
    inner: Arc<StarterInner>,
}

impl std::fmt::Debug for TestStarter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestStarter").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct StarterInner {
    script: Mutex<Script>,
    events: Mutex<VecDeque<TestEvent>>,
    event_added: Notify,
    instances: AtomicUsize,
    live: AtomicUsize,
    max_live: AtomicUsize,
    gate: Mutex<Option<Arc<Semaphore>>>,
    current: Mutex<Option<oneshot::Sender<Result<(), Error>>>>,
}

#[derive(Default)]
struct Script {
    start_error: Option<Error>,
    stop_error: Option<Error>,
    stop_delay: Duration,
    start_panics: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TestStarter {
    /// A starter whose instances start, run until killed and stop cleanly.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes later starts fail with `error` (`None`: succeed again).
    pub fn set_start_error(&self, error: Option<Error>) {
        lock(&self.inner.script).start_error = error;
    }

    /// Makes instances started from now on return `error` when killed.
    pub fn set_stop_error(&self, error: Option<Error>) {
        lock(&self.inner.script).stop_error = error;
    }

    /// Makes instances started from now on take `delay` to stop once
    /// killed, like a worker that flushes something on its way out.
    pub fn set_stop_delay(&self, delay: Duration) {
        lock(&self.inner.script).stop_delay = delay;
    }

    /// Makes later starts panic.
    pub fn set_start_panics(&self, panics: bool) {
        lock(&self.inner.script).start_panics = panics;
    }

    /// Holds every later start until [`release_start`](Self::release_start)
    /// lets it through.
    pub fn hold_starts(&self) {
        *lock(&self.inner.gate) = Some(Arc::new(Semaphore::new(0)));
    }

    /// Stops holding starts: later starts go through at once.
    pub fn stop_holding_starts(&self) {
        if let Some(gate) = lock(&self.inner.gate).take() {
            // Starts already waiting at the gate go through too.
            gate.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }

    /// Lets one held start through.
    pub fn release_start(&self) {
        if let Some(gate) = lock(&self.inner.gate).as_ref() {
            gate.add_permits(1);
        }
    }

    /// Makes the current instance return `result` as if it finished or
    /// failed on its own. Returns false if no instance is running.
    pub fn die(&self, result: Result<(), Error>) -> bool {
        match lock(&self.inner.current).take() {
            Some(sender) => sender.send(result).is_ok(),
            None => false,
        }
    }

    /// How many instances were created.
    pub fn instances(&self) -> usize {
        self.inner.instances.load(Ordering::SeqCst)
    }

    /// How many instances are inside their body now.
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// The most instances that were ever alive at once (must stay ≤ 1).
    pub fn max_live(&self) -> usize {
        self.inner.max_live.load(Ordering::SeqCst)
    }

    /// The start function to hand to
    /// [`Runner::start_worker`](crate::Runner::start_worker).
    pub fn factory(
        &self,
    ) -> impl FnMut() -> BoxFuture<'static, Result<TestWorker, Error>> + Send + 'static {
        let starter = self.clone();
        move || {
            let starter = starter.clone();
            Box::pin(async move { starter.start().await })
        }
    }

    async fn start(&self) -> Result<TestWorker, Error> {
        let gate = lock(&self.inner.gate).clone();
        if let Some(gate) = gate {
            #[expect(clippy::expect_used, reason = "the gate semaphore is never closed")]
            gate.acquire().await.expect("gate is never closed").forget();
        }
        let (start_error, stop_error, stop_delay, panics) = {
            let script = lock(&self.inner.script);
            (
                script.start_error.clone(),
                script.stop_error.clone(),
                script.stop_delay,
                script.start_panics,
            )
        };
        assert!(!panics, "test starter told to panic");
        if let Some(error) = start_error {
            return Err(error);
        }
        let n = self.inner.instances.fetch_add(1, Ordering::SeqCst) + 1;
        let (die_tx, die_rx) = oneshot::channel();
        *lock(&self.inner.current) = Some(die_tx);
        let live = self.inner.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.max_live.fetch_max(live, Ordering::SeqCst);
        self.record(TestEvent::Started(n));
        let starter = self.clone();
        let worker = SimpleWorker::spawn(move |stop: CancellationToken| async move {
            let result = tokio::select! {
                biased;
                () = stop.cancelled() => {
                    if !stop_delay.is_zero() {
                        tokio::time::sleep(stop_delay).await;
                    }
                    stop_error.map_or(Ok(()), Err)
                }
                died = die_rx => died.unwrap_or(Ok(())),
            };
            starter.inner.live.fetch_sub(1, Ordering::SeqCst);
            starter.record(TestEvent::Stopped(n));
            result
        });
        Ok(TestWorker { number: n, worker })
    }

    fn record(&self, event: TestEvent) {
        lock(&self.inner.events).push_back(event);
        self.inner.event_added.notify_waiters();
    }

    /// The next event, waiting for it; `None` if nothing happens within
    /// `within` (use paused time, so waiting costs nothing).
    pub async fn next_event_within(&self, within: Duration) -> Option<TestEvent> {
        tokio::time::timeout(within, self.next_event()).await.ok()
    }

    /// The next event, waiting as long as it takes.
    pub async fn next_event(&self) -> TestEvent {
        loop {
            let added = self.inner.event_added.notified();
            if let Some(event) = lock(&self.inner.events).pop_front() {
                return event;
            }
            added.await;
        }
    }

    /// Waits (up to 10 s of paused time) for the next event and asserts
    /// that it is a start; returns the instance number.
    pub async fn assert_started(&self) -> usize {
        match self.next_event_within(Duration::from_secs(10)).await {
            Some(TestEvent::Started(n)) => n,
            other => panic!("expected a start, got {other:?}"),
        }
    }

    /// Waits (up to 10 s of paused time) for the next event and asserts
    /// that it is a stop; returns the instance number.
    pub async fn assert_stopped(&self) -> usize {
        match self.next_event_within(Duration::from_secs(10)).await {
            Some(TestEvent::Stopped(n)) => n,
            other => panic!("expected a stop, got {other:?}"),
        }
    }

    /// Asserts that nothing happens within `within`.
    pub async fn assert_no_event(&self, within: Duration) {
        if let Some(event) = self.next_event_within(within).await {
            panic!("expected no event, got {event:?}");
        }
    }
}

/// An instance made by a [`TestStarter`].
#[derive(Debug)]
pub struct TestWorker {
    number: usize,
    worker: SimpleWorker,
}

impl TestWorker {
    /// Which instance of its starter this is, counting from 1.
    pub fn number(&self) -> usize {
        self.number
    }
}

delegate_worker!([] TestWorker => worker);

/// A worker that ignores `kill` until aborted: for shutdown-timeout tests.
pub fn stubborn_worker() -> SimpleWorker {
    SimpleWorker::spawn(|_stop| std::future::pending::<Result<(), Error>>())
}

/// Runs `test` on a fresh current-thread runtime in a thread of its own,
/// and panics if it has not finished after `limit` of real time.
///
/// For tests whose failure is a runtime that stops making progress (a task
/// that never returns `Pending` starves the rest): run in the test's own
/// runtime, such a failure hangs the test run instead of failing one test.
/// A panic inside `test` is re-raised here, so its assertions report as
/// usual.
pub fn run_with_deadline<F, Fut>(limit: Duration, test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("cannot build a test runtime: {error}"));
        runtime.block_on(test());
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(limit) {
        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test's runtime made no progress for {limit:?} (a task that never yields?)")
        }
    }
}
