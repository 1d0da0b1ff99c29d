//! The coalescing hand-off between a watcher's producer and its consumer.
//!
//! One producer ([`ChangeSender`]) accumulates changes with
//! [`Change::accumulate`]; one consumer ([`QueueWatcher`]) takes the whole
//! pending batch at a time. Nothing is ever queued per change, so a burst
//! costs memory proportional to the distinct changes, not to their count.
//! This module must never block the producer on the consumer.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Change, Watcher};
use crate::{BoxFuture, Error, Lifecycle, Worker};

struct Shared<C: Change> {
    pending: Mutex<C::Pending>,
    /// One permit at most: wakes the single consumer.
    changed: Notify,
    lifecycle: Lifecycle,
}

impl<C: Change> Shared<C> {
    fn pending(&self) -> MutexGuard<'_, C::Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Creates a watcher fed by the returned sender. Killing the watcher ends
/// it at once; the sender then reports [`is_closed`](ChangeSender::is_closed).
///
/// ```
/// use steward_worker::{Watcher, Worker, change_queue};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (sender, mut watcher) = change_queue::<Vec<String>>();
/// sender.send(vec!["a".into(), "b".into()]);
/// sender.send(vec!["b".into(), "c".into()]);
/// assert_eq!(watcher.next_change().await.unwrap(), ["a", "b", "c"]);
/// watcher.kill();
/// assert!(sender.is_closed());
/// # }
/// ```
pub fn change_queue<C: Change>() -> (ChangeSender<C>, QueueWatcher<C>) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(C::Pending::default()),
        changed: Notify::new(),
        lifecycle: Lifecycle::new(),
    });
    (
        ChangeSender {
            shared: shared.clone(),
        },
        QueueWatcher { shared },
    )
}

/// The producing end of a [`change_queue`]. Dropping it ends the watcher
/// cleanly, which its consumer sees as [`Error::WatcherStopped`].
pub struct ChangeSender<C: Change> {
    shared: Arc<Shared<C>>,
}

impl<C: Change> std::fmt::Debug for ChangeSender<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeSender").finish_non_exhaustive()
    }
}

impl<C: Change> ChangeSender<C> {
    /// Adds a change, merging it with those not yet taken. Returns false
    /// (and drops the change) once the watcher is stopping or stopped: the
    /// producer can stop producing.
    pub fn send(&self, change: C) -> bool {
        if self.is_closed() {
            return false;
        }
        C::accumulate(&mut self.shared.pending(), change);
        self.shared.changed.notify_one();
        true
    }

    /// True once the watcher was killed or has finished.
    pub fn is_closed(&self) -> bool {
        self.shared.lifecycle.is_dying()
    }

    /// A token cancelled when the watcher is killed.
    pub fn dying(&self) -> CancellationToken {
        self.shared.lifecycle.dying()
    }

    /// Ends the watcher with `result`: its `wait` returns it, and its
    /// consumer gets the error (or [`Error::WatcherStopped`]) after the
    /// changes still pending.
    pub fn close(self, result: Result<(), Error>) {
        self.finish(result);
    }

    fn finish(&self, result: Result<(), Error>) {
        self.shared.lifecycle.finish(result);
        self.shared.changed.notify_one();
    }
}

impl<C: Change> Drop for ChangeSender<C> {
    fn drop(&mut self) {
        // No-op after `close`: the first result wins.
        self.finish(Ok(()));
    }
}

/// A watcher fed by a [`ChangeSender`]; the consuming end of a
/// [`change_queue`].
pub struct QueueWatcher<C: Change> {
    shared: Arc<Shared<C>>,
}

impl<C: Change> std::fmt::Debug for QueueWatcher<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueWatcher").finish_non_exhaustive()
    }
}

impl<C: Change> QueueWatcher<C> {
    async fn next(&self) -> Result<C, Error> {
        loop {
            let taken = C::take(&mut self.shared.pending());
            if let Some(change) = taken {
                return Ok(change);
            }
            if let Some(result) = self.shared.lifecycle.result() {
                return Err(result.err().unwrap_or(Error::WatcherStopped));
            }
            // `notify_one` keeps a permit, so a change sent between the
            // check above and this await is not missed.
            self.shared.changed.notified().await;
        }
    }
}

impl<C: Change> Worker for QueueWatcher<C> {
    fn kill(&self) {
        // Nothing else to stop: the watcher ends at once, unless its
        // producer already ended it with an error (the first result wins).
        self.shared.lifecycle.finish(Ok(()));
        self.shared.changed.notify_one();
    }

    fn wait(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.shared.lifecycle.wait())
    }
}

impl<C: Change> Watcher for QueueWatcher<C> {
    type Change = C;

    fn next_change(&mut self) -> BoxFuture<'_, Result<C, Error>> {
        Box::pin(self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pending_changes_come_before_the_end() {
        let (sender, mut watcher) = change_queue::<()>();
        sender.send(());
        sender.close(Err(Error::msg("source gone")));
        assert!(watcher.next_change().await.is_ok());
        let end = watcher.next_change().await.unwrap_err();
        assert_eq!(end.to_string(), "source gone");
        assert_eq!(watcher.wait().await.unwrap_err().to_string(), "source gone");
    }

    #[tokio::test]
    async fn dropped_sender_is_a_clean_but_unexpected_end() {
        let (sender, mut watcher) = change_queue::<Vec<String>>();
        drop(sender);
        assert!(matches!(
            watcher.next_change().await,
            Err(Error::WatcherStopped)
        ));
        assert!(watcher.wait().await.is_ok());
    }

    #[tokio::test]
    async fn kill_closes_the_sender() {
        let (sender, mut watcher) = change_queue::<()>();
        watcher.kill();
        assert!(sender.is_closed());
        assert!(!sender.send(()));
        assert!(matches!(
            watcher.next_change().await,
            Err(Error::WatcherStopped)
        ));
        assert!(watcher.wait().await.is_ok());
    }
}
