#![doc = include_str!("../docs/guide.md")]

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
