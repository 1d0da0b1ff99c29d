//! Watchers: workers that yield changes.
//!
//! A [`Watcher`] is a [`Worker`] with a stream of changes. Changes that
//! arrive faster than the consumer takes them are *coalesced* by their
//! [`Change`] type: a notify change (`()`) collapses a burst into one
//! pending "something changed"; a strings change (`Vec<String>`) merges a
//! burst into one batch of keys, in first-seen order, without duplicates.
//! So a slow consumer never falls behind and never misses the final state.
//!
//! Every watcher sends one change as soon as it starts, so a consumer
//! always sees the current state once before any real change.
//!
//! This module owns the contracts and the coalescing; it must never decide
//! what a change means (that is the handler's job, see
//! [`WatchWorker`](crate::WatchWorker)).

mod file;
mod memory;
mod queue;

use std::collections::HashSet;

pub use file::{FileWatcher, FileWatcherBuilder};
pub use memory::{WatchedMap, WatchedValue};
pub use queue::{ChangeSender, QueueWatcher, change_queue};

use crate::{BoxFuture, Error, Worker};

/// A worker that yields changes.
///
/// [`next_change`](Watcher::next_change) resolves with the next batch of
/// changes (coalesced, see the [module docs](self)). Once the watcher has
/// stopped it resolves with an error instead: the watcher's own error, or
/// [`Error::WatcherStopped`] if it stopped cleanly. It never panics and
/// never hangs on a stopped watcher.
///
/// Object safe: `Box<dyn Watcher<Change = ()>>` is a notify watcher and
/// `Box<dyn Watcher<Change = Vec<String>>>` a strings watcher.
pub trait Watcher: Worker {
    /// What one batch of changes looks like.
    type Change: Change;

    /// Waits for the next batch of changes. Cancel safe: dropping the
    /// future loses nothing, the changes stay pending.
    fn next_change(&mut self) -> BoxFuture<'_, Result<Self::Change, Error>>;
}

impl<W: Watcher + ?Sized> Watcher for Box<W> {
    type Change = W::Change;

    fn next_change(&mut self) -> BoxFuture<'_, Result<Self::Change, Error>> {
        (**self).next_change()
    }
}

/// A watcher that says only "something changed".
pub type NotifyWatcher = dyn Watcher<Change = ()>;

/// A watcher that says which keys changed.
pub type StringsWatcher = dyn Watcher<Change = Vec<String>>;

/// How changes of one type coalesce while nobody takes them.
///
/// `Pending` accumulates changes; [`take`](Change::take) hands the
/// accumulated batch out and resets it.
pub trait Change: Send + Sized + 'static {
    /// The accumulated, not yet delivered changes.
    type Pending: Default + Send;

    /// Adds one change to the pending batch.
    fn accumulate(pending: &mut Self::Pending, change: Self);

    /// Takes the pending batch, if any change arrived since the last take.
    fn take(pending: &mut Self::Pending) -> Option<Self>;
}

/// Notify changes: any number of them is one "something changed".
impl Change for () {
    type Pending = bool;

    fn accumulate(pending: &mut bool, (): ()) {
        *pending = true;
    }

    fn take(pending: &mut bool) -> Option<()> {
        std::mem::take(pending).then_some(())
    }
}

/// The pending batch of a strings watcher: keys in first-seen order,
/// without duplicates, in O(1) per key.
#[derive(Debug, Default)]
pub struct KeyBatch {
    changed: bool,
    keys: Vec<String>,
    seen: HashSet<String>,
}

/// Strings changes: batches merge, order kept, duplicates dropped. An
/// empty batch is still a change (a watcher's initial event may be empty).
impl Change for Vec<String> {
    type Pending = KeyBatch;

    fn accumulate(pending: &mut KeyBatch, change: Vec<String>) {
        pending.changed = true;
        for key in change {
            if !pending.seen.contains(&key) {
                pending.seen.insert(key.clone());
                pending.keys.push(key);
            }
        }
    }

    fn take(pending: &mut KeyBatch) -> Option<Vec<String>> {
        if !std::mem::take(&mut pending.changed) {
            return None;
        }
        pending.seen.clear();
        Some(std::mem::take(&mut pending.keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_changes_coalesce() {
        let mut pending = false;
        assert_eq!(<()>::take(&mut pending), None);
        for _ in 0..3 {
            <()>::accumulate(&mut pending, ());
        }
        assert_eq!(<()>::take(&mut pending), Some(()));
        assert_eq!(<()>::take(&mut pending), None);
    }

    #[test]
    fn strings_changes_merge_in_order_without_duplicates() {
        let mut pending = KeyBatch::default();
        let strings = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        Vec::accumulate(&mut pending, strings(&["b", "a"]));
        Vec::accumulate(&mut pending, strings(&["c", "a", "b", "d"]));
        assert_eq!(
            Vec::take(&mut pending),
            Some(strings(&["b", "a", "c", "d"]))
        );
        assert_eq!(Vec::take(&mut pending), None);
        // A key seen in an earlier batch is new again in the next one.
        Vec::accumulate(&mut pending, strings(&["a"]));
        assert_eq!(Vec::take(&mut pending), Some(strings(&["a"])));
        // An empty batch is a change too.
        Vec::accumulate(&mut pending, Vec::new());
        assert_eq!(Vec::take(&mut pending), Some(Vec::new()));
    }
}
