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
//! consistent with what follows. This module must never wait on etcd while
//! holding the registry lock.

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

/// The live desired-state watchers, and the runtime ids they describe.
#[derive(Default)]
pub(crate) struct DesiredRegistry {
    /// Runtimes with a desired version, as of the last delivered revision.
    ids: BTreeSet<String>,
    runtimes: HashMap<String, Vec<ChangeSender<()>>>,
    all: Vec<ChangeSender<Vec<String>>>,
    closed: bool,
}

impl DesiredRegistry {
    /// Applies a batch of changes and notifies, event by event.
    pub(crate) fn apply(&mut self, events: &[KeyEvent]) {
        for event in events {
            if event.value.is_some() {
                self.ids.insert(event.key.clone());
            } else {
                self.ids.remove(&event.key);
            }
            self.notify(&event.key);
        }
    }

    fn notify(&mut self, runtime: &str) {
        if let Some(senders) = self.runtimes.get_mut(runtime) {
            senders.retain(|sender| sender.send(()));
            if senders.is_empty() {
                self.runtimes.remove(runtime);
            }
        }
        self.all
            .retain(|sender| sender.send(vec![runtime.to_owned()]));
    }

    fn prune(&mut self) {
        self.runtimes.retain(|_, senders| {
            senders.retain(|sender| !sender.is_closed());
            !senders.is_empty()
        });
        self.all.retain(|sender| !sender.is_closed());
    }

    /// Ends every watcher (cleanly) and refuses new ones.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.runtimes.clear();
        self.all.clear();
    }
}

/// The desired-state follower's task.
pub(crate) async fn follow(shared: Arc<Shared>, follower: Follower) {
    let registry = shared.clone();
    follower
        .follow(move |_, events| {
            lock(&registry.desired).apply(&events);
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

    async fn txn(&self, operation: &str, txn: Txn) -> Result<etcd_client::TxnResponse, Error> {
        self.shared()
            .request(
                || operation.to_owned(),
                |mut client| async move { client.txn(txn).await },
            )
            .await
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
        shared
            .request(
                || format!("clearing desired version of {runtime}"),
                |mut client| async move { client.delete(key, None).await },
            )
            .await?;
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
        let mut registry = lock(&self.shared().desired);
        if registry.closed {
            return closed_watcher(&format!("watching desired version of {runtime}"));
        }
        let (sender, watcher) = change_queue();
        sender.send(());
        registry.prune();
        registry
            .runtimes
            .entry(runtime.to_owned())
            .or_default()
            .push(sender);
        watcher
    }

    fn watch_desired_versions(&self) -> QueueWatcher<Vec<String>> {
        let mut registry = lock(&self.shared().desired);
        if registry.closed {
            return closed_watcher("watching desired versions");
        }
        let (sender, watcher) = change_queue();
        // Under the lock the follower notifies under: every change after
        // this snapshot's revision reaches this watcher.
        sender.send(registry.ids.iter().cloned().collect());
        registry.prune();
        registry.all.push(sender);
        watcher
    }
}
