//! The one error type of the etcd backend. Cheap to clone (strings only, no
//! client error kept), so it can travel inside a worker's result.

/// Why an operation of the fleet store failed.
///
/// A write that fails with [`Unavailable`](Error::Unavailable) may or may
/// not have been applied by etcd (the answer was lost): read it back once
/// etcd is reachable. Every other failed write changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options cannot work (no endpoint, a bad prefix, a zero
    /// timeout, …).
    #[error("fleet: invalid options: {reason}")]
    InvalidOptions {
        /// What is wrong, and what would be right.
        reason: String,
    },

    /// The first contact with etcd failed: nothing was started.
    #[error(
        "fleet: cannot reach etcd at {endpoints}: {reason}; start etcd there, or check the endpoints and that this machine can reach them"
    )]
    Connect {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// Why, as the client or the deadline said.
        reason: String,
    },

    /// etcd did not answer in time, or the connection failed. The store
    /// keeps trying by itself (see [`FleetHealth`](crate::FleetHealth)).
    #[error(
        "fleet: {operation}: etcd cannot be reached ({reason}); it is retried by itself: check that etcd is running and reachable"
    )]
    Unavailable {
        /// What was being done, e.g. `writing desired version of echo`.
        operation: String,
        /// Why it failed, e.g. `no answer within 2s`.
        reason: String,
    },

    /// etcd answered with an error other than unavailability (a permission,
    /// a request too large, …): retrying the same request will not help.
    #[error("fleet: {operation}: etcd refused it: {reason}")]
    Rejected {
        /// What was being done.
        operation: String,
        /// etcd's answer.
        reason: String,
    },

    /// A key under the prefix holds a value this store cannot read (not
    /// UTF-8 where a version is expected): written by something else.
    #[error(
        "fleet: {operation}: the value at {key} is not valid UTF-8; fix or delete it with etcdctl"
    )]
    InvalidValue {
        /// What was being done.
        operation: String,
        /// The etcd key, in full.
        key: String,
    },

    /// A name that cannot be part of the key layout (empty, or with a `/`
    /// where it would split a key), or a unit of another agent.
    #[error("fleet: {what} {name:?} is not valid: {reason}")]
    InvalidName {
        /// What the name names: `unit`, `relation`, `agent`, `prefix`.
        what: &'static str,
        /// The name given.
        name: String,
        /// What a valid one looks like.
        reason: String,
    },

    /// The store was closed ([`EtcdStore::close`](crate::EtcdStore::close)).
    #[error("fleet: {operation}: the fleet store was closed")]
    Closed {
        /// What was being done.
        operation: String,
    },
}

/// The shared-state traits speak the store crate's error: an unreachable
/// (or closed) etcd is [`steward_store::Error::Unavailable`], a bad name
/// [`steward_store::Error::InvalidName`], anything else a failed read or
/// write ([`steward_store::Error::Database`]).
impl From<Error> for steward_store::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Unavailable { operation, reason } => {
                steward_store::Error::Unavailable { operation, reason }
            }
            Error::Closed { operation } => steward_store::Error::Unavailable {
                operation,
                reason: "the fleet store was closed".to_owned(),
            },
            Error::InvalidName { what, name, reason } => {
                steward_store::Error::InvalidName { what, name, reason }
            }
            Error::Rejected { operation, reason } => {
                steward_store::Error::Database { operation, reason }
            }
            other => steward_store::Error::Database {
                operation: "fleet store".to_owned(),
                reason: other.to_string(),
            },
        }
    }
}
