//! The redb-backed [`Store`]: tables, blocking operations run on tokio's
//! blocking pool, and the watcher registry notified after each commit.
//!
//! Ordering rule: a write notifies watchers only after its commit returned,
//! and from the blocking task itself, so a cancelled caller never loses a
//! notification and a watcher that takes a change always reads the new
//! value. This module must never hold the watcher lock while waiting for
//! redb's write lock, nor call a watcher's consumer.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::SystemTime;

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, StorageError, TableDefinition,
    WriteTransaction,
};
use steward_worker::{ChangeSender, QueueWatcher, change_queue};

use crate::Error;

/// Runtime id → the version it should run.
const DESIRED_VERSIONS: TableDefinition<&str, &str> = TableDefinition::new("desired_versions");

/// (namespace, key) → opaque bytes. Tuples compare element by element, so
/// the keys of one namespace are contiguous and namespace `a` sorts wholly
/// before namespace `ab`: a prefix listing is one range scan.
const HOST_STORAGE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("host_storage");

/// (kind, key) → opaque bytes: the agent's own records (see `records.rs`).
pub(crate) const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("records");

/// The embedded store: desired state and host storage in one redb file.
///
/// Cheap to clone (an `Arc`); all clones share one open database. The file
/// is closed, and its lock released, when the last clone is dropped; the
/// watchers then end cleanly (their next change is
/// [`steward_worker::Error::WatcherStopped`]).
///
/// All `async` methods run redb on tokio's blocking pool; a write resolves
/// only once it is durable. See the [crate docs](crate) for the guarantees.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    path: PathBuf,
    /// `None` only while a reopen failed.
    pub(crate) db: RwLock<Option<Database>>,
    /// Since when, and why, the database refuses writes.
    failed: Mutex<Option<Failed>>,
    watchers: Mutex<Watchers>,
    /// The record batches waiting for the next group commit.
    pub(crate) commits: Mutex<crate::records::CommitQueue>,
}

/// The live watchers, pruned of killed ones whenever a watcher is added or
/// notified.
#[derive(Default)]
struct Watchers {
    /// Notify watchers of one runtime's desired version, by runtime id.
    runtimes: HashMap<String, Vec<ChangeSender<()>>>,
    /// Strings watchers of all desired versions.
    all: Vec<ChangeSender<Vec<String>>>,
}

impl Watchers {
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
}

/// A failed blocking operation: redb's error, and whether it left the
/// database refusing writes (a failed commit, or an earlier one).
pub(crate) struct Failure {
    pub(crate) error: redb::Error,
    pub(crate) unusable: bool,
}

impl<E: Into<redb::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        let error = error.into();
        let unusable = matches!(error, redb::Error::PreviousIo);
        Self { error, unusable }
    }
}

impl Failure {
    fn into_error(self, operation: String) -> Error {
        let reason = self.error.to_string();
        if self.unusable {
            Error::Unusable { operation, reason }
        } else {
            Error::Database { operation, reason }
        }
    }
}

pub(crate) type Outcome<T> = Result<T, Failure>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens (creating if need be) the database at `path` and its tables.
fn open_database(path: &Path) -> Result<Database, Error> {
    let path = path.to_path_buf();
    // The store is small (versions and runtimes' settings), so checking
    // every page on open is cheap, and it turns a file damaged outside
    // redb into `Corrupted` instead of a possible panic on a later read.
    let db = match Database::builder()
        .set_check_integrity_on_open(true)
        .create(&path)
    {
        Ok(db) => db,
        Err(DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch) => {
            return Err(Error::Locked { path });
        }
        Err(DatabaseError::Storage(StorageError::Corrupted(reason))) => {
            return Err(Error::Corrupted { path, reason });
        }
        // How redb reports a file that is not a redb database at all.
        Err(DatabaseError::Storage(StorageError::Io(error)))
            if error.kind() == io::ErrorKind::InvalidData =>
        {
            let reason = error.to_string();
            return Err(Error::Corrupted { path, reason });
        }
        Err(error) => {
            let reason = error.to_string();
            return Err(Error::Open { path, reason });
        }
    };

    // Create the tables up front, so reads on a fresh file find them.
    let create = || -> Outcome<()> {
        let txn = db.begin_write()?;
        txn.open_table(DESIRED_VERSIONS)?;
        txn.open_table(HOST_STORAGE)?;
        txn.open_table(RECORDS)?;
        txn.commit()?;
        Ok(())
    };
    if let Err(failure) = create() {
        let reason = format!("creating its tables: {}", failure.error);
        return Err(Error::Open { path, reason });
    }
    Ok(db)
}

