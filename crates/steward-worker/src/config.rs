//! Observing a configuration that keeps only *valid* values (Juju's
//! `WaitForEnviron` and `EnvironObserver`, for any config type).
//!
//! Loading and validating are separate on purpose: a *loader* reads the raw
//! value (an I/O error there is a real failure and is returned), and a
//! *validator* turns it into the config or rejects it with a reason (an
//! invalid value is logged and skipped, never returned and never stored).
//! This module must never hand out an invalid value.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::worker::delegate_worker;
use crate::{Error, SetUpError, WatchHandler, WatchWorker, Watcher};

/// Waits for the first valid value: on every change of `watcher`, loads
/// the raw value and validates it, until one is valid.
///
/// Invalid values are logged with their reason and skipped. Returns the
/// loader's error, the watcher's error (or [`Error::WatcherStopped`]) or
/// [`Error::Cancelled`] when `cancel` fires — promptly, even while waiting
/// for a change.
pub async fn wait_for_valid<W, R, T, E, L, Fut, V>(
    watcher: &mut W,
    load: L,
    validate: V,
    cancel: &CancellationToken,
) -> Result<T, Error>
where
    W: Watcher + ?Sized,
    L: FnMut() -> Fut,
    Fut: Future<Output = Result<R, Error>>,
    V: FnMut(R) -> Result<T, E>,
    E: fmt::Display,
{
    first_valid(watcher, load, validate, cancel)
        .await
        .map_err(NotYetValid::into_error)
}

/// Why no valid value arrived; remembers whether the watcher itself ended,
/// whose error must then not be reported a second time on clean-up.
enum NotYetValid {
    WatcherEnded(Error),
    Failed(Error),
}

impl NotYetValid {
    fn into_error(self) -> Error {
        match self {
            NotYetValid::WatcherEnded(error) | NotYetValid::Failed(error) => error,
        }
    }
}

async fn first_valid<W, R, T, E, L, Fut, V>(
    watcher: &mut W,
    mut load: L,
    mut validate: V,
    cancel: &CancellationToken,
) -> Result<T, NotYetValid>
where
    W: Watcher + ?Sized,
    L: FnMut() -> Fut,
    Fut: Future<Output = Result<R, Error>>,
    V: FnMut(R) -> Result<T, E>,
    E: fmt::Display,
{
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(NotYetValid::Failed(Error::Cancelled)),
            change = watcher.next_change() => {
                change.map_err(NotYetValid::WatcherEnded)?;
            }
        }
        let raw = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(NotYetValid::Failed(Error::Cancelled)),
            raw = load() => raw.map_err(NotYetValid::Failed)?,
        };
        match validate(raw) {
            Ok(valid) => return Ok(valid),
            Err(reason) => warn!(%reason, "ignoring invalid configuration"),
        }
    }
}

/// Keeps the latest valid configuration and tells subscribers about new
/// ones.
///
/// [`start`](Self::start) waits for the first valid value; from then on the
/// observer is a worker that reloads on every change of its watcher and
/// publishes each valid value. Invalid values are logged and never replace
/// a valid one; a loader or watcher error stops the worker (run it under a
/// [`Runner`](crate::Runner) to retry).
///
/// ```
/// use steward_worker::{ConfigObserver, WatchedValue, Worker};
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), steward_worker::Error> {
/// // The raw config: text that should hold a port number.
/// let raw = WatchedValue::new(String::from("8080"));
/// let source = raw.clone();
/// let observer = ConfigObserver::start(
///     raw.watch(),
///     move || { let text = source.get(); async move { Ok(text) } },
///     |text: String| text.parse::<u16>().map_err(|e| format!("bad port {text:?}: {e}")),
///     &CancellationToken::new(),
/// ).await?;
/// assert_eq!(*observer.current(), 8080);
///
/// let mut updates = observer.subscribe();
/// raw.set("not a port".into()); // logged, ignored
/// raw.set("9090".into());
/// updates.changed().await.unwrap();
/// assert_eq!(**updates.borrow(), 9090);
///
/// observer.kill();
/// observer.wait().await
/// # }
/// ```
#[derive(Debug)]
pub struct ConfigObserver<T> {
    latest: watch::Receiver<Arc<T>>,
    worker: WatchWorker,
}

impl<T: Send + Sync + 'static> ConfigObserver<T> {
    /// Waits (see [`wait_for_valid`]) for the first valid value, then
    /// starts observing. On error the watcher is stopped (an error stopping
    /// it is attached as [`Error::WithCleanup`] context).
    pub async fn start<W, R, E, L, Fut, V>(
        mut watcher: W,
        mut load: L,
        mut validate: V,
        cancel: &CancellationToken,
    ) -> Result<Self, Error>
    where
        W: Watcher,
        R: Send + 'static,
        L: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, Error>> + Send,
        V: FnMut(R) -> Result<T, E> + Send + 'static,
        E: fmt::Display + 'static,
    {
        let first = match first_valid(&mut watcher, &mut load, &mut validate, cancel).await {
            Ok(first) => first,
            Err(not_yet) => {
                watcher.kill();
                let stopped = watcher.wait().await;
                return Err(match not_yet {
                    // Its `wait` repeats the error it ended with.
                    NotYetValid::WatcherEnded(error) => error,
                    NotYetValid::Failed(error) => {
                        error.with_cleanup(stopped.err().into_iter().collect())
                    }
                });
            }
        };
        let (publish, latest) = watch::channel(Arc::new(first));
        let worker = WatchWorker::spawn(Observe {
            watcher: Some(watcher),
            load,
            validate,
            publish,
        });
        Ok(Self { latest, worker })
    }

    /// The latest valid value. Never blocks on the observer (a read lock
    /// held only to clone an `Arc`).
    pub fn current(&self) -> Arc<T> {
        self.latest.borrow().clone()
    }

    /// A receiver that sees every valid value published after this call
    /// (`changed().await`); the value current now is already seen, so a
    /// caller that reads [`current`](Self::current) first never handles it
    /// twice.
    pub fn subscribe(&self) -> watch::Receiver<Arc<T>> {
        let mut receiver = self.latest.clone();
        receiver.mark_unchanged();
        receiver
    }
}

delegate_worker!([T: Send + Sync + 'static] ConfigObserver<T> => worker);

struct Observe<W, L, V, T> {
    watcher: Option<W>,
    load: L,
    validate: V,
    publish: watch::Sender<Arc<T>>,
}

impl<W, R, T, E, L, Fut, V> WatchHandler for Observe<W, L, V, T>
where
    W: Watcher,
    T: Send + Sync + 'static,
    R: Send + 'static,
    L: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<R, Error>> + Send,
    V: FnMut(R) -> Result<T, E> + Send + 'static,
    E: fmt::Display + 'static,
{
    type Watcher = W;

    async fn set_up(&mut self) -> Result<W, SetUpError<W>> {
        // `start` hands its watcher over exactly once.
        self.watcher
            .take()
            .ok_or_else(|| Error::msg("config observer was set up twice").into())
    }

    async fn handle(&mut self, _change: W::Change, stop: &CancellationToken) -> Result<(), Error> {
        // A loader stuck on I/O must not keep the observer from stopping.
        let raw = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            raw = (self.load)() => raw?,
        };
        match (self.validate)(raw) {
            Ok(valid) => {
                info!("new valid configuration");
                self.publish.send_replace(Arc::new(valid));
            }
            Err(reason) => {
                warn!(%reason, "ignoring invalid configuration; keeping the current one")
            }
        }
        Ok(())
    }
}
