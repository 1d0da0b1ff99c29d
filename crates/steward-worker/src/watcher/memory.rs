//! In-memory watchable state: a single value and a keyed map.
//!
//! For in-process state (the agent's own settings, test doubles of remote
//! state). Writers never wait for watchers: each watcher has a coalescing
//! queue, so a slow watcher only ever holds one pending batch. This module
//! must never hold its lock while a watcher's consumer runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::queue::{ChangeSender, QueueWatcher, change_queue};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A value whose changes can be watched with notify watchers.
///
/// ```
/// use steward_worker::{Watcher, WatchedValue};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let level = WatchedValue::new(1);
/// let mut watcher = level.watch();
/// watcher.next_change().await.unwrap(); // the initial event
/// level.set(2);
/// level.set(3);
/// watcher.next_change().await.unwrap(); // one event for both sets
/// assert_eq!(level.get(), 3);
/// # }
/// ```
pub struct WatchedValue<T> {
    state: Arc<Mutex<ValueState<T>>>,
}

impl<T> std::fmt::Debug for WatchedValue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedValue").finish_non_exhaustive()
    }
}

struct ValueState<T> {
    value: T,
    watchers: Vec<ChangeSender<()>>,
}

impl<T> Clone for WatchedValue<T> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<T: Clone + Send + 'static> WatchedValue<T> {
    /// A cell holding `value`, with no watchers yet.
    pub fn new(value: T) -> Self {
        Self {
            state: Arc::new(Mutex::new(ValueState {
                value,
                watchers: Vec::new(),
            })),
        }
    }

    /// A copy of the current value.
    pub fn get(&self) -> T {
        lock(&self.state).value.clone()
    }

    /// Replaces the value and notifies every watcher.
    pub fn set(&self, value: T) {
        self.update(|current| *current = value);
    }

    /// Changes the value in place and notifies every watcher.
    pub fn update(&self, change: impl FnOnce(&mut T)) {
        let mut state = lock(&self.state);
        change(&mut state.value);
        // Stopped watchers are dropped here rather than on their own kill,
        // so killing one never takes this lock.
        state.watchers.retain(|watcher| watcher.send(()));
    }

    /// A new notify watcher of this value; its first change arrives at once.
    pub fn watch(&self) -> QueueWatcher<()> {
        let (sender, watcher) = change_queue();
        sender.send(());
        lock(&self.state).watchers.push(sender);
        watcher
    }
}

/// A map from string keys to values whose changes can be watched with
/// strings watchers: each change names the keys that were set or removed.
///
/// ```
/// use steward_worker::{Watcher, WatchedMap};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let units = WatchedMap::new();
/// units.insert("web/0", "up");
/// let mut watcher = units.watch();
/// assert_eq!(watcher.next_change().await.unwrap(), ["web/0"]); // current keys
/// units.insert("web/1", "up");
/// units.remove("web/0");
/// units.insert("web/1", "down");
/// assert_eq!(watcher.next_change().await.unwrap(), ["web/1", "web/0"]);
/// assert_eq!(units.get("web/1"), Some("down"));
/// # }
/// ```
pub struct WatchedMap<V> {
    state: Arc<Mutex<MapState<V>>>,
}

impl<V> std::fmt::Debug for WatchedMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedMap").finish_non_exhaustive()
    }
}

struct MapState<V> {
    entries: BTreeMap<String, V>,
    watchers: Vec<ChangeSender<Vec<String>>>,
}

impl<V> Clone for WatchedMap<V> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<V: Clone + Send + 'static> Default for WatchedMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Clone + Send + 'static> WatchedMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(MapState {
                entries: BTreeMap::new(),
                watchers: Vec::new(),
            })),
        }
    }

    /// A copy of the value under `key`.
    pub fn get(&self, key: &str) -> Option<V> {
        lock(&self.state).entries.get(key).cloned()
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.state).entries.keys().cloned().collect()
    }

    /// Sets `key` and reports it changed; returns the previous value.
    pub fn insert(&self, key: impl Into<String>, value: V) -> Option<V> {
        let key = key.into();
        let mut state = lock(&self.state);
        let previous = state.entries.insert(key.clone(), value);
        Self::notify(&mut state, key);
        previous
    }

    /// Removes `key` and reports it changed, if it was present.
    pub fn remove(&self, key: &str) -> Option<V> {
        let mut state = lock(&self.state);
        let previous = state.entries.remove(key);
        if previous.is_some() {
            Self::notify(&mut state, key.to_owned());
        }
        previous
    }

    fn notify(state: &mut MapState<V>, key: String) {
        state
            .watchers
            .retain(|watcher| watcher.send(vec![key.clone()]));
    }

    /// A new strings watcher of this map; its first change, at once, lists
    /// every current key.
    pub fn watch(&self) -> QueueWatcher<Vec<String>> {
        let (sender, watcher) = change_queue();
        let mut state = lock(&self.state);
        sender.send(state.entries.keys().cloned().collect());
        state.watchers.push(sender);
        watcher
    }
}
