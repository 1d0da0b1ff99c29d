//! The shared-state traits: what the agent needs of the state it shares,
//! whoever keeps it — the embedded [`Store`] on one machine, or a fleet
//! backend (etcd, in the `steward-etcd` crate) that many agents share.
//!
//! - [`DesiredState`]: each runtime's desired version, with watchers. The
//!   embedded store and a fleet backend implement it.
//! - [`Presence`]: this agent's units and their status, published so that
//!   they leave when the agent dies; every unit of the fleet; whether the
//!   backend answers ([`FleetHealth`]). Only a fleet backend implements it.
//! - [`RelationSettings`]: each unit's settings in a relation, seen by the
//!   relation's members on every agent. Only a fleet backend implements it.
//! - [`FleetState`]: all three, one object (`Arc<dyn FleetState>` coerces
//!   to each of the others).
//!
//! The traits are object safe (futures are [`BoxFuture`]s), so the agent
//! holds an `Arc<dyn DesiredState>` and never knows which backend it has.
//! Their semantics are the embedded store's, checked for every backend by
//! one shared test suite (`conformance`, behind this crate's `conformance`
//! feature). This module must never hold a backend's details: the redb
//! implementation below only delegates to [`Store`]'s own methods.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use steward_worker::{BoxFuture, QueueWatcher};

use crate::{Error, KeyChanges, Store};

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

/// Whether a shared backend (etcd, in fleet mode) answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetHealth {
    /// It answered the last request or check.
    Connected,
    /// It has not answered since `since`. The backend retries with backoff
    /// by itself; the agent keeps serving its last known desired state.
    Disconnected {
        /// When the outage was noticed.
        since: SystemTime,
        /// The first failure of the outage, e.g. `no answer within 2s`.
        reason: String,
    },
}

impl FleetHealth {
    /// True for [`Connected`](FleetHealth::Connected).
    pub fn is_connected(&self) -> bool {
        matches!(self, FleetHealth::Connected)
    }
}

/// One unit of the fleet, as its agent last published it
/// ([`Presence::units`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRecord {
    /// `<runtime>/<agent>`.
    pub unit: String,
    /// The runtime half of the name.
    pub runtime: String,
    /// The agent half of the name.
    pub agent: String,
    /// The status bytes the agent published (their meaning is the agent's).
    pub status: Vec<u8>,
    /// The backend's revision of the last publish: grows with every publish
    /// of the unit.
    pub revision: i64,
    /// When the unit's agent was last heard from (to the second); `None`
    /// if the backend could not say.
    pub last_seen: Option<SystemTime>,
}

/// Presence: this agent publishes its units' status, tied to its own
/// liveness, and sees every unit of the fleet.
///
/// Semantics every implementation keeps:
///
/// - A unit is named `<runtime>/<agent>` ([`unit_name`](Self::unit_name));
///   an agent publishes and removes only its own units (another agent's
///   name fails with [`Error::InvalidName`], as does a name with a `/` in
///   either half).
/// - Published units are tied to the agent's liveness: when the agent dies
///   they leave the fleet by themselves (within the backend's lease TTL);
///   when it stops gracefully they leave at once.
/// - A publish or remove the backend did not confirm
///   ([`Error::Unavailable`]) is remembered and done again once it answers,
///   as is everything the agent published, should the backend have lost it
///   during an outage. The agent publishes on change, never in a loop.
/// - [`watch_units`](Self::watch_units)'s first change lists every unit;
///   after that, the latest event per unit. It does not end because the
///   backend is away; it catches up when it returns.
pub trait Presence: Send + Sync + fmt::Debug {
    /// This agent's name: the second half of its units' names.
    fn agent(&self) -> &str;

    /// The name of `runtime`'s unit on this agent: `<runtime>/<agent>`.
    fn unit_name(&self, runtime: &str) -> String {
        format!("{runtime}/{}", self.agent())
    }

    /// Publishes `unit`'s status (replacing the last one).
    fn publish_unit<'a>(
        &'a self,
        unit: &'a str,
        status: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Removes `unit` from the fleet (a runtime this agent no longer runs).
    fn remove_unit<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<(), Error>>;

    /// Every unit of the fleet, sorted by name.
    fn units(&self) -> BoxFuture<'_, Result<Vec<UnitRecord>, Error>>;

    /// A watch of every unit of the fleet: keys are unit names, values
    /// their status, a deleted key a unit that left.
    fn watch_units(&self) -> QueueWatcher<KeyChanges>;

    /// Whether the backend answers now.
    fn health(&self) -> FleetHealth;

    /// A notify watcher of [`health`](Self::health): one change at once,
    /// then one per transition (read `health` then).
    fn watch_health(&self) -> QueueWatcher<()>;
}

/// Relation settings across agents: each member unit's settings in a
/// relation, tied to its agent's liveness like its [`Presence`].
///
/// Semantics every implementation keeps:
///
/// - A relation's members are the units with settings in it; an agent sets
///   and removes only its own units' settings ([`Error::InvalidName`]
///   otherwise, and for a relation name with a `/`).
/// - Settings leave with their agent (dead: within the lease TTL; stopped
///   gracefully: at once), and are re-published after an outage like the
///   units' status.
/// - [`watch_relation`](Self::watch_relation)'s first change is the whole
///   membership; then the latest event per unit (a unit that left and
///   joined again has a new [`create_revision`](crate::KeyEvent)).
pub trait RelationSettings: Send + Sync + fmt::Debug {
    /// Sets `unit`'s settings in `relation` (it joins, or its settings
    /// change).
    fn set_relation_settings<'a>(
        &'a self,
        relation: &'a str,
        unit: &'a str,
        settings: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Removes `unit`'s settings from `relation` (it leaves).
    fn remove_relation_settings<'a>(
        &'a self,
        relation: &'a str,
        unit: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Every member of `relation`, by unit name, with its settings.
    fn relation_members<'a>(
        &'a self,
        relation: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Vec<u8>>, Error>>;

    /// A watch of `relation`'s members: keys are unit names, values their
    /// settings. Fails at once only for an invalid relation name.
    fn watch_relation(&self, relation: &str) -> Result<QueueWatcher<KeyChanges>, Error>;
}

/// Everything a fleet backend shares, in one object: the agent holds an
/// `Arc<dyn FleetState>` and hands out `Arc<dyn DesiredState>`,
/// `Arc<dyn Presence>` or `Arc<dyn RelationSettings>` (trait upcasting).
/// Implemented for every type that implements the three.
pub trait FleetState: DesiredState + Presence + RelationSettings {}

impl<T: DesiredState + Presence + RelationSettings + ?Sized> FleetState for T {}
