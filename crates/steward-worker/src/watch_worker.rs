//! [`WatchWorker`]: a worker driven by a watcher — set up, handle each
//! change, tear down (Juju's `NewNotifyWorker` and `NewStringsWorker`,
//! as one implementation generic over the change type).
//!
//! This module owns the loop and its error rules; it must never interpret
//! changes (the [`WatchHandler`] does) nor restart anything (a
//! [`Runner`](crate::Runner) does).

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::worker::delegate_worker;
use crate::{Error, SimpleWorker, Watcher, Worker};

/// The business logic of a watch-driven worker.
///
/// The worker calls [`set_up`](Self::set_up) once, then
/// [`handle`](Self::handle) for every batch of changes (the first one is
/// the watcher's initial event, so `handle` always sees the current state
/// once), and [`tear_down`](Self::tear_down) exactly once after a
/// successful set-up, however the loop ends.
pub trait WatchHandler: Send + 'static {
    /// The watcher this handler consumes.
    type Watcher: Watcher;

    /// Creates the watcher. A set-up that fails after creating its watcher
    /// returns it in [`SetUpError`], and the worker stops it; `?` on a plain
    /// [`Error`] works too.
    fn set_up(
        &mut self,
    ) -> impl Future<Output = Result<Self::Watcher, SetUpError<Self::Watcher>>> + Send;

    /// Processes one batch of changes. An error stops the worker (and the
    /// watcher).
    ///
    /// `stop` fires when the worker is killed. A kill never interrupts
    /// `handle`: the worker waits for it to return and then ends without
    /// error. A long `handle` should watch `stop` and return `Ok(())` early.
    fn handle(
        &mut self,
        change: <Self::Watcher as Watcher>::Change,
        stop: &CancellationToken,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Releases what `set_up` acquired. Its error is the worker's error
    /// after a clean run, and kept as context otherwise.
    fn tear_down(&mut self) -> impl Future<Output = Result<(), Error>> + Send {
        async { Ok(()) }
    }
}

/// A failed [`WatchHandler::set_up`], with the watcher it may already
/// have started (the worker stops it).
#[derive(Debug)]
pub struct SetUpError<W> {
    /// Why the set-up failed.
    pub error: Error,
    /// The watcher created before the failure, if any.
    pub watcher: Option<W>,
}

impl<W> From<Error> for SetUpError<W> {
    fn from(error: Error) -> Self {
        Self {
            error,
            watcher: None,
        }
    }
}

/// A worker running a [`WatchHandler`].
///
/// The worker's result follows these rules:
///
/// 1. The loop's own error comes first: a failed `set_up`, a failed
///    `handle`, or the watcher ending (its error, or
///    [`Error::WatcherStopped`] if it ended cleanly while still wanted).
/// 2. Errors from stopping the watcher and from `tear_down` are attached
///    as context ([`Error::WithCleanup`]), never replacing that error.
/// 3. After a clean run (killed), the first of those errors is the result.
///
/// When a kill and a change are both ready, the kill wins: no `handle`
/// call starts after `kill` returned.
///
/// ```
/// use steward_worker::{Error, SetUpError, QueueWatcher, WatchHandler, WatchWorker, WatchedValue, Worker};
/// use tokio_util::sync::CancellationToken;
///
/// struct LogLevel { source: WatchedValue<&'static str>, applied: WatchedValue<&'static str> }
///
/// impl WatchHandler for LogLevel {
///     type Watcher = QueueWatcher<()>;
///     async fn set_up(&mut self) -> Result<Self::Watcher, SetUpError<Self::Watcher>> {
///         Ok(self.source.watch())
///     }
///     async fn handle(&mut self, (): (), _stop: &CancellationToken) -> Result<(), Error> {
///         self.applied.set(self.source.get());
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (source, applied) = (WatchedValue::new("info"), WatchedValue::new("unset"));
/// let mut seen = applied.watch();
/// let worker = WatchWorker::spawn(LogLevel { source: source.clone(), applied: applied.clone() });
/// source.set("debug");
/// # use steward_worker::Watcher;
/// while applied.get() != "debug" { seen.next_change().await.unwrap(); }
/// worker.kill();
/// assert!(worker.wait().await.is_ok());
/// # }
/// ```
#[derive(Debug)]
pub struct WatchWorker {
    worker: SimpleWorker,
}

impl WatchWorker {
    /// Starts the worker on its own task.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn spawn<H: WatchHandler>(handler: H) -> Self {
        Self {
            worker: SimpleWorker::spawn(move |stop: CancellationToken| run(handler, stop)),
        }
    }
}

delegate_worker!([] WatchWorker => worker);

async fn run<H: WatchHandler>(mut handler: H, stop: CancellationToken) -> Result<(), Error> {
    let mut watcher = match handler.set_up().await {
        Ok(watcher) => watcher,
        Err(SetUpError { error, watcher }) => {
            let mut cleanup = Vec::new();
            if let Some(watcher) = watcher {
                watcher.kill();
                if let Err(stop_error) = watcher.wait().await {
                    cleanup.push(stop_error);
                }
            }
            debug!(error = ?error, "watch worker set-up failed");
            return Err(error.with_cleanup(cleanup));
        }
    };

    let mut watcher_ended = false;
    let loop_result = loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break Ok(()),
            change = watcher.next_change() => match change {
                Ok(change) => {
                    if let Err(error) = handler.handle(change, &stop).await {
                        break Err(error);
                    }
                }
                Err(error) => {
                    watcher_ended = true;
                    break Err(error);
                }
            },
        }
    };

    let mut cleanup = Vec::new();
    watcher.kill();
    let stop_result = watcher.wait().await;
    // A watcher that ended with an error has already reported it as the
    // loop's error; reporting it again would only repeat it.
    if let Err(stop_error) = stop_result
        && !watcher_ended
    {
        cleanup.push(stop_error);
    }
    if let Err(tear_down_error) = handler.tear_down().await {
        cleanup.push(tear_down_error);
    }
    match loop_result {
        Err(error) => Err(error.with_cleanup(cleanup)),
        Ok(()) => {
            let mut cleanup = cleanup.into_iter();
            match cleanup.next() {
                None => Ok(()),
                Some(first) => Err(first.with_cleanup(cleanup.collect())),
            }
        }
    }
}
