//! Records: the agent's own small state beside desired state and host
//! storage — what its hooks and relations have done (operation steps,
//! unit state, relation membership), as opaque bytes under a (kind, key).
//!
//! What makes them more than a key-value table is [`Store::commit_records`]:
//! several writes in **one** durable transaction, so that a hook's
//! completion, its changes and any relation state it moved are committed
//! together or not at all (juju wrote one file per member, without a
//! directory fsync). This module must never interpret the bytes.

use redb::{ReadableDatabase, ReadableTable};

use crate::store::{Outcome, RECORDS};
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
    pub async fn commit_records(&self, writes: Vec<RecordWrite>) -> Result<(), Error> {
        let count = writes.len();
        self.run(
            || format!("committing {count} record writes"),
            move |inner| -> Outcome<()> {
                let txn = inner.db()?.begin_write()?;
                let mut changed = false;
                {
                    let mut table = txn.open_table(RECORDS)?;
                    for write in &writes {
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
            },
        )
        .await
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
}
