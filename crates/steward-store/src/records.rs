//! Records: the agent's own small state beside desired state and host
//! storage — what its hooks and relations have done (operation steps,
//! unit state, relation membership), as opaque bytes under a (kind, key).
//!
//! What makes them more than a key-value table is [`Store::commit_records`]:
//! several writes in **one** durable transaction, so that a hook's
//! completion, its changes and any relation state it moved are committed
//! together or not at all (juju wrote one file per member, without a
//! directory fsync).
//!
//! Batches are **group-committed**: batches that arrive while a commit is
//! being made wait for it to end, then go into the next transaction
//! together, so that a hundred hook drivers finishing at once pay for a
//! few fsyncs rather than a hundred in a row. Each batch stays whole (all
//! its writes in one transaction), batches apply in the order they came,
//! and none is acknowledged before it is durable. This module must never
//! interpret the bytes.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::{ReadableDatabase, ReadableTable};
use tokio::sync::oneshot;

use crate::store::{Inner, Outcome, RECORDS};
use crate::{Error, Store};

/// One write of a [`Store::commit_records`] batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordWrite {
    /// The kind of record (a namespace, e.g. `hooks`).
    pub kind: String,
    /// The record's key within its kind.
    pub key: String,
    /// The new value; `None` deletes the record.
    pub value: Option<Vec<u8>>,
}

impl RecordWrite {
    /// Sets `kind`/`key` to `value`.
    pub fn set(kind: impl Into<String>, key: impl Into<String>, value: Vec<u8>) -> Self {
        Self {
            kind: kind.into(),
            key: key.into(),
            value: Some(value),
        }
    }

    /// Deletes `kind`/`key`.
    pub fn delete(kind: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            key: key.into(),
            value: None,
        }
    }
}

impl Store {
    /// The record `kind`/`key`, if any.
    pub async fn record(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let (k, key_owned) = (kind.to_owned(), key.to_owned());
        self.run(
            || format!("reading record {kind}/{key}"),
            move |inner| {
                let txn = inner.db()?.begin_read()?;
                let table = txn.open_table(RECORDS)?;
                Ok(table
                    .get((k.as_str(), key_owned.as_str()))?
                    .map(|v| v.value().to_vec()))
            },
        )
        .await
    }

    /// Every record of `kind`, sorted by key.
    pub async fn records(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let k = kind.to_owned();
        self.run(
            || format!("listing records of kind {kind}"),
            move |inner| {
                let txn = inner.db()?.begin_read()?;
                let table = txn.open_table(RECORDS)?;
                let mut found = Vec::new();
                // The keys of one kind are contiguous from (kind, "").
                for entry in table.range((k.as_str(), "")..)? {
                    let (entry_key, value) = entry?;
                    let (entry_kind, key) = entry_key.value();
                    if entry_kind != k {
                        break;
                    }
                    found.push((key.to_owned(), value.value().to_vec()));
                }
                Ok(found)
            },
        )
        .await
    }

    /// Applies `writes` in one durable transaction: after it returns `Ok`
    /// all of them survive a crash, and a crash before leaves none of them.
    /// A batch that changes nothing commits nothing (and costs no `fsync`).
    /// Batches of concurrent callers may share a transaction (see the
    /// module docs); a failed transaction fails every batch in it.
    pub async fn commit_records(&self, writes: Vec<RecordWrite>) -> Result<(), Error> {
        let operation = || format!("committing {} record writes", writes.len());
        let operation = operation();
        let (done, answer) = oneshot::channel();
        let lead = {
            let mut queue = lock(&self.inner.commits);
            queue.pending.push(Pending { writes, done });
            !std::mem::replace(&mut queue.committing, true)
        };
        if lead {
            let inner = self.inner.clone();
            // Not awaited: whoever comes next is answered by this task too,
            // and a caller that gives up must not stop it.
            tokio::task::spawn_blocking(move || commit_queued(inner));
        }
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failed)) => Err(failed.into_error(operation)),
            Err(_) => Err(Error::Database {
                operation,
                reason: "the store's commit task failed".to_owned(),
            }),
        }
    }
}

/// The batches waiting for the next group commit, in the order they came.
#[derive(Debug, Default)]
pub(crate) struct CommitQueue {
    pending: Vec<Pending>,
    /// A blocking task is committing, and takes what is pending when done.
    committing: bool,
    /// How many group transactions were made (for tests and curiosity).
    groups: u64,
}

#[derive(Debug)]
struct Pending {
    writes: Vec<RecordWrite>,
    done: oneshot::Sender<Result<(), Failed>>,
}

/// Why a group commit failed, for each of its batches.
#[derive(Debug, Clone)]
struct Failed {
    reason: String,
    unusable: bool,
}

