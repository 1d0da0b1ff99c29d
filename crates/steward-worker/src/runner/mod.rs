//! [`Runner`]: starts named workers, restarts them after a delay, and stops
//! them all on a fatal error.
//!
//! This module owns the id → worker table and the runner's own lifecycle.
//! It must never run a worker's code on its own lock, and never hold a lock
//! across an `.await`: every id is driven by its own supervisor task (see
//! `supervisor.rs`), and the table is only consulted and updated.

mod builder;
mod entry;
mod report;
mod supervisor;

use std::collections::HashMap;
use std::collections::hash_map;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info_span, warn};

pub use builder::{RestartIntensity, RunnerBuilder};
pub use report::{RunnerReport, RunnerState, WorkerReport, WorkerState};

use self::builder::Params;
use self::entry::Entry;
use self::supervisor::{ExitGuard, supervise};
use crate::{BoxFuture, Error, Lifecycle, Run, SimpleWorker, Worker};

/// A type-erased start function: called once per (re)start.
type Factory = Box<dyn FnMut() -> BoxFuture<'static, Result<Arc<dyn Worker>, Error>> + Send>;

/// A type-erased body maker: called once per (re)start with the id's stop
/// token; returns the instance's handle and the body for the supervisor
/// task to drive.
type BodyFactory = Box<
    dyn FnMut(&CancellationToken) -> (SimpleWorker, BoxFuture<'static, Result<(), Error>>) + Send,
>;

/// How a supervisor starts each instance of its id.
enum Start {
    /// Awaits a start function; the instance runs on its own.
    Worker(Factory),
    /// Makes a body and drives it on the supervisor's own task.
    Body(BodyFactory),
}

/// Supervises named workers.
///
/// Each id has at most one live instance at any moment. When an instance
/// ends:
///
/// | how it ended | what the runner does |
/// |---|---|
/// | `Ok(())` | the id is finished and removed; it is not restarted |
/// | an error that [`is_fatal`](RunnerBuilder::is_fatal) | every worker is stopped, and the runner finishes with the most important fatal error |
/// | any other error, `should_restart` true | restarted after the [backoff](RunnerBuilder::restart_delay) delay |
/// | any other error, `should_restart` false | the id is removed |
/// | anything, after [`stop_worker`](Self::stop_worker) | the id is removed (a fatal error still stops the runner) |
///
/// A start function's error is handled exactly like the instance's, and a
/// panic in either becomes [`Error::Panicked`] for that worker only.
///
/// A `Runner` is a cheap handle (clone it freely) and is itself a
/// [`Worker`], so runners nest into supervision trees: start a runner as a
/// worker of another one. Dropping every handle does not stop it, as with
/// a tokio task; call [`kill`](Worker::kill).
///
/// # Shutdown
///
/// [`kill`](Worker::kill) (or a fatal error) stops every worker: the
/// restart delays are cancelled, running instances are killed, start
/// functions in progress are let finish and their instance is killed. If
/// that takes longer than the [shutdown timeout](RunnerBuilder::shutdown_timeout),
/// the stragglers are aborted and named in the log and, when no fatal
/// error is more important, in [`Error::ShutdownTimedOut`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use steward_worker::{Error, Runner, SimpleWorker, Worker};
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Error> {
/// let runner = Runner::builder()
///     .restart_delay(Duration::from_secs(1))
///     .is_fatal(|error| error.is_terminate_agent())
///     .build();
///
/// // A worker that serves until it is stopped.
/// runner.start_worker("server", || async {
///     Ok(SimpleWorker::spawn(|stop: CancellationToken| async move {
///         stop.cancelled().await;
///         Ok(())
///     }))
/// })?;
///
/// // A worker that asks for the whole agent to stop.
/// runner.start_worker("janitor", || async {
///     Ok(SimpleWorker::spawn(|_stop| async { Err(Error::TerminateAgent) }))
/// })?;
///
/// // The fatal error stops "server" too and is what the runner reports.
/// assert!(runner.wait().await.unwrap_err().is_terminate_agent());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Runner {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    params: Params,
    lifecycle: Lifecycle,
    state: Mutex<State>,
    /// Woken when the last supervisor task exits.
    all_exited: Notify,
}

struct State {
    workers: HashMap<Arc<str>, Arc<Entry>>,
    /// Live supervisor tasks; equals `workers.len()` except transiently.
    supervisors: usize,
    /// The most important fatal error so far.
    fatal: Option<Error>,
    /// Set by an explicit [`Worker::abort`] that found workers to abort.
    aborted_on_request: bool,
}

impl Runner {
    /// A runner with the default settings (see [`RunnerBuilder`]).
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn new() -> Self {
        RunnerBuilder::new().build()
    }

    /// Configures a runner.
    pub fn builder() -> RunnerBuilder {
        RunnerBuilder::new()
    }

    fn with_params(params: Params) -> Self {
        let shared = Arc::new(Shared {
            params,
            lifecycle: Lifecycle::new(),
            state: Mutex::new(State {
                workers: HashMap::new(),
                supervisors: 0,
                fatal: None,
                aborted_on_request: false,
            }),
            all_exited: Notify::new(),
        });
        let span = info_span!("runner", name = %shared.params.name);
        tokio::spawn(shutdown_when_dying(shared.clone()).instrument(span));
        Self { shared }
    }

    /// Starts a worker under `id` and returns at once; the worker starts
    /// on its own task.
    ///
    /// `factory` is called for the first start and again for every
    /// restart; the instance it returns is what [`worker`](Self::worker)
    /// hands out. Fails with [`Error::AlreadyExists`] if the id is
    /// starting, running, backing off or still stopping (wait for
    /// [`stop_and_remove`](Self::stop_and_remove) to reuse an id), and
    /// with [`Error::Dead`] once the runner is shutting down.
    ///
    /// For a worker that is just a body (a [`SimpleWorker`](crate::SimpleWorker)),
    /// prefer [`start_simple`](Self::start_simple).
    pub fn start_worker<F, Fut, W>(
        &self,
        id: impl Into<Arc<str>>,
        mut factory: F,
    ) -> Result<(), Error>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<W, Error>> + Send + 'static,
        W: Worker,
    {
        let factory: Factory = Box::new(move || {
            let start = factory();
            Box::pin(async move { Ok(Arc::new(start.await?) as Arc<dyn Worker>) })
        });
        self.start(id.into(), Start::Worker(factory))
    }

    /// Starts a worker under `id` whose body runs on the id's own
    /// supervisor task, and returns at once.
    ///
    /// It behaves as
    /// `start_worker(id, move || { let body = make_body(); async { Ok(SimpleWorker::spawn(body)) } })`
    /// does, with one task per id instead of two: a start, a stop and a
    /// restart each skip a hand-off between tasks, and an idle worker costs
    /// one task's memory. `make_body` is called for the first start and for
    /// every restart; a panic in it or in the body is that worker's
    /// [`Error::Panicked`]. [`worker`](Self::worker) hands out a
    /// [`SimpleWorker`](crate::SimpleWorker) whose `kill`, `wait` and
    /// `abort` act on the running body. Fails as
    /// [`start_worker`](Self::start_worker) does.
    ///
    /// ```
    /// use steward_worker::{Runner, Worker};
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), steward_worker::Error> {
    /// let runner = Runner::new();
    /// runner.start_simple("server", || |stop: CancellationToken| async move {
    ///     stop.cancelled().await;
    ///     Ok(())
    /// })?;
    /// runner.stop_and_remove("server").await?;
    /// # runner.kill(); runner.wait().await }
    /// ```
    pub fn start_simple<F, R>(&self, id: impl Into<Arc<str>>, mut make_body: F) -> Result<(), Error>
    where
        F: FnMut() -> R + Send + 'static,
        R: Run,
    {
        let make: BodyFactory = Box::new(move |stop| {
            let (worker, body) = SimpleWorker::driven(make_body(), stop);
            (worker, Box::pin(body))
        });
        self.start(id.into(), Start::Body(make))
    }

    fn start(&self, id: Arc<str>, start: Start) -> Result<(), Error> {
        let entry = {
            let mut state = self.shared.lock_state();
            // `dying` only ever changes under this lock, so no worker can
            // slip in after shutdown has counted the supervisors.
            if self.shared.lifecycle.is_dying() {
                return Err(Error::Dead);
            }
            let hash_map::Entry::Vacant(slot) = state.workers.entry(id.clone()) else {
                return Err(Error::AlreadyExists { id });
            };
            let entry = Arc::new(Entry::new(id, self.shared.lifecycle.dying().child_token()));
            slot.insert(entry.clone());
            state.supervisors += 1;
            entry
        };
        let guard = ExitGuard {
            shared: self.shared.clone(),
            entry: entry.clone(),
            exit: None,
        };
        let span =
            info_span!(parent: None, "worker", runner = %self.shared.params.name, id = %entry.id);
        let task = tokio::spawn(supervise(guard, start).instrument(span));
        let mut inner = entry.lock();
        if inner.exit.is_none() {
            inner.supervisor = Some(task.abort_handle());
        }
        Ok(())
    }

    /// Stops the worker `id` and does not restart it; returns at once.
    ///
    /// A worker waiting for its restart delay is never started again. The
    /// id is removed once the instance has exited; its exit error still
    /// goes through [`is_fatal`](RunnerBuilder::is_fatal). Calling it again
    /// while the worker is stopping is harmless. Fails with
    /// [`Error::NotFound`] for an unknown id and [`Error::Dead`] once the
    /// runner is shutting down.
    pub fn stop_worker(&self, id: &str) -> Result<(), Error> {
        self.stop_entry(id).map(drop)
    }

    /// Stops the worker `id`, waits until it has exited and the id is
    /// free again, and returns the stopped instance's result (`Ok` if it
    /// was waiting to restart). Cancel safe: dropping the future leaves the
    /// worker stopping.
    pub async fn stop_and_remove(&self, id: &str) -> Result<(), Error> {
        self.stop_entry(id)?.removed().await
    }

    fn stop_entry(&self, id: &str) -> Result<Arc<Entry>, Error> {
        let entry = {
            let state = self.shared.lock_state();
            if self.shared.lifecycle.is_dying() {
                return Err(Error::Dead);
            }
            state
                .workers
                .get(id)
                .cloned()
                .ok_or_else(|| Error::NotFound { id: Arc::from(id) })?
        };
        if !entry.stop.is_cancelled() {
            debug!(runner = %self.shared.params.name, id, "stopping worker");
            entry.stop.cancel();
        }
        // Kill a running instance from here rather than through its
        // supervisor task: one hand-off less per stop. The supervisor
        // covers an instance published after this look.
        let instance = entry.lock().instance.clone();
        if let Some(instance) = instance {
            instance.kill();
        }
        Ok(entry)
    }

    /// The running instance of `id`, waiting while it starts or backs off.
    ///
    /// Resolves to [`Error::NotFound`] if the id is unknown or is removed
    /// while waiting (stopped, finished, not restarted) and to
    /// [`Error::Dead`] if the runner shuts down. To give up waiting, drop
    /// the future (`tokio::time::timeout`, `select!`); an instance that is
    /// already running is returned on the first poll.
    ///
    /// The instance is the value the factory returned; to use its own
    /// methods, upcast and downcast:
    ///
    /// ```
    /// # use std::sync::Arc; use std::any::Any;
    /// # use steward_worker::{Runner, SimpleWorker, Worker};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let runner = Runner::new();
    /// # runner.start_worker("w", || async { Ok(SimpleWorker::spawn(|c: tokio_util::sync::CancellationToken| async move { c.cancelled().await; Ok(()) })) }).unwrap();
    /// let any: Arc<dyn Any + Send + Sync> = runner.worker("w").await.unwrap();
    /// let simple: Arc<SimpleWorker> = any.downcast().unwrap();
    /// # runner.kill(); runner.wait().await.unwrap(); let _ = simple; }
    /// ```
    pub async fn worker(&self, id: &str) -> Result<Arc<dyn Worker>, Error> {
        let entry = {
            let state = self.shared.lock_state();
            if self.shared.lifecycle.is_dying() {
                return Err(Error::Dead);
            }
            state
                .workers
                .get(id)
                .cloned()
                .ok_or_else(|| Error::NotFound { id: Arc::from(id) })?
        };
        entry
            .running_instance(self.shared.lifecycle.dying_token())
            .await
    }

    /// The ids the runner currently knows, sorted.
    pub fn worker_names(&self) -> Vec<String> {
        let state = self.shared.lock_state();
        let mut names: Vec<String> = state.workers.keys().map(|id| id.to_string()).collect();
        names.sort_unstable();
        names
    }

    /// A snapshot of every worker's state, restarts, last error and times.
    pub fn report(&self) -> RunnerReport {
        let state = self.shared.lock_state();
        let runner_state = if self.shared.lifecycle.is_dead() {
            RunnerState::Stopped
        } else if self.shared.lifecycle.is_dying() {
            RunnerState::Stopping
        } else {
            RunnerState::Running
        };
        let (now, wall_now) = (Instant::now(), SystemTime::now());
        // Instants follow tokio's (pausable) clock; convert through "now".
        let wall = |at: Instant| {
            if at <= now {
                wall_now - (now - at)
            } else {
                wall_now + (at - now)
            }
        };
        let workers = state
            .workers
            .values()
            .map(|entry| {
                let inner = entry.lock();
                let report = WorkerReport {
                    state: entry.visible_state(&inner),
                    restarts: inner.restarts,
                    last_error: inner.last_error.as_ref().map(|error| format!("{error:?}")),
                    started_at: inner.started_at.map(wall),
                    next_restart_at: inner.next_restart_at.map(wall),
                };
                (entry.id.to_string(), report)
            })
            .collect();
        RunnerReport {
            name: self.shared.params.name.to_string(),
            state: runner_state,
            workers,
        }
    }

    /// True once the runner is shutting down (killed or after a fatal error).
    pub fn is_stopping(&self) -> bool {
        self.shared.lifecycle.is_dying()
    }
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("name", &self.shared.params.name)
            .field("stopping", &self.shared.lifecycle.is_dying())
            .field("dead", &self.shared.lifecycle.is_dead())
            .finish_non_exhaustive()
    }
}

