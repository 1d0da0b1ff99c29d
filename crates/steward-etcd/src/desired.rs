//! Desired state on etcd: [`DesiredState`] for [`EtcdStore`], with
//! compare-and-set as etcd transactions, and its watchers.
//!
//! All the desired-state watchers of one store are fed by **one** follower
//! of `<prefix>desired/`, started at connect: a change is given to every
//! watcher in revision order, so once a strings watcher has seen a write,
//! every other watcher of the store has been given every earlier one (the
//! conformance suite's fences rely on it). The registry also keeps the set
//! of runtime ids as of the last revision delivered, so a new strings
//! watcher's first change (every runtime, sorted) comes at once and
//! consistent with what follows.
//!
//! Read-your-writes: the follower's watch may lag behind this store's own
//! writes, which the caller already saw succeed. So the registry keeps the
//! revision of the last write of this store; a watcher made before the
//! follower got there ignores the events up to it (its first change, or a
//! read after it, already covers them), and a strings watcher's first
//! change waits until the follower got there (it lists the ids the follower
//! knows). This module must never wait on etcd while holding the registry
//! lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use steward_store::DesiredState;
use steward_worker::{BoxFuture, ChangeSender, QueueWatcher, change_queue};

use crate::follow::Follower;
use crate::keys::Keys;
use crate::store::{Shared, lock};
use crate::{Error, EtcdStore, KeyEvent};

/// A watcher's sender, and the revision up to which its first change
/// already covers the state (events up to it are not given to it).
struct Registered<C: steward_worker::Change> {
    covered: i64,
    sender: ChangeSender<C>,
}

impl<C: steward_worker::Change> Registered<C> {
    /// Gives it the change of `revision`, unless its first change covered
    /// it; false once its watcher is gone.
    fn send(&self, revision: i64, change: C) -> bool {
        self.covered >= revision || self.sender.send(change)
    }
}

/// The live desired-state watchers, and the runtime ids they describe.
#[derive(Default)]
pub(crate) struct DesiredRegistry {
    /// Runtimes with a desired version, as of `revision`.
    ids: BTreeSet<String>,
    /// The revision the follower delivered last.
    revision: i64,
    /// The revision of this store's last write (or later).
    written: i64,
    runtimes: HashMap<String, Vec<Registered<()>>>,
    all: Vec<Registered<Vec<String>>>,
    /// Strings watchers whose first change waits for the follower to reach
    /// `covered` (this store's writes before they were made).
    waiting: Vec<Registered<Vec<String>>>,
    closed: bool,
}

impl DesiredRegistry {
    /// Applies a batch of changes, complete up to `revision`, and
    /// notifies, event by event.
    pub(crate) fn apply(&mut self, revision: i64, events: &[KeyEvent]) {
        for event in events {
            if event.value.is_some() {
                self.ids.insert(event.key.clone());
            } else {
                self.ids.remove(&event.key);
            }
            self.notify(&event.key, event.mod_revision);
        }
        self.revision = self.revision.max(revision);
        let (ready, waiting) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|waiting| waiting.covered <= self.revision);
        self.waiting = waiting;
        for ready in ready {
            if ready.sender.send(self.ids.iter().cloned().collect()) {
                self.all.push(ready);
            }
        }
    }

    /// This store wrote at `revision` (its caller saw it succeed).
    fn wrote(&mut self, revision: i64) {
        self.written = self.written.max(revision);
    }

    fn notify(&mut self, runtime: &str, revision: i64) {
        if let Some(senders) = self.runtimes.get_mut(runtime) {
            senders.retain(|registered| registered.send(revision, ()));
            if senders.is_empty() {
                self.runtimes.remove(runtime);
            }
        }
        self.all
            .retain(|registered| registered.send(revision, vec![runtime.to_owned()]));
    }

    fn prune(&mut self) {
        self.runtimes.retain(|_, senders| {
            senders.retain(|registered| !registered.sender.is_closed());
            !senders.is_empty()
        });
        self.all.retain(|registered| !registered.sender.is_closed());
        self.waiting
            .retain(|registered| !registered.sender.is_closed());
    }

    /// A notify watcher of `runtime`.
    fn watch_one(&mut self, runtime: &str) -> QueueWatcher<()> {
        if self.closed {
            return closed_watcher(&format!("watching desired version of {runtime}"));
        }
        let (sender, watcher) = change_queue();
        // A read after this first change sees this store's writes so far.
        sender.send(());
        self.prune();
        let covered = self.written;
        self.runtimes
            .entry(runtime.to_owned())
            .or_default()
            .push(Registered { covered, sender });
        watcher
    }

    /// A strings watcher of every runtime.
    fn watch_all(&mut self) -> QueueWatcher<Vec<String>> {
        if self.closed {
            return closed_watcher("watching desired versions");
        }
        let (sender, watcher) = change_queue();
        self.prune();
        let covered = self.written;
        if covered > self.revision {
            // The snapshot would miss this store's own latest writes.
            self.waiting.push(Registered { covered, sender });
            return watcher;
        }
        // Under the lock the follower notifies under: every change after
        // this snapshot's revision reaches this watcher.
        sender.send(self.ids.iter().cloned().collect());
        self.all.push(Registered { covered, sender });
        watcher
    }

    /// Ends every watcher (cleanly) and refuses new ones.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.runtimes.clear();
        self.all.clear();
        self.waiting.clear();
    }
}