impl Failed {
    fn into_error(self, operation: String) -> Error {
        match self.unusable {
            true => Error::Unusable {
                operation,
                reason: self.reason,
            },
            false => Error::Database {
                operation,
                reason: self.reason,
            },
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Commits what is queued, a group at a time, until nothing is. Blocking.
///
/// The task lets go of the database before it answers the last group: a
/// caller that drops its store once answered finds the file closed and
/// unlocked, as with any other operation.
fn commit_queued(inner: Arc<Inner>) {
    /// If a commit panics, the batches it held are answered (their
    /// senders dropped: "the commit task failed") and the next caller
    /// starts a new task, rather than everyone waiting forever.
    struct Reset(Arc<Inner>);
    impl Drop for Reset {
        fn drop(&mut self) {
            lock(&self.0.commits).committing = false;
        }
    }
    let reset = Reset(inner);
    let inner = &reset.0;
    loop {
        let group = {
            let mut queue = lock(&inner.commits);
            queue.groups += 1;
            std::mem::take(&mut queue.pending)
        };
        let outcome = commit_group(inner, &group).map_err(|failure| {
            inner.note_failure(&failure);
            Failed {
                reason: failure.error.to_string(),
                unusable: failure.unusable,
            }
        });
        let last = {
            let mut queue = lock(&inner.commits);
            let last = queue.pending.is_empty();
            if last {
                queue.committing = false;
            }
            last
        };
        if last {
            drop(reset);
            for pending in group {
                let _ = pending.done.send(outcome.clone());
            }
            return;
        }
        for pending in group {
            let _ = pending.done.send(outcome.clone());
        }
    }
}

/// Applies every batch of `group`, in order, in one transaction.
fn commit_group(inner: &Inner, group: &[Pending]) -> Outcome<()> {
    let txn = inner.db()?.begin_write()?;
    let mut changed = false;
    {
        let mut table = txn.open_table(RECORDS)?;
        for write in group.iter().flat_map(|pending| &pending.writes) {
            let key = (write.kind.as_str(), write.key.as_str());
            changed |= match &write.value {
                Some(value) => {
                    let same = table
                        .get(key)?
                        .is_some_and(|old| old.value() == value.as_slice());
                    if !same {
                        table.insert(key, value.as_slice())?;
                    }
                    !same
                }
                None => table.remove(key)?.is_some(),
            };
        }
    }
    if changed {
        inner.commit(txn, None)
    } else {
        Ok(txn.abort()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_are_kept_by_kind_and_key_and_committed_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.record("hooks", "echo").await.unwrap(), None);
        store
            .commit_records(vec![
                RecordWrite::set("hooks", "echo", b"one".to_vec()),
                RecordWrite::set("hooks", "kv", b"two".to_vec()),
                RecordWrite::set("hooksx", "a", b"other kind".to_vec()),
                RecordWrite::set("relation", "echo:0", b"three".to_vec()),
            ])
            .await
            .unwrap();
        assert_eq!(
            store.records("hooks").await.unwrap(),
            [
                ("echo".to_owned(), b"one".to_vec()),
                ("kv".to_owned(), b"two".to_vec())
            ]
        );
        store
            .commit_records(vec![
                RecordWrite::delete("hooks", "kv"),
                RecordWrite::set("relation", "echo:0", b"four".to_vec()),
                RecordWrite::delete("hooks", "never-there"),
            ])
            .await
            .unwrap();
        drop(store);
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.record("hooks", "kv").await.unwrap(), None);
        assert_eq!(
            store.record("relation", "echo:0").await.unwrap().as_deref(),
            Some(&b"four"[..])
        );
        assert_eq!(store.records("hooksx").await.unwrap().len(), 1);
        assert!(store.records("nothing").await.unwrap().is_empty());
    }

    /// Batches that arrive while a commit is made go into the next
    /// transaction together: here the first commit is held up (the test
    /// holds redb's write lock) while 63 more batches arrive, and all 64
    /// are committed in two transactions, each batch whole and durable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_batches_are_group_committed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = Store::open(&path).await.unwrap();
        let held = match store.inner.db() {
            Ok(db) => db.begin_write().unwrap(),
            Err(_) => panic!("the store is open"),
        };
        let batch = |i: usize| {
            vec![
                RecordWrite::set("a", format!("{i:02}"), vec![1]),
                RecordWrite::set("b", format!("{i:02}"), vec![2]),
            ]
        };
        let first = tokio::spawn({
            let store = store.clone();
            async move { store.commit_records(batch(0)).await }
        });
        // The first batch was taken into a group, whose task waits for the
        // write lock.
        let queue = |check: fn(&CommitQueue) -> bool| {
            let store = store.clone();
            async move {
                let waiting = async {
                    while !check(&lock(&store.inner.commits)) {
                        tokio::task::yield_now().await;
                    }
                };
                tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
                    .await
                    .expect("the commit queue got there");
            }
        };
        queue(|queue| queue.groups == 1).await;
        let rest: Vec<_> = (1..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.commit_records(batch(i)).await })
            })
            .collect();
        queue(|queue| queue.pending.len() == 63).await;
        held.abort().unwrap();
        first.await.unwrap().unwrap();
        for task in rest {
            task.await.unwrap().unwrap();
        }
        assert_eq!(lock(&store.inner.commits).groups, 2);
        drop(store);
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.records("a").await.unwrap().len(), 64);
        assert_eq!(store.records("b").await.unwrap().len(), 64);
    }

    /// A closed database fails every batch waiting, with the reason, and
    /// the next commit after it is reopened works (nothing stays stuck).
    #[tokio::test]
    async fn a_failed_group_fails_each_batch_and_nothing_stays_stuck() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store.redb")).await.unwrap();
        *store.inner.db.write().unwrap() = None;
        let error = store
            .commit_records(vec![RecordWrite::set("a", "k", vec![1])])
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Unusable { .. }), "{error:?}");
        assert!(
            error.to_string().contains("committing 1 record writes"),
            "{error}"
        );
        store.reopen().await.unwrap();
        store
            .commit_records(vec![RecordWrite::set("a", "k", vec![1])])
            .await
            .unwrap();
        assert_eq!(store.record("a", "k").await.unwrap(), Some(vec![1]));
    }
}
