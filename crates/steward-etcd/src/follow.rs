//! Following a key prefix: list it, then watch it from the list's revision
//! + 1, forever — the one place where etcd's watch semantics are handled.
//!
//! - A stream that fails (a lost connection, a deadline, etcd restarted)
//!   is opened again from the revision after the last one delivered, with
//!   backoff, so no change is missed and none is delivered twice.
//! - After an outage ([`Health`](crate::health::Health)'s reconnect epoch)
//!   the stream is replaced at once, whatever state the old one was left in
//!   (a frozen etcd leaves its streams open but silent).
//! - A revision etcd compacted away cannot be watched from (etcd says so
//!   with `compact_revision`, and the watch is cancelled): the prefix is
//!   listed again, and the difference from what was known is delivered —
//!   puts of keys that are new or changed, deletes of keys that went.
//!
//! This module must never log above debug: outages are logged once, by
//! the health.

use std::collections::HashMap;
use std::sync::Arc;

use etcd_client::{EventType, WatchOptions};
use steward_worker::ChangeSender;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::keys::Keys;
use crate::store::Shared;
use crate::{Error, KeyChanges, KeyEvent};

/// What a key was, the last time the follower delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    create_revision: i64,
    mod_revision: i64,
}

/// The state of one followed prefix.
pub(crate) struct Follower {
    shared: Arc<Shared>,
    /// The absolute prefix followed.
    prefix: String,
    /// Every key delivered and not deleted, relative to `prefix`.
    known: HashMap<String, Known>,
    /// The revision to watch from: one past the last delivered.
    next_revision: i64,
}

/// How one watch stream ended.
enum Ended {
    /// The store stopped, or the consumer is gone.
    Stopped,
    /// etcd reconnected after an outage: open a fresh stream now.
    Reconnected,
    /// The revision to watch from was compacted: list again.
    Compacted(i64),
    /// The stream failed; `delivered` if it had worked for a while.
    Failed { reason: String, established: bool },
}

impl Follower {
    pub(crate) fn new(shared: Arc<Shared>, prefix: String) -> Self {
        Self {
            shared,
            prefix,
            known: HashMap::new(),
            next_revision: 0,
        }
    }

    /// Lists the prefix (one linearizable read) and returns its revision
    /// and the difference from what was known: a put for every key that
    /// is new or changed, a delete for every key that went. The first
    /// list returns every key.
    pub(crate) async fn list(&mut self) -> Result<(i64, Vec<KeyEvent>), Error> {
        let (revision, entries) = self.shared.list(&self.prefix).await?;
        let mut events = Vec::new();
        let mut listed = HashMap::new();
        for (key, kv) in entries {
            let now = Known {
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
            };
            if self.known.get(&key) != Some(&now) {
                events.push(KeyEvent {
                    key: key.clone(),
                    value: Some(kv.value().to_vec()),
                    create_revision: now.create_revision,
                    mod_revision: now.mod_revision,
                });
            }
            listed.insert(key, now);
        }
        let mut gone: Vec<_> = self
            .known
            .keys()
            .filter(|key| !listed.contains_key(*key))
            .cloned()
            .collect();
        gone.sort();
        events.extend(gone.into_iter().map(|key| KeyEvent {
            key,
            value: None,
            create_revision: 0,
            mod_revision: revision,
        }));
        events.sort_by(|a, b| a.key.cmp(&b.key));
        self.known = listed;
        self.next_revision = revision + 1;
        Ok((revision, events))
    }

