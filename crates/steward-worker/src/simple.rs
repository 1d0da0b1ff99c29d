//! [`SimpleWorker`]: a worker that is one tokio task running a body.
//!
//! The body is an async closure or a type implementing [`Run`]; it receives
//! a cancellation token that fires on `kill`, and its result is the
//! worker's result (Juju's `NewSimpleWorker`). The body runs on its own
//! task, or on a task that drives it (a runner's supervisor, see
//! [`Runner::start_simple`](crate::Runner::start_simple)); either way the
//! handle behaves the same. This module must never restart anything:
//! restarting is the runner's job.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::panic::{CatchUnwind, catch_panic};
use crate::{BoxFuture, Error, Lifecycle, Worker};

/// The body of a worker: runs until it is done or `cancel` fires.
///
/// Implemented for every `FnOnce(CancellationToken) -> impl Future<Output =
/// Result<(), Error>>`, so an async closure is a `Run`; implement it on a
/// type when the body has state worth naming:
///
/// ```
/// use steward_worker::{Error, Run, SimpleWorker, Worker};
/// use tokio_util::sync::CancellationToken;
///
/// struct Heartbeat { every: std::time::Duration }
///
/// impl Run for Heartbeat {
///     async fn run(self, cancel: CancellationToken) -> Result<(), Error> {
///         let mut tick = tokio::time::interval(self.every);
///         loop {
///             tokio::select! {
///                 _ = cancel.cancelled() => return Ok(()),
///                 _ = tick.tick() => tracing::debug!("beat"),
///             }
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let worker = SimpleWorker::spawn(Heartbeat { every: std::time::Duration::from_secs(1) });
/// worker.kill();
/// assert!(worker.wait().await.is_ok());
/// # }
/// ```
pub trait Run: Send + 'static {
    /// Does the work. Return when `cancel` fires (with `Ok(())` unless
    /// stopping itself failed) or when the work is done or has failed.
    fn run(self, cancel: CancellationToken) -> impl Future<Output = Result<(), Error>> + Send;
}

impl<F, Fut> Run for F
where
    F: FnOnce(CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Error>> + Send,
{
    fn run(self, cancel: CancellationToken) -> impl Future<Output = Result<(), Error>> + Send {
        self(cancel)
    }
}

/// A worker running one body on a tokio task.
///
/// - `kill` cancels the token the body was given; the body decides how to
///   stop.
/// - `wait` returns the body's result; a panic in the body becomes
///   [`Error::Panicked`], and an aborted task [`Error::Aborted`].
/// - `abort` stops the body at its next `.await`: its future is dropped
///   and `wait` returns [`Error::Aborted`].
///
/// Dropping a `SimpleWorker` detaches it, like dropping a tokio
/// `JoinHandle`: the body keeps running.
///
/// [`spawn`](Self::spawn) gives the body a task of its own. Under a
/// [`Runner`](crate::Runner), [`start_simple`](crate::Runner::start_simple)
/// runs it on the id's supervisor task instead, which saves a task and a
/// hand-off per start and per stop; the handle behaves the same.
///
/// ```
/// use steward_worker::{SimpleWorker, Worker};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let worker = SimpleWorker::spawn(|cancel: tokio_util::sync::CancellationToken| async move {
///     cancel.cancelled().await;
///     Ok(())
/// });
/// worker.kill();
/// worker.kill(); // idempotent
/// assert!(worker.wait().await.is_ok());
/// # }
/// ```
#[derive(Debug)]
pub struct SimpleWorker {
    lifecycle: Arc<Lifecycle>,
    abort: Abort,
}

/// How `abort` reaches the body.
#[derive(Debug)]
enum Abort {
    /// The body is its own task.
    Task(AbortHandle),
    /// Another task polls the body through [`Driven`].
    Driven(Arc<AbortSignal>),
}

/// An abort request for a driven body, and the task to wake for it.
#[derive(Debug, Default)]
struct AbortSignal {
    requested: AtomicBool,
    waker: AtomicWaker,
}

impl SimpleWorker {
    /// Spawns `body` on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn spawn<R: Run>(body: R) -> Self {
        let lifecycle = Arc::new(Lifecycle::new());
        let finish = FinishOnDrop(lifecycle.clone());
        let cancel = lifecycle.dying();
        let task = tokio::spawn(async move {
            let result = catch_panic(body.run(cancel)).await;
            finish.0.finish(result);
        });
        Self {
            lifecycle,
            abort: Abort::Task(task.abort_handle()),
        }
    }

    /// A worker whose body is run by whoever polls the returned future,
    /// which must be polled to completion (dropping it aborts the worker).
    ///
    /// The body's kill token is a child of `parent`: cancelling `parent`
    /// kills the worker with no task in between. The future resolves to
    /// what [`wait`](Worker::wait) returns.
    pub(crate) fn driven<R: Run>(
        body: R,
        parent: &CancellationToken,
    ) -> (
        Self,
        Driven<impl Future<Output = Result<(), Error>> + Send + use<R>>,
    ) {
        let lifecycle = Arc::new(Lifecycle::with_dying(parent.child_token()));
        let signal = Arc::new(AbortSignal::default());
        let driven = Driven {
            body: catch_panic(body.run(lifecycle.dying())),
            signal: signal.clone(),
            finish: Some(FinishOnDrop(lifecycle.clone())),
        };
        let worker = Self {
            lifecycle,
            abort: Abort::Driven(signal),
        };
        (worker, driven)
    }
}

pin_project_lite::pin_project! {
    /// The body of a [`SimpleWorker::driven`] worker, with its abort signal;
    /// publishes the worker's result when it completes or is dropped.
    pub(crate) struct Driven<F> {
        #[pin]
        body: CatchUnwind<F>,
        signal: Arc<AbortSignal>,
        finish: Option<FinishOnDrop>,
    }
}

impl<F> Future for Driven<F>
where
    F: Future<Output = Result<(), Error>>,
{
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(finish) = this.finish.as_ref() else {
            panic!("a driven worker's body was polled after it completed");
        };
        // Register before looking, so an abort between the two still wakes
        // this task.
        this.signal.waker.register(cx.waker());
        let result = if this.signal.requested.load(Ordering::Acquire) {
            Err(Error::Aborted)
        } else {
            match this.body.poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => result,
            }
        };
        finish.0.finish(result);
        let result = finish.0.result().unwrap_or(Err(Error::Aborted));
        *this.finish = None;
        Poll::Ready(result)
    }
}

impl Worker for SimpleWorker {
    fn kill(&self) {
        self.lifecycle.kill();
    }

    fn wait(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.lifecycle.wait())
    }

    fn abort(&self) {
        match &self.abort {
            Abort::Task(task) => task.abort(),
            Abort::Driven(signal) => {
                signal.requested.store(true, Ordering::Release);
                signal.waker.wake();
            }
        }
    }
}

/// Publishes [`Error::Aborted`] if the body is dropped before it returned
/// (its task aborted, its driver dropped), so waiters of an aborted worker
/// are never left hanging.
struct FinishOnDrop(Arc<Lifecycle>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        // No-op when the body already finished normally.
        self.0.finish(Err(Error::Aborted));
    }
}