/// The desired-state follower's task.
pub(crate) async fn follow(shared: Arc<Shared>, follower: Follower) {
    let registry = shared.clone();
    follower
        .follow(move |revision, events| {
            lock(&registry.desired).apply(revision, &events);
            true
        })
        .await;
}

fn closed_watcher<C: steward_worker::Change>(operation: &str) -> QueueWatcher<C> {
    let (sender, watcher) = change_queue();
    let closed = steward_store::Error::from(Error::Closed {
        operation: operation.to_owned(),
    });
    sender.close(Err(steward_worker::Error::other(closed)));
    watcher
}

fn version(kv: &KeyValue, operation: &str) -> Result<String, Error> {
    match kv.value_str() {
        Ok(version) => Ok(version.to_owned()),
        Err(_) => Err(Error::InvalidValue {
            operation: operation.to_owned(),
            key: String::from_utf8_lossy(kv.key()).into_owned(),
        }),
    }
}

impl EtcdStore {
    async fn get_desired(&self, runtime: &str) -> Result<Option<String>, Error> {
        let shared = self.shared();
        let key = shared.keys.desired(runtime);
        let operation = format!("reading desired version of {runtime}");
        let response = shared
            .request(
                || operation.clone(),
                |mut client| async move { client.get(key, None).await },
            )
            .await?;
        response
            .kvs()
            .first()
            .map(|kv| version(kv, &operation))
            .transpose()
    }

    async fn all_desired(&self) -> Result<BTreeMap<String, String>, Error> {
        let shared = self.shared();
        let prefix = shared.keys.desired_dir();
        let key = prefix.clone();
        let operation = "reading desired versions".to_owned();
        let response =
            shared
                .request(
                    || operation.clone(),
                    |mut client| async move {
                        client.get(key, Some(GetOptions::new().with_prefix())).await
                    },
                )
                .await?;
        let mut versions = BTreeMap::new();
        for kv in response.kvs() {
            if let Some(runtime) = Keys::strip(kv.key(), &prefix) {
                versions.insert(runtime.to_owned(), version(kv, &operation)?);
            }
        }
        Ok(versions)
    }

    /// Runs a write transaction, and records its revision (read-your-writes
    /// for this store's watchers).
    async fn txn(&self, operation: &str, txn: Txn) -> Result<etcd_client::TxnResponse, Error> {
        let response = self
            .shared()
            .request(
                || operation.to_owned(),
                |mut client| async move { client.txn(txn).await },
            )
            .await?;
        if let Some(header) = response.header() {
            lock(&self.shared().desired).wrote(header.revision());
        }
        Ok(response)
    }

    async fn set_desired(&self, runtime: &str, new: &str) -> Result<Option<String>, Error> {
        let key = self.shared().keys.desired(runtime);
        let operation = format!("writing desired version of {runtime}");
        // Unchanged: nothing written, nobody woken. Else put, returning
        // the previous value — one transaction.
        let txn = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, new)])
            .or_else([TxnOp::put(
                key,
                new,
                Some(PutOptions::new().with_prev_key()),
            )]);
        let response = self.txn(&operation, txn).await?;
        if response.succeeded() {
            return Ok(Some(new.to_owned()));
        }
        for op in response.op_responses() {
            if let TxnOpResponse::Put(put) = op {
                return put.prev_key().map(|kv| version(kv, &operation)).transpose();
            }
        }
        Err(Error::Rejected {
            operation,
            reason: "etcd's answer to the transaction has no put".to_owned(),
        })
    }

    async fn compare_and_set_desired(
        &self,
        runtime: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<bool, Error> {
        let key = self.shared().keys.desired(runtime);
        let operation = format!("compare-and-set of desired version of {runtime}");
        let compare = match expected {
            // Already the value asked for: true if it is there, no write.
            Some(expected) if expected == new => {
                return Ok(self.get_desired(runtime).await?.as_deref() == Some(new));
            }
            Some(expected) => Compare::value(key.clone(), CompareOp::Equal, expected),
            // No version set: the key was never created (or was deleted).
            None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key, new, None)]);
        Ok(self.txn(&operation, txn).await?.succeeded())
    }

    async fn create_desired(&self, runtime: &str, new: &str) -> Result<Option<String>, Error> {
        let key = self.shared().keys.desired(runtime);
        let operation = format!("creating desired version of {runtime}");
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), new, None)])
            .or_else([TxnOp::get(key, None)]);
        let response = self.txn(&operation, txn).await?;
        if response.succeeded() {
            return Ok(None);
        }
        for op in response.op_responses() {
            if let TxnOpResponse::Get(get) = op
                && let Some(kv) = get.kvs().first()
            {
                return version(kv, &operation).map(Some);
            }
        }
        Err(Error::Rejected {
            operation,
            reason: "etcd's answer to the transaction has no value".to_owned(),
        })
    }

    async fn clear_desired(&self, runtime: &str) -> Result<(), Error> {
        let shared = self.shared();
        let key = shared.keys.desired(runtime);
        let response = shared
            .request(
                || format!("clearing desired version of {runtime}"),
                |mut client| async move { client.delete(key, None).await },
            )
            .await?;
        if let Some(header) = response.header() {
            lock(&shared.desired).wrote(header.revision());
        }
        Ok(())
    }
}