    /// Follows the prefix from after the last list, calling `emit` with
    /// each batch of changes (in revision order) until the store stops or
    /// `emit` returns false.
    pub(crate) async fn follow(mut self, mut emit: impl FnMut(i64, Vec<KeyEvent>) -> bool) {
        let stop = self.shared.stop.clone();
        let mut epochs = self.shared.health.epochs();
        epochs.mark_unchanged();
        let backoff = self.shared.backoff();
        let mut delays = backoff.start();
        let mut must_list = false;
        loop {
            let reason = if must_list {
                match self.list().await {
                    Ok((revision, events)) => {
                        must_list = false;
                        if !emit(revision, events) {
                            return;
                        }
                        continue;
                    }
                    Err(Error::Closed { .. }) => return,
                    Err(error) => error.to_string(),
                }
            } else {
                match self.watch(&stop, &mut epochs, &mut emit).await {
                    Ended::Stopped => return,
                    Ended::Reconnected => {
                        debug!(prefix = %self.prefix, from = self.next_revision, "watch: reopening after a reconnect");
                        delays = backoff.start();
                        continue;
                    }
                    Ended::Compacted(compacted) => {
                        debug!(prefix = %self.prefix, from = self.next_revision, compacted, "watch: revision compacted; listing again");
                        must_list = true;
                        continue;
                    }
                    Ended::Failed {
                        reason,
                        established,
                    } => {
                        if established {
                            delays = backoff.start();
                        }
                        reason
                    }
                }
            };
            let delay = delays.next_delay(None);
            debug!(prefix = %self.prefix, from = self.next_revision, %reason, ?delay, "watch: retrying");
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
                _ = epochs.changed() => {}
            }
        }
    }

    /// One watch stream, from `next_revision`, until it ends.
    async fn watch(
        &mut self,
        stop: &CancellationToken,
        epochs: &mut watch::Receiver<u64>,
        emit: &mut impl FnMut(i64, Vec<KeyEvent>) -> bool,
    ) -> Ended {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.next_revision);
        let key = self.prefix.clone();
        let mut client = self.shared.client();
        let opened = tokio::select! {
            () = stop.cancelled() => return Ended::Stopped,
            opened = tokio::time::timeout(
                self.shared.options.request_timeout,
                client.watch(key, Some(options)),
            ) => opened,
        };
        let mut stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                let reason = self
                    .shared
                    .failure(format!("watching {}", self.prefix), &error)
                    .to_string();
                return Ended::Failed {
                    reason,
                    established: false,
                };
            }
            Err(_) => {
                let reason = self.shared.no_answer();
                self.shared.health.failed(&reason);
                return Ended::Failed {
                    reason,
                    established: false,
                };
            }
        };
        let mut established = false;
        loop {
            let message = tokio::select! {
                biased;
                () = stop.cancelled() => return Ended::Stopped,
                _ = epochs.changed() => return Ended::Reconnected,
                message = stream.message() => message,
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => {
                    return Ended::Failed {
                        reason: "the watch stream ended".to_owned(),
                        established,
                    };
                }
                Err(error) => {
                    return Ended::Failed {
                        reason: error.to_string(),
                        established,
                    };
                }
            };
            if response.compact_revision() > 0 {
                return Ended::Compacted(response.compact_revision());
            }
            if response.canceled() {
                return Ended::Failed {
                    reason: format!("etcd cancelled the watch: {}", response.cancel_reason()),
                    established,
                };
            }
            established |= response.created();
            let mut events = Vec::new();
            let mut revision = self.next_revision - 1;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                revision = revision.max(kv.mod_revision());
                let Some(key) = Keys::strip(kv.key(), &self.prefix) else {
                    continue;
                };
                let event = match event.event_type() {
                    EventType::Put => {
                        let known = Known {
                            create_revision: kv.create_revision(),
                            mod_revision: kv.mod_revision(),
                        };
                        self.known.insert(key.to_owned(), known);
                        KeyEvent {
                            key: key.to_owned(),
                            value: Some(kv.value().to_vec()),
                            create_revision: known.create_revision,
                            mod_revision: known.mod_revision,
                        }
                    }
                    EventType::Delete => {
                        self.known.remove(key);
                        KeyEvent {
                            key: key.to_owned(),
                            value: None,
                            create_revision: 0,
                            mod_revision: kv.mod_revision(),
                        }
                    }
                };
                events.push(event);
            }
            self.next_revision = self.next_revision.max(revision + 1);
            if !events.is_empty() && !emit(revision, events) {
                return Ended::Stopped;
            }
        }
    }
}

/// Feeds a prefix watcher: the first list (retried until etcd answers),
/// then every change, until the store stops or the watcher is killed.
pub(crate) async fn follow_into(
    shared: Arc<Shared>,
    prefix: String,
    sender: &ChangeSender<KeyChanges>,
) {
    let stop = shared.stop.clone();
    let mut follower = Follower::new(shared.clone(), prefix);
    let mut delays = shared.backoff().start();
    loop {
        match follower.list().await {
            Ok((revision, events)) => {
                if !sender.send(KeyChanges { revision, events }) {
                    return;
                }
                break;
            }
            Err(Error::Closed { .. }) => return,
            Err(error) => {
                let delay = delays.next_delay(None);
                debug!(%error, ?delay, "watch: the first list failed; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    follower
        .follow(|revision, events| sender.send(KeyChanges { revision, events }))
        .await;
}
