//! [`SimpleWorker`]: a worker that is one tokio task running a body.
//!
//! The body is an async closure or a type implementing [`Run`]; it receives
//! a cancellation token that fires on `kill`, and its result is the
//! worker's result (Juju's `NewSimpleWorker`). This module must never
//! restart anything: restarting is the runner's job.

use std::future::Future;
use std::sync::Arc;

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::panic::catch_panic;
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

/// A worker running one body on its own tokio task.
///
/// - `kill` cancels the token the body was given; the body decides how to
///   stop.
/// - `wait` returns the body's result; a panic in the body becomes
///   [`Error::Panicked`], and an aborted task [`Error::Aborted`].
/// - `abort` aborts the task at its next `.await`.
///
/// Dropping a `SimpleWorker` detaches it, like dropping a tokio
/// `JoinHandle`: the body keeps running.
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
    task: AbortHandle,
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
            task: task.abort_handle(),
        }
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
        self.task.abort();
    }
}

/// Publishes [`Error::Aborted`] if the task is dropped before its body
/// returned, so waiters of an aborted worker are never left hanging.
struct FinishOnDrop(Arc<Lifecycle>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        // No-op when the body already finished normally.
        self.0.finish(Err(Error::Aborted));
    }
}