/// Desired versions as etcd keys `<prefix>desired/<runtime>`; writes are
/// transactions, so compare-and-set and create-if-absent hold across every
/// agent of the fleet. Errors: an unreachable etcd is
/// [`steward_store::Error::Unavailable`].
impl DesiredState for EtcdStore {
    fn desired_version<'a>(
        &'a self,
        runtime: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, steward_store::Error>> {
        Box::pin(async move { Ok(self.get_desired(runtime).await?) })
    }

    fn desired_versions(
        &self,
    ) -> BoxFuture<'_, Result<BTreeMap<String, String>, steward_store::Error>> {
        Box::pin(async move { Ok(self.all_desired().await?) })
    }

    fn set_desired_version<'a>(
        &'a self,
        runtime: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, steward_store::Error>> {
        Box::pin(async move { Ok(self.set_desired(runtime, version).await?) })
    }

    fn compare_and_set_desired_version<'a>(
        &'a self,
        runtime: &'a str,
        expected: Option<&'a str>,
        version: &'a str,
    ) -> BoxFuture<'a, Result<bool, steward_store::Error>> {
        Box::pin(async move {
            Ok(self
                .compare_and_set_desired(runtime, expected, version)
                .await?)
        })
    }

    fn create_desired_version<'a>(
        &'a self,
        runtime: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, steward_store::Error>> {
        Box::pin(async move { Ok(self.create_desired(runtime, version).await?) })
    }

    fn clear_desired_version<'a>(
        &'a self,
        runtime: &'a str,
    ) -> BoxFuture<'a, Result<(), steward_store::Error>> {
        Box::pin(async move { Ok(self.clear_desired(runtime).await?) })
    }

    fn watch_desired_version(&self, runtime: &str) -> QueueWatcher<()> {
        lock(&self.shared().desired).watch_one(runtime)
    }

    fn watch_desired_versions(&self) -> QueueWatcher<Vec<String>> {
        lock(&self.shared().desired).watch_all()
    }
}

#[cfg(test)]
mod tests {
    use steward_worker::Watcher;

    use super::*;

    fn put(runtime: &str, revision: i64) -> KeyEvent {
        KeyEvent {
            key: runtime.to_owned(),
            value: Some(b"1.0.0".to_vec()),
            create_revision: revision,
            mod_revision: revision,
        }
    }

    fn pending<W: Watcher>(watcher: &mut W) -> Option<W::Change> {
        let mut change = std::pin::pin!(watcher.next_change());
        match change
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        {
            std::task::Poll::Ready(change) => Some(change.unwrap()),
            std::task::Poll::Pending => None,
        }
    }

    /// The conformance case `unchanged_values_notify_nobody` failed now and
    /// then on etcd: a watcher made right after this store's own write,
    /// before the follower had delivered it, listed no runtime first and
    /// then woke for the write it had already covered.
    #[test]
    fn watchers_made_before_the_follower_sees_an_own_write_cover_it() {
        let mut registry = DesiredRegistry::default();
        registry.apply(4, &[]);
        registry.wrote(5); // set echo, seen to succeed; not delivered yet
        let mut one = registry.watch_one("echo");
        let mut all = registry.watch_all();
        assert_eq!(pending(&mut one), Some(()));
        assert_eq!(pending(&mut all), None, "a first change without echo");

        registry.apply(5, &[put("echo", 5)]);
        assert_eq!(pending(&mut all), Some(vec!["echo".to_owned()]));
        assert_eq!(pending(&mut one), None, "woken for a covered write");

        registry.apply(6, &[put("echo", 6)]);
        assert_eq!(pending(&mut one), Some(()));
        assert_eq!(pending(&mut all), Some(vec!["echo".to_owned()]));
    }
}
