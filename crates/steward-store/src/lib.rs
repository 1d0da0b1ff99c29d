//! The Steward agent's embedded, crash-safe state: *desired state* and
//! runtime *host storage*, in one [redb](https://www.redb.org) database file.
//!
//! A [`Store`] owns:
//!
//! - **Desired state**: for each runtime id, the version it should run
//!   ([`Store::set_desired_version`], [`Store::compare_and_set_desired_version`],
//!   …), watchable per runtime ([`Store::watch_desired_version`], a notify
//!   watcher) or as a whole ([`Store::watch_desired_versions`], a strings
//!   watcher of the runtime ids that changed).
//! - **Host storage**: opaque byte values that runtimes keep through their
//!   host, namespaced by runtime id ([`Store::storage_get`], …).
//! - **Records**: the agent's own state of hooks and relations, opaque
//!   bytes by (kind, key), written in atomic batches
//!   ([`Store::commit_records`]).
//!
//! It also defines the **shared-state traits** the agent uses, so that a
//! fleet backend (etcd, in `steward-etcd`) can stand in for the embedded
//! store: [`DesiredState`] (the desired versions, with their watchers),
//! implemented here by [`Store`] as a thin delegation to its own methods;
//! [`Presence`] (this agent's units and their status, every unit of the
//! fleet, and whether the shared backend answers, [`FleetHealth`]) and
//! [`RelationSettings`] (relation members and their settings across
//! agents), which only a fleet backend implements. [`FleetState`] is all
//! three in one object.
//! One conformance suite checks every backend against the same semantics
//! (module `conformance`, behind the `conformance` feature).
//!
//! # Guarantees
//!
//! - **Durable acknowledgement.** Every write is committed with redb's
//!   `Durability::Immediate` (an `fsync` of the file) before its future
//!   resolves `Ok`: an acknowledged write survives `SIGKILL` and power loss.
//!   A write that does not change anything (setting the value already
//!   stored, deleting a missing key) commits nothing and costs no `fsync`.
//! - **One process per file.** A second open of the same file, from this or
//!   another process, fails with [`Error::Locked`].
//! - **Watchers see committed state.** Watchers are notified after the
//!   commit, so a consumer that takes a change and then reads gets the new
//!   value (or a newer one). A watcher's first change arrives at once, and
//!   bursts coalesce (see [`steward_worker::watcher`]). Writers never wait
//!   for watchers; killed watchers are pruned.
//! - **Never blocks the async runtime on I/O.** redb is blocking, so every
//!   read and write runs on tokio's blocking pool; the `Store` methods must
//!   be called inside a tokio runtime. Only the initial snapshot of
//!   [`Store::watch_desired_versions`] reads inline (one small read
//!   transaction, no `fsync`).
//!
//! # What this crate must never do
//!
//! Know about runtimes' processes, their configs, versions' meaning, or the
//! control API (HTTP): it stores strings and bytes, and says which keys
//! changed. Deciding what a change means is the agent's job.
//!
//! ```
//! use steward_store::Store;
//! use steward_worker::Watcher;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), steward_store::Error> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("state.redb")).await?;
//! let mut watcher = store.watch_desired_version("echo");
//! watcher.next_change().await.unwrap(); // the initial change
//! assert_eq!(store.set_desired_version("echo", "1.2.0").await?, None);
//! watcher.next_change().await.unwrap(); // echo's desired version changed
//! assert_eq!(store.desired_version("echo").await?.as_deref(), Some("1.2.0"));
//!
//! store.storage_set("echo", "greeting", b"hello".to_vec()).await?;
//! assert_eq!(store.storage_list("echo", "gr").await?, ["greeting"]);
//! # Ok(()) }
//! ```

mod changes;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod records;
mod shared;
mod store;

pub use changes::{KeyChanges, KeyEvent, PendingKeyChanges};
pub use error::Error;
pub use records::RecordWrite;
pub use shared::{DesiredState, FleetHealth, FleetState, Presence, RelationSettings, UnitRecord};
pub use store::{Store, StoreHealth};