/// A new database file is the agent's private state (mode 0600), and its
/// directory entry must survive a power loss before the first write is
/// acknowledged: the directory is fsynced.
fn make_private_and_durable(path: &Path, directory: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |what: &str, error: io::Error| Error::Open {
        path: path.to_path_buf(),
        reason: format!("{what}: {error}"),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| failed("making it private (mode 0600)", error))?;
    std::fs::File::open(directory)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| failed("syncing its directory", error))
}

/// A read guard on the open database.
pub(crate) struct DbGuard<'a>(RwLockReadGuard<'a, Option<Database>>);

impl std::ops::Deref for DbGuard<'_> {
    type Target = Database;

    fn deref(&self) -> &Database {
        match &*self.0 {
            Some(db) => db,
            // `Inner::db` hands out a guard only when there is a database.
            None => unreachable!("a DbGuard always holds a database"),
        }
    }
}

/// Whether a [`Store`] accepts writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    /// It does.
    Ok,
    /// It refuses writes (and possibly reads) until it is reopened.
    Unusable {
        /// When the first failure was seen.
        since: SystemTime,
        /// The failure.
        reason: String,
    },
}

/// Since when, and why, the database refuses writes.
#[derive(Debug, Clone)]
struct Failed {
    since: SystemTime,
    reason: String,
}

