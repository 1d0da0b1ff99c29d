//! Supervised workers for long-lived agents.
//!
//! A *worker* is anything running that can be told to stop and waited for
//! ([`Worker`]). A [`Runner`] starts named workers, restarts them after a
//! delay when they fail, and — when one fails in a way that
//! [`is_fatal`](RunnerBuilder::is_fatal) — stops all of them and reports the
//! most important error. Runners are workers too, so they nest into trees.
//!
//! This is the worker package of Juju's agent (the `Runner`,
//! `NewSimpleWorker`, `ErrDead`, `ErrTerminateAgent` and `RestartDelay` of
//! the original) rebuilt on tokio, with its gaps closed:
//!
//! - **One live instance per id, ever.** Each id is driven by one task that
//!   starts an instance only after the previous one's `wait()` returned.
//! - **Cancellable restart delays**: a worker stopped while it waits to
//!   restart is never started again.
//! - **Panics are errors**: a panicking start function or worker becomes
//!   [`Error::Panicked`] for that worker; the runner carries on.
//! - **Backoff and intensity**: delays grow exponentially with jitter up to
//!   a cap and reset after a stable run ([`Backoff`]); too many restarts in
//!   a window can escalate to a fatal error ([`RestartIntensity`]).
//! - **Bounded shutdown**: workers get a grace period, then are aborted and
//!   named.
//! - **Observable**: [`Runner::report`] gives a serialisable snapshot, and
//!   every start, exit, restart and fatal error is a `tracing` event inside
//!   a `worker{runner, id}` span.
//!
//! # Writing a worker
//!
//! The usual way is a body run by [`SimpleWorker`]: an async closure or a
//! [`Run`] type that gets a [`CancellationToken`](tokio_util::sync::CancellationToken)
//! and returns `Result<(), Error>`. Implement [`Worker`] directly when the
//! thing being supervised is not a single task (a child process, a pool);
//! [`Lifecycle`] holds the kill/wait state for you.
//!
//! ```
//! use std::time::Duration;
//! use steward_worker::{Error, Runner, SimpleWorker, Worker};
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Error> {
//! let runner = Runner::builder().restart_delay(Duration::from_millis(100)).build();
//! runner.start_worker("poller", || async {
//!     Ok(SimpleWorker::spawn(|stop: CancellationToken| async move {
//!         let mut tick = tokio::time::interval(Duration::from_secs(5));
//!         loop {
//!             tokio::select! {
//!                 _ = stop.cancelled() => return Ok(()),
//!                 _ = tick.tick() => { /* poll something; `Err` restarts us */ }
//!             }
//!         }
//!     }))
//! })?;
//! assert_eq!(runner.worker_names(), ["poller"]);
//! runner.kill();
//! runner.wait().await
//! # }
//! ```
//!
//! # Errors
//!
//! Every fallible operation returns the one [`Error`] enum. Workers carry
//! their own errors inside [`Error::Other`] (see [`Error::other`] and
//! [`Error::downcast_ref`]); the other variants are this crate's and can be
//! matched on.

mod backoff;
mod config;
mod error;
mod lifecycle;
mod panic;
mod runner;
mod simple;
#[cfg(feature = "test-util")]
pub mod test_util;
mod watch_worker;
pub mod watcher;
mod worker;

pub use backoff::{Backoff, BackoffState};
pub use config::{ConfigObserver, wait_for_valid};
pub use error::{BoxError, Error};
pub use lifecycle::Lifecycle;
pub use runner::{
    RestartIntensity, Runner, RunnerBuilder, RunnerReport, RunnerState, WorkerReport, WorkerState,
};
pub use simple::{Run, SimpleWorker};
pub use watch_worker::{SetUpError, WatchHandler, WatchWorker};
pub use watcher::{
    Change, ChangeSender, FileWatcher, FileWatcherBuilder, NotifyWatcher, QueueWatcher,
    StringsWatcher, WatchedMap, WatchedValue, Watcher, change_queue,
};
pub use worker::{BoxFuture, Worker};