impl Worker for Runner {
    fn kill(&self) {
        let _state = self.shared.lock_state();
        self.shared.lifecycle.kill();
    }

    fn wait(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.shared.lifecycle.wait())
    }

    /// Kills the runner and aborts every worker at once, without the
    /// shutdown grace period. Unless a fatal error is more important, the
    /// runner then reports [`Error::Aborted`] (if there was anything to
    /// abort), so a parent never mistakes an aborted child for a clean stop.
    fn abort(&self) {
        self.kill();
        let aborted = self.shared.abort_remaining();
        if !aborted.is_empty() {
            warn!(runner = %self.shared.params.name, aborted = ?aborted, "runner aborted its workers");
            self.shared.lock_state().aborted_on_request = true;
        }
    }
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a fatal error (keeping the most important one) and starts
    /// the shutdown.
    fn fatal(&self, id: &str, error: Error) {
        let mut state = self.lock_state();
        if self.lifecycle.is_dying() {
            debug!(id, error = ?error, "fatal error during shutdown");
        } else {
            error!(id, error = ?error, "fatal error; stopping all workers");
        }
        let replace = match &state.fatal {
            None => true,
            Some(current) => (self.params.more_important)(&error, current),
        };
        if replace {
            state.fatal = Some(error);
        }
        self.lifecycle.kill();
    }

    /// Bookkeeping when a supervisor task ends, however it ends.
    fn supervisor_exited(&self, entry: &Arc<Entry>, exit: Result<(), Error>) {
        let all_exited = {
            let mut state = self.lock_state();
            if state
                .workers
                .get(&entry.id)
                .is_some_and(|e| Arc::ptr_eq(e, entry))
            {
                state.workers.remove(&entry.id);
            }
            state.supervisors -= 1;
            // Removal is published under the state lock so that a
            // `start_worker` of the same id that saw the entry gone can
            // never race with its waiters.
            entry.remove(exit);
            state.supervisors == 0
        };
        if all_exited {
            self.all_exited.notify_waiters();
        }
    }

    async fn all_supervisors_exited(&self) {
        loop {
            let exited = self.all_exited.notified();
            if self.lock_state().supervisors == 0 {
                return;
            }
            exited.await;
        }
    }

    /// Aborts every remaining worker and its supervisor; returns their ids.
    fn abort_remaining(&self) -> Vec<Arc<str>> {
        let mut doomed = Vec::new();
        {
            let state = self.lock_state();
            for entry in state.workers.values() {
                let inner = entry.lock();
                doomed.push((
                    entry.id.clone(),
                    inner.instance.clone(),
                    inner.supervisor.clone(),
                ));
            }
        }
        // Abort outside the locks: an aborted task's guard takes them.
        let mut ids = Vec::with_capacity(doomed.len());
        for (id, instance, supervisor) in doomed {
            if let Some(instance) = instance {
                instance.abort();
            }
            if let Some(supervisor) = supervisor {
                supervisor.abort();
            }
            ids.push(id);
        }
        ids.sort_unstable();
        ids
    }
}

/// The runner's own task: waits for the shutdown to begin, lets workers
/// stop within the grace period, aborts the rest, and publishes the result.
async fn shutdown_when_dying(shared: Arc<Shared>) {
    shared.lifecycle.dying().cancelled().await;
    debug!("runner stopping");
    let timeout = shared.params.shutdown_timeout;
    let aborted = match tokio::time::timeout(timeout, shared.all_supervisors_exited()).await {
        Ok(()) => Vec::new(),
        Err(_) => {
            let ids = shared.abort_remaining();
            warn!(
                timeout = ?timeout,
                aborted = ?ids,
                "workers did not stop within the shutdown timeout; aborted them"
            );
            shared.all_supervisors_exited().await;
            ids
        }
    };
    let (fatal, aborted_on_request) = {
        let state = shared.lock_state();
        (state.fatal.clone(), state.aborted_on_request)
    };
    let result = match fatal {
        Some(error) => Err(error),
        None if !aborted.is_empty() => Err(Error::ShutdownTimedOut {
            timeout,
            aborted: Arc::from(aborted),
        }),
        None if aborted_on_request => Err(Error::Aborted),
        None => Ok(()),
    };
    debug!(result = ?result, "runner stopped");
    shared.lifecycle.finish(result);
}
