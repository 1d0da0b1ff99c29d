//! The host crate's one error type.

use std::sync::Arc;

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
        reason: String,
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
    /// A protocol-level failure, including error answers from the runtime
    /// (`steward_protocol::Error::Remote`).
    #[error(transparent)]
    Protocol(#[from] steward_protocol::Error),
    /// Host storage failed.
    #[error("host storage: {0}")]
    Storage(String),
}
