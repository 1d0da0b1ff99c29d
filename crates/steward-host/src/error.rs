//! The host crate's one error type.

use std::sync::Arc;

use crate::StartError;

/// What can go wrong hosting a runtime.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runtime process could not be started or did not complete its
    /// handshake; the message says which step failed and why.
    #[error("runtime {runtime} {version} failed to start: {reason}")]
    FailedToStart {
        /// The runtime id.
        runtime: Arc<str>,
        /// The configured version.
        version: Arc<str>,
        /// What went wrong.
        reason: StartError,
    },
    /// The runtime was stopped; calls are refused until it is started again.
    #[error("runtime {runtime} is stopped")]
    Stopped {
        /// The runtime id.
        runtime: Arc<str>,
    },
    /// The runtime's process went away while the call was in flight.
    #[error("runtime {runtime} went away during the call: {reason}")]
    Lost {
        /// The runtime id.
        runtime: Arc<str>,
        /// What happened to the connection.
        reason: String,
    },
    /// The call was cut off by an abort that killed the runtime's process
    /// (`abort(true)`, or a runtime that did not answer `abort(false)` in
    /// time); a new process is starting.
    #[error(
        "the call to runtime {runtime} was cut off by an abort, which killed its process (a new one is starting)"
    )]
    Aborted {
        /// The runtime id.
        runtime: Arc<str>,
    },
    /// A protocol-level failure, including error answers from the runtime
    /// (`steward_protocol::Error::Remote`).
    #[error(transparent)]
    Protocol(#[from] steward_protocol::Error),
    /// The aggregate has no active version (none set yet, or a
    /// stop-then-start switch did not bring one up within the deadline).
    #[error("runtime {runtime} has no active version")]
    NoActiveVersion {
        /// The runtime id.
        runtime: Arc<str>,
    },
    /// The requested version is not one of the aggregate's versions.
    #[error("runtime {runtime} has no version {version:?} (known: {known})")]
    NoSuchVersion {
        /// The runtime id.
        runtime: Arc<str>,
        /// The version asked for.
        version: Arc<str>,
        /// The versions it has, comma separated.
        known: String,
    },
    /// A sub-runtime's id differs from the aggregate's.
    #[error(
        "runtime id mismatch: the aggregate is {aggregate:?} but its version {version:?} is runtime {runtime:?}"
    )]
    IdMismatch {
        /// The aggregate's id.
        aggregate: Arc<str>,
        /// The version in question.
        version: Arc<str>,
        /// The sub-runtime's id.
        runtime: String,
    },
    /// An aggregate was made without any version.
    #[error("runtime {runtime} needs at least one version")]
    NoVersions {
        /// The runtime id.
        runtime: Arc<str>,
    },
    /// The version to add exists already.
    #[error("runtime {runtime} already has version {version}")]
    VersionExists {
        /// The runtime id.
        runtime: Arc<str>,
        /// The version.
        version: Arc<str>,
    },
    /// The version to remove is the active one.
    #[error(
        "version {version} of runtime {runtime} is active; switch to another version before removing it"
    )]
    VersionActive {
        /// The runtime id.
        runtime: Arc<str>,
        /// The version.
        version: Arc<str>,
    },
    /// The call was still running on a version being switched away from
    /// when the drain timeout ran out, and was abandoned.
    #[error(
        "call abandoned: version {version} of runtime {runtime} was switched away and the call did not finish within the drain timeout"
    )]
    Drained {
        /// The runtime id.
        runtime: Arc<str>,
        /// The version that was switched away from.
        version: Arc<str>,
    },
    /// Host storage failed.
    #[error("host storage: {0}")]
    Storage(String),
}
