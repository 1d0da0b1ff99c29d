//! The shared-state traits: what the agent needs of desired state, whoever
//! keeps it — the embedded [`Store`] on one machine, or a fleet backend
//! (etcd, in the `steward-etcd` crate) that many agents share.
//!
//! The traits are object safe (futures are [`BoxFuture`]s), so the agent
//! holds an `Arc<dyn DesiredState>` and never knows which backend it has.
//! Their semantics are the embedded store's, checked for every backend by
//! one shared test suite (`conformance`, behind this crate's `conformance`
//! feature). This module must never hold a backend's details: the redb
//! implementation below only delegates to [`Store`]'s own methods.

use std::collections::BTreeMap;
use std::fmt;

use steward_worker::{BoxFuture, QueueWatcher};

use crate::{Error, Store};

/// Desired state: for each runtime id, the version it should run.
///
/// Semantics every implementation keeps (the embedded [`Store`]'s):
///
/// - A write resolves `Ok` only once it is durable where the backend keeps
///   state; a write that changes nothing (the value already there, a clear
///   of an absent runtime, a compare that does not match) writes nothing
///   and wakes nobody.
/// - Watchers see committed state: a consumer that takes a change and then
///   reads gets the new value or a newer one. A watcher's first change
///   comes at once (read the current state then); bursts may coalesce;
///   a spurious change is possible, a missed one is not.
/// - A backend that cannot be reached fails an operation with
///   [`Error::Unavailable`]; its watchers do not end because of that, they
///   catch up once it is back.
///
/// ```
/// use std::sync::Arc;
/// use steward_store::{DesiredState, Store};
/// use steward_worker::Watcher;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), steward_store::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let desired: Arc<dyn DesiredState> = Arc::new(Store::open(dir.path().join("state.redb")).await?);
/// // Seeding: the config's active version, unless one was chosen already.
/// assert_eq!(desired.create_desired_version("echo", "1.0.0").await?, None);
/// assert_eq!(desired.create_desired_version("echo", "2.0.0").await?.as_deref(), Some("1.0.0"));
/// let mut watcher = desired.watch_desired_version("echo");
/// watcher.next_change().await.unwrap(); // the initial change
/// assert!(desired.compare_and_set_desired_version("echo", Some("1.0.0"), "2.0.0").await?);
/// watcher.next_change().await.unwrap();
/// assert_eq!(desired.desired_version("echo").await?.as_deref(), Some("2.0.0"));
/// # Ok(()) }
/// ```
pub trait DesiredState: Send + Sync + fmt::Debug {
    /// The version `runtime` should run, if one is set.
    fn desired_version<'a>(
        &'a self,
        runtime: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, Error>>;

    /// Every runtime's desired version, by runtime id.
    fn desired_versions(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>, Error>>;

    /// Sets the version `runtime` should run; returns the previous one.
    /// Setting the current value writes nothing.
    fn set_desired_version<'a>(
        &'a self,
        runtime: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, Error>>;

    /// Sets `runtime`'s version to `version` only if its current value is
    /// `expected` (`None`: no version set), atomically. Returns whether the
    /// value now is `version` because of this call (true also when
    /// `expected` already was `version`).
    fn compare_and_set_desired_version<'a>(
        &'a self,
        runtime: &'a str,
        expected: Option<&'a str>,
        version: &'a str,
    ) -> BoxFuture<'a, Result<bool, Error>>;

    /// Sets `runtime`'s version to `version` only if it has none,
    /// atomically (one transaction): the seeding rule, where a config's
    /// `active` version becomes the desired one only when none was chosen.
    /// Returns `None` when this call set it, else the version that was
    /// there, unchanged.
    fn create_desired_version<'a>(
        &'a self,
        runtime: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, Error>>;

    /// Removes `runtime`'s desired version. Clearing an unset one is a
    /// no-op.
    fn clear_desired_version<'a>(&'a self, runtime: &'a str) -> BoxFuture<'a, Result<(), Error>>;

    /// A notify watcher of `runtime`'s desired version: one change at once,
    /// then one (coalesced) per change of that runtime's value. Changes of
    /// other runtimes never wake it.
    fn watch_desired_version(&self, runtime: &str) -> QueueWatcher<()>;

    /// A strings watcher of the runtime ids whose desired version changed
    /// (set, changed or cleared). Its first change, at once, lists every
    /// runtime with a desired version, sorted (an empty batch if none).
    fn watch_desired_versions(&self) -> QueueWatcher<Vec<String>>;
}

/// The embedded store: each method is the inherent one of the same name.
impl DesiredState for Store {
    fn desired_version<'a>(
        &'a self,
        runtime: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, Error>> {
        Box::pin(Store::desired_version(self, runtime))
    }

    fn desired_versions(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>, Error>> {
        Box::pin(Store::desired_versions(self))
    }

    fn set_desired_version<'a>(
        &'a self,
        runtime: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, Error>> {
        Box::pin(Store::set_desired_version(self, runtime, version))
    }

    fn compare_and_set_desired_version<'a>(
        &'a self,
        runtime: &'a str,
        expected: Option<&'a str>,
        version: &'a str,
    ) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(Store::compare_and_set_desired_version(
            self, runtime, expected, version,
        ))
    }

    fn create_desired_version<'a>(
        &'a self,
        runtime: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, Error>> {
        Box::pin(Store::create_desired_version(self, runtime, version))
    }

    fn clear_desired_version<'a>(&'a self, runtime: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(Store::clear_desired_version(self, runtime))
    }

    fn watch_desired_version(&self, runtime: &str) -> QueueWatcher<()> {
        Store::watch_desired_version(self, runtime)
    }

    fn watch_desired_versions(&self) -> QueueWatcher<Vec<String>> {
        Store::watch_desired_versions(self)
    }
}