impl Inner {
    /// Opens or creates the file and its tables. Blocking.
    fn open(path: PathBuf) -> Result<Inner, Error> {
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match std::fs::metadata(&directory) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NoDirectory { path, directory });
            }
            Ok(metadata) if !metadata.is_dir() => {
                let reason = format!("{} is not a directory", directory.display());
                return Err(Error::Open { path, reason });
            }
            // Other errors (permissions) are reported by the open itself.
            _ => {}
        }

        let created = !path.exists();
        let db = open_database(&path)?;
        if created {
            make_private_and_durable(&path, &directory)?;
        }

        Ok(Inner {
            path,
            db: RwLock::new(Some(db)),
            failed: Mutex::new(None),
            watchers: Mutex::new(Watchers::default()),
            commits: Mutex::new(crate::records::CommitQueue::default()),
        })
    }

    /// The open database, or the failure that left none (a reopen that
    /// failed).
    pub(crate) fn db(&self) -> Outcome<DbGuard<'_>> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            let reason = lock(&self.failed).as_ref().map_or_else(
                || "the database is closed".to_owned(),
                |failed| failed.reason.clone(),
            );
            return Err(Failure {
                error: redb::Error::Io(io::Error::other(reason)),
                unusable: true,
            });
        }
        Ok(DbGuard(guard))
    }

    /// Notes that the database refuses writes, for [`Store::health`].
    pub(crate) fn note_failure(&self, failure: &Failure) {
        if failure.unusable {
            let mut failed = lock(&self.failed);
            if failed.is_none() {
                *failed = Some(Failed {
                    since: SystemTime::now(),
                    reason: failure.error.to_string(),
                });
            }
        }
    }

    /// Commits `txn` durably, then notifies the watchers of `changed`.
    pub(crate) fn commit(&self, txn: WriteTransaction, changed: Option<&str>) -> Outcome<()> {
        let result = txn.commit();
        // Notified even when the commit failed: redb cannot tell whether
        // the change became durable, and a spurious change is harmless
        // where a missed one is not.
        if let Some(runtime) = changed {
            lock(&self.watchers).notify(runtime);
        }
        result.map_err(|error| Failure {
            error: error.into(),
            unusable: true,
        })
    }

    fn desired_ids(&self) -> Outcome<Vec<String>> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(DESIRED_VERSIONS)?;
        let mut ids = Vec::new();
        for entry in table.iter()? {
            let (runtime, _) = entry?;
            ids.push(runtime.value().to_owned());
        }
        Ok(ids)
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database file at `path`, creating it (and its tables) if
    /// missing. Its directory must exist ([`Error::NoDirectory`] otherwise);
    /// a file another process (or another `Store`) has open is
    /// [`Error::Locked`]. After a crash the open first repairs the file,
    /// which for a store this small takes milliseconds.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Store, Error> {
        let path = path.into();
        let task_path = path.clone();
        match tokio::task::spawn_blocking(move || Inner::open(task_path)).await {
            Ok(inner) => Ok(Store {
                inner: Arc::new(inner?),
            }),
            Err(error) => Err(Error::Open {
                path,
                reason: format!("the open task failed: {error}"),
            }),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether the store accepts writes. After a failed commit (a full
    /// disk, an I/O error) redb refuses every later write until the
    /// database is reopened ([`reopen`](Self::reopen)).
    pub fn health(&self) -> StoreHealth {
        match &*lock(&self.inner.failed) {
            None => StoreHealth::Ok,
            Some(failed) => StoreHealth::Unusable {
                since: failed.since,
                reason: failed.reason.clone(),
            },
        }
    }

    /// Reopens the database of a store that refuses writes (see
    /// [`health`](Self::health)): what was committed before the failure is
    /// there again, and writes are accepted once more. Fails, and the store
    /// stays unusable, while the cause lasts (the disk is still full);
    /// callers retry with backoff. Operations in progress finish first.
    pub async fn reopen(&self) -> Result<(), Error> {
        let inner = self.inner.clone();
        let path = self.inner.path.clone();
        let reopened = tokio::task::spawn_blocking(move || {
            let mut db = inner.db.write().unwrap_or_else(PoisonError::into_inner);
            // The old database must go first: it holds the file's lock.
            drop(db.take());
            match open_database(&inner.path) {
                Ok(new) => {
                    *db = Some(new);
                    *lock(&inner.failed) = None;
                    Ok(())
                }
                Err(error) => {
                    let mut failed = lock(&inner.failed);
                    let since = failed.as_ref().map_or_else(SystemTime::now, |f| f.since);
                    *failed = Some(Failed {
                        since,
                        reason: format!("reopening failed: {error}"),
                    });
                    Err(error)
                }
            }
        })
        .await;
        match reopened {
            Ok(result) => result,
            Err(error) => Err(Error::Open {
                path,
                reason: format!("the reopen task failed: {error}"),
            }),
        }
    }

    /// Runs `task` on the blocking pool; `operation` names it in errors.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        operation: impl FnOnce() -> String,
        task: impl FnOnce(&Inner) -> Outcome<T> + Send + 'static,
    ) -> Result<T, Error> {
        let inner = self.inner.clone();
        let task_inner = inner.clone();
        match tokio::task::spawn_blocking(move || task(&task_inner)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(failure)) => {
                inner.note_failure(&failure);
                Err(failure.into_error(operation()))
            }
            Err(error) => Err(Error::Database {
                operation: operation(),
                reason: format!("the store task failed: {error}"),
            }),
        }
    }

    // ---- desired state ----

    /// The version `runtime` should run, if one is set.
    pub async fn desired_version(&self, runtime: &str) -> Result<Option<String>, Error> {
        let id = runtime.to_owned();
        self.run(
            || format!("reading desired version of {runtime}"),
            move |inner| {
                let txn = inner.db()?.begin_read()?;
                let table = txn.open_table(DESIRED_VERSIONS)?;
                Ok(table.get(id.as_str())?.map(|v| v.value().to_owned()))
            },
        )
        .await
    }

    /// Every runtime's desired version, by runtime id.
    pub async fn desired_versions(&self) -> Result<BTreeMap<String, String>, Error> {
        self.run(
            || "reading desired versions".to_owned(),
            |inner| {
                let txn = inner.db()?.begin_read()?;
                let table = txn.open_table(DESIRED_VERSIONS)?;
                let mut versions = BTreeMap::new();
                for entry in table.iter()? {
                    let (runtime, version) = entry?;
                    versions.insert(runtime.value().to_owned(), version.value().to_owned());
                }
                Ok(versions)
            },
        )
        .await
    }

    /// Sets the version `runtime` should run and returns the previous one.
    ///
    /// Durable before it returns (redb `Durability::Immediate`): an
    /// acknowledged write survives `SIGKILL` and power loss. Watchers are
    /// notified only when the value changed; setting the current value
    /// commits nothing.
    pub async fn set_desired_version(
        &self,
        runtime: &str,
        version: &str,
    ) -> Result<Option<String>, Error> {
        let (id, version) = (runtime.to_owned(), version.to_owned());
        self.run(
            || format!("writing desired version of {runtime}"),
            move |inner| {
                let txn = inner.db()?.begin_write()?;
                let previous = {
                    let mut table = txn.open_table(DESIRED_VERSIONS)?;
                    let previous = table.get(id.as_str())?.map(|v| v.value().to_owned());
                    if previous.as_deref() == Some(version.as_str()) {
                        None
                    } else {
                        table.insert(id.as_str(), version.as_str())?;
                        Some(previous)
                    }
                };
                match previous {
                    // Unchanged: nothing to commit, nobody to wake.
                    None => {
                        txn.abort()?;
                        Ok(Some(version))
                    }
                    Some(previous) => {
                        inner.commit(txn, Some(&id))?;
                        Ok(previous)
                    }
                }
            },
        )
        .await
    }

    /// Sets `runtime`'s version to `version` only if its current value is
    /// `expected` (`None`: no version set), atomically in one write
    /// transaction. Returns whether the value now is `version` because of
    /// this call (true also when `expected` was already `version`).
    /// Durable and notifying like
    /// [`set_desired_version`](Store::set_desired_version).
    pub async fn compare_and_set_desired_version(
        &self,
        runtime: &str,
        expected: Option<&str>,
        version: &str,
    ) -> Result<bool, Error> {
        let (id, version) = (runtime.to_owned(), version.to_owned());
        let expected = expected.map(str::to_owned);
        self.run(
            || format!("compare-and-set of desired version of {runtime}"),
            move |inner| {
                let txn = inner.db()?.begin_write()?;
                let write = {
                    let mut table = txn.open_table(DESIRED_VERSIONS)?;
                    let current = table.get(id.as_str())?.map(|v| v.value().to_owned());
                    if current != expected {
                        Some(false)
                    } else if current.as_deref() == Some(version.as_str()) {
                        Some(true)
                    } else {
                        table.insert(id.as_str(), version.as_str())?;
                        None
                    }
                };
                match write {
                    Some(set) => {
                        txn.abort()?;
                        Ok(set)
                    }
                    None => {
                        inner.commit(txn, Some(&id))?;
                        Ok(true)
                    }
                }
            },
        )
        .await
    }

    /// Sets `runtime`'s version to `version` only if it has none, in one
    /// write transaction: how a config's `active` version seeds desired
    /// state without overwriting one already chosen. Returns `None` when
    /// this call set it, else the version that was there (left unchanged).
    /// Durable and notifying like
    /// [`set_desired_version`](Store::set_desired_version).
    pub async fn create_desired_version(
        &self,
        runtime: &str,
        version: &str,
    ) -> Result<Option<String>, Error> {
        let (id, version) = (runtime.to_owned(), version.to_owned());
        self.run(
            || format!("creating desired version of {runtime}"),
            move |inner| {
                let txn = inner.db()?.begin_write()?;
                let existing = {
                    let mut table = txn.open_table(DESIRED_VERSIONS)?;
                    let existing = table.get(id.as_str())?.map(|v| v.value().to_owned());
                    if existing.is_none() {
                        table.insert(id.as_str(), version.as_str())?;
                    }
                    existing
                };
                match existing {
                    Some(existing) => {
                        txn.abort()?;
                        Ok(Some(existing))
                    }
                    None => {
                        inner.commit(txn, Some(&id))?;
                        Ok(None)
                    }
                }
            },
        )
        .await
    }

    /// Removes `runtime`'s desired version (durably; notifying its watchers
    /// if one was set). Clearing an unset version is a no-op.
    pub async fn clear_desired_version(&self, runtime: &str) -> Result<(), Error> {
        let id = runtime.to_owned();
        self.run(
            || format!("clearing desired version of {runtime}"),
            move |inner| {
                let txn = inner.db()?.begin_write()?;
                let removed = txn
                    .open_table(DESIRED_VERSIONS)?
                    .remove(id.as_str())?
                    .is_some();
                if removed {
                    inner.commit(txn, Some(&id))?;
                } else {
                    txn.abort()?;
                }
                Ok(())
            },
        )
        .await
    }

    /// A notify watcher of `runtime`'s desired version. Its first change
    /// arrives at once (read the current state then); after that, one
    /// coalesced change per committed change of that runtime's value.
    /// Changes of other runtimes never wake it.
    pub fn watch_desired_version(&self, runtime: &str) -> QueueWatcher<()> {
        let (sender, watcher) = change_queue();
        sender.send(());
        let mut watchers = lock(&self.inner.watchers);
        watchers.prune();
        watchers
            .runtimes
            .entry(runtime.to_owned())
            .or_default()
            .push(sender);
        watcher
    }

    /// A strings watcher of the runtime ids whose desired version changed
    /// (set, changed or cleared). Its first change, at once, lists every
    /// runtime with a desired version, sorted (an empty batch if none).
    ///
    /// Reads that list inline (one small read transaction). If the read
    /// fails, the watcher ends with that error.
    pub fn watch_desired_versions(&self) -> QueueWatcher<Vec<String>> {
        let (sender, watcher) = change_queue();
        // The snapshot is read under the watcher lock, and writers notify
        // under it after their commit: a commit is either in the snapshot
        // or notified to this watcher (or both).
        let mut watchers = lock(&self.inner.watchers);
        match self.inner.desired_ids() {
            Ok(ids) => {
                sender.send(ids);
                watchers.prune();
                watchers.all.push(sender);
            }
            Err(failure) => {
                let error = failure.into_error("reading desired versions to watch".to_owned());
                sender.close(Err(steward_worker::Error::other(error)));
            }
        }
        watcher
    }

    // ---- host storage ----

    /// The value under `key` in `namespace`, if any.
    pub async fn storage_get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let (ns, k) = (namespace.to_owned(), key.to_owned());
        self.run(
            || format!("reading {namespace:?} key {key:?} from host storage"),
            move |inner| {
                let txn = inner.db()?.begin_read()?;
                let table = txn.open_table(HOST_STORAGE)?;
                Ok(table
                    .get((ns.as_str(), k.as_str()))?
                    .map(|v| v.value().to_vec()))
            },
        )
        .await
    }

    /// Stores `value` under `key` in `namespace`, durably.
    pub async fn storage_set(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        let (ns, k) = (namespace.to_owned(), key.to_owned());
        self.run(
            || format!("writing {namespace:?} key {key:?} to host storage"),
            move |inner| {
                let txn = inner.db()?.begin_write()?;
                txn.open_table(HOST_STORAGE)?
                    .insert((ns.as_str(), k.as_str()), value.as_slice())?;
                inner.commit(txn, None)
            },
        )
        .await
    }

    /// Deletes `key` from `namespace`, durably. A missing key is not an
    /// error.
    pub async fn storage_delete(&self, namespace: &str, key: &str) -> Result<(), Error> {
        let (ns, k) = (namespace.to_owned(), key.to_owned());
        self.run(
            || format!("deleting {namespace:?} key {key:?} from host storage"),
            move |inner| {
                let txn = inner.db()?.begin_write()?;
                let removed = txn
                    .open_table(HOST_STORAGE)?
                    .remove((ns.as_str(), k.as_str()))?
                    .is_some();
                if removed {
                    inner.commit(txn, None)
                } else {
                    Ok(txn.abort()?)
                }
            },
        )
        .await
    }

    /// The keys of `namespace` that start with `prefix`, sorted (byte
    /// order). Keys of other namespaces never appear, whatever their names.
    pub async fn storage_list(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, Error> {
        let (ns, prefix_owned) = (namespace.to_owned(), prefix.to_owned());
        self.run(
            || format!("listing {namespace:?} keys starting with {prefix:?} in host storage"),
            move |inner| {
                let txn = inner.db()?.begin_read()?;
                let table = txn.open_table(HOST_STORAGE)?;
                let mut keys = Vec::new();
                // Keys starting with `prefix` are contiguous and start at
                // (namespace, prefix): scan until the first one that is not.
                for entry in table.range((ns.as_str(), prefix_owned.as_str())..)? {
                    let (entry_key, _) = entry?;
                    let (entry_ns, key) = entry_key.value();
                    if entry_ns != ns || !key.starts_with(prefix_owned.as_str()) {
                        break;
                    }
                    keys.push(key.to_owned());
                }
                Ok(keys)
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store.redb")).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn listing_stops_at_the_namespace_and_prefix_boundaries() {
        let (_dir, store) = store().await;
        for (ns, key) in [
            ("a", "x"),
            ("a", "y1"),
            ("a", "y2"),
            ("a", "z"),
            ("ab", "y3"),
            ("", "y0"),
            ("b", ""),
        ] {
            store.storage_set(ns, key, Vec::new()).await.unwrap();
        }
        assert_eq!(store.storage_list("a", "y").await.unwrap(), ["y1", "y2"]);
        assert_eq!(
            store.storage_list("a", "").await.unwrap(),
            ["x", "y1", "y2", "z"]
        );
        assert_eq!(store.storage_list("ab", "").await.unwrap(), ["y3"]);
        assert_eq!(store.storage_list("", "").await.unwrap(), ["y0"]);
        assert_eq!(store.storage_list("b", "").await.unwrap(), [""]);
        assert!(store.storage_list("a", "zz").await.unwrap().is_empty());
        assert!(store.storage_list("c", "").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn killed_watchers_are_pruned_on_registration() {
        let (_dir, store) = store().await;
        for _ in 0..10 {
            steward_worker::Worker::kill(&store.watch_desired_version("never-set"));
        }
        let _live = store.watch_desired_version("other");
        let watchers = lock(&store.inner.watchers);
        assert!(!watchers.runtimes.contains_key("never-set"));
        assert_eq!(watchers.runtimes["other"].len(), 1);
    }

    #[tokio::test]
    async fn killed_watchers_are_pruned_on_notify() {
        let (_dir, store) = store().await;
        let watcher = store.watch_desired_version("echo");
        let all = store.watch_desired_versions();
        steward_worker::Worker::kill(&watcher);
        steward_worker::Worker::kill(&all);
        store.set_desired_version("echo", "1").await.unwrap();
        let watchers = lock(&store.inner.watchers);
        assert!(watchers.runtimes.is_empty());
        assert!(watchers.all.is_empty());
    }

    #[test]
    fn errors_are_clone_send_sync() {
        fn check<T: Clone + Send + Sync + std::error::Error + 'static>() {}
        check::<Error>();
        fn check_store<T: Clone + Send + Sync + fmt::Debug>() {}
        check_store::<Store>();
    }
}
