//! The one error type of the store. Cheap to clone (strings and paths only,
//! no redb error kept), so it can travel inside a worker's result.

use std::path::PathBuf;

/// Why a store operation failed.
///
/// The open errors ([`Locked`](Error::Locked),
/// [`NoDirectory`](Error::NoDirectory), [`Corrupted`](Error::Corrupted),
/// [`Open`](Error::Open)) say which file and what to do. After
/// [`Unusable`](Error::Unusable) every later write fails too, until
/// [`Store::reopen`](crate::Store::reopen) succeeds (the agent retries it
/// with backoff).
///
/// A write that fails with [`Database`](Error::Database) did not happen. A
/// write that fails with [`Unusable`](Error::Unusable) may or may not have
/// become durable (redb cannot tell after a failed commit): read it back
/// after reopening. [`Unavailable`](Error::Unavailable) is the same for a
/// shared store that did not answer in time: read it back once it is
/// reachable again.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process (or another [`Store`](crate::Store) in this one)
    /// has the file open.
    #[error(
        "the store at {} is already open in another process (another steward agent?); stop it or use another --data-dir",
        path.display()
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },

    /// The directory that should hold the database file does not exist.
    /// The store creates the file, never its directory.
    #[error(
        "cannot open the store at {}: directory {} does not exist; create it or use another --data-dir",
        path.display(),
        directory.display()
    )]
    NoDirectory {
        /// The database file.
        path: PathBuf,
        /// Its missing directory.
        directory: PathBuf,
    },

    /// The file exists but is not a valid store: damaged outside redb, or
    /// some other file.
    #[error(
        "the store at {} is damaged or is not a steward store ({reason}); move it aside to start with empty state, or restore a backup",
        path.display()
    )]
    Corrupted {
        /// The database file.
        path: PathBuf,
        /// What redb found.
        reason: String,
    },

    /// The file could not be opened or created for another reason
    /// (permissions, not a regular file, an I/O error, …).
    #[error("cannot open the store at {}: {reason}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why, as reported by the system or redb.
        reason: String,
    },

    /// A read or write failed; the store stays usable. A failed write
    /// changed nothing.
    #[error("store: {operation}: {reason}")]
    Database {
        /// What was being done, e.g. `writing desired version of echo`.
        operation: String,
        /// Why it failed.
        reason: String,
    },

    /// A shared store (etcd, in fleet mode) could not be reached in time: the
    /// operation may or may not have been applied there, and a read got
    /// nothing. The agent keeps serving what it runs and retries by itself.
    #[error(
        "store: {operation}: the shared store cannot be reached ({reason}); check that it is running and reachable from this machine, then retry"
    )]
    Unavailable {
        /// What was being done, e.g. `writing desired version of echo`.
        operation: String,
        /// Why it failed, e.g. `no answer within 2s`.
        reason: String,
    },

    /// A name the store cannot use (empty, or with a character its keys
    /// reserve, like a `/` in a runtime, agent or relation name of the
    /// shared store), or a unit this agent may not write (another agent's).
    /// Nothing was done.
    #[error("store: {what} {name:?} is not valid: {reason}")]
    InvalidName {
        /// What the name names: `unit`, `relation`, `agent`, …
        what: &'static str,
        /// The name given.
        name: String,
        /// What a valid one looks like.
        reason: String,
    },

    /// A commit failed part way (an I/O error, a full disk) and redb now
    /// refuses writes until the file is reopened. The failed write may or
    /// may not be durable.
    #[error(
        "store: {operation}: {reason}; the store refuses writes until it can be reopened (the agent retries by itself): check the disk (space, errors)"
    )]
    Unusable {
        /// What was being done when the store failed (or was found failed).
        operation: String,
        /// Why it failed.
        reason: String,
    },
}
