//! What happens to a hosted runtime, as events. Plain data: this module
//! must never hold a handle to a process.

use std::sync::Arc;

use steward_protocol::RuntimeInfoResponse;

/// Something that happened to a runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The process started and passed its handshake.
    Started {
        /// The configured (and reported) version.
        version: Arc<str>,
        /// Its handshake answer.
        info: RuntimeInfoResponse,
    },
    /// An attempt to start failed; the host retries after its backoff.
    FailedToStart {
        /// The configured version.
        version: Arc<str>,
        /// What went wrong.
        error: String,
    },
    /// The process is gone, whatever the cause (always sent after
    /// `Started`).
    Stopped {
        /// The configured version.
        version: Arc<str>,
        /// How it ended.
        exit: Exit,
    },
    /// Something about the running runtime changed without a restart.
    Updated {
        /// The configured version.
        version: Arc<str>,
        /// What changed.
        what: String,
    },
}

impl Event {
    /// The event's kind, for logs and APIs: `started`, `failed_to_start`,
    /// `stopped` or `updated`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Started { .. } => "started",
            Event::FailedToStart { .. } => "failed_to_start",
            Event::Stopped { .. } => "stopped",
            Event::Updated { .. } => "updated",
        }
    }

    /// The version the event is about.
    pub fn version(&self) -> &Arc<str> {
        match self {
            Event::Started { version, .. }
            | Event::FailedToStart { version, .. }
            | Event::Stopped { version, .. }
            | Event::Updated { version, .. } => version,
        }
    }
}

/// How a runtime process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Why the host thinks it ended: `stopped`, `crashed`, `aborted`,
    /// `connection lost`.
    pub reason: String,
    /// The exit status, e.g. `exit status: 101` or `signal: 9 (SIGKILL)`.
    pub status: Option<String>,
}
