//! What happens to a hosted runtime, as events with typed causes: why a
//! process ended ([`ExitReason`]) and why a start failed ([`StartError`]).
//! Callers match on them (a restart counter, a status page) instead of
//! comparing text, so a renamed cause fails to compile. Plain data: this
//! module must never hold a handle to a process.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use steward_protocol::{ProtocolVersion, RuntimeInfoResponse};

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
        error: StartError,
    },
    /// The process is gone, whatever the cause (always sent after
    /// `Started`).
    Stopped {
        /// The configured version.
        version: Arc<str>,
        /// How and why it ended.
        reason: ExitReason,
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

/// How a process ended, as the operating system reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// The status could not be read (the message says why).
    Unknown(Arc<str>),
}

impl ProcessStatus {
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        *self == ProcessStatus::Code(0)
    }
}

impl From<std::process::ExitStatus> for ProcessStatus {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ProcessStatus::Code(code),
            (None, Some(signal)) => ProcessStatus::Signal(signal),
            (None, None) => ProcessStatus::Unknown(Arc::from(status.to_string())),
        }
    }
}

impl From<std::io::Result<std::process::ExitStatus>> for ProcessStatus {
    fn from(status: std::io::Result<std::process::ExitStatus>) -> Self {
        match status {
            Ok(status) => status.into(),
            Err(error) => ProcessStatus::Unknown(Arc::from(error.to_string())),
        }
    }
}

impl fmt::Display for ProcessStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessStatus::Code(code) => write!(f, "exit status: {code}"),
            ProcessStatus::Signal(signal) => match nix::sys::signal::Signal::try_from(*signal) {
                Ok(name) => write!(f, "signal: {signal} ({})", name.as_str()),
                Err(_) => write!(f, "signal: {signal}"),
            },
            ProcessStatus::Unknown(why) => write!(f, "status unknown ({why})"),
        }
    }
}

/// Why a runtime process ended.
///
/// [`Crashed`](Self::Crashed), [`Hung`](Self::Hung) and
/// [`ConnectionLost`](Self::ConnectionLost) are failures of the runtime
/// (restarted after the backoff); the others are the host doing what it
/// was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The host stopped it (a stop or a version switch), politely first.
    /// It stays a stop whatever the exit status: a runtime exiting
    /// non-zero after the host's `RuntimeShutdown` is logged as a warning
    /// naming the status, not counted as a crash.
    Stopped {
        /// How it exited.
        status: ProcessStatus,
    },
    /// It exited by itself while serving.
    Crashed {
        /// How it exited.
        status: ProcessStatus,
    },
    /// The host killed it on request (`abort` forced, or an abort it did
    /// not answer) and starts it again at once.
    Aborted {
        /// How it exited.
        status: ProcessStatus,
    },
    /// Its connection ended (it hung up, or sent a bad frame) while the
    /// process was still alive; the host killed it.
    ConnectionLost {
        /// What happened to the connection.
        cause: Arc<str>,
        /// How it exited once killed.
        status: ProcessStatus,
    },
    /// It left `missed` liveness pings in a row unanswered (stopped,
    /// deadlocked, its event loop blocked); the host killed its process
    /// group. See [`Liveness`](crate::Liveness).
    Hung {
        /// The pings in a row it did not answer in time.
        missed: u32,
        /// How it exited once killed.
        status: ProcessStatus,
    },
}

impl ExitReason {
    /// How the process exited.
    pub fn status(&self) -> &ProcessStatus {
        match self {
            ExitReason::Stopped { status }
            | ExitReason::Crashed { status }
            | ExitReason::Aborted { status }
            | ExitReason::ConnectionLost { status, .. }
            | ExitReason::Hung { status, .. } => status,
        }
    }

    /// Whether the runtime failed (as opposed to being stopped or killed
    /// on request): what restart counters count.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            ExitReason::Crashed { .. }
                | ExitReason::ConnectionLost { .. }
                | ExitReason::Hung { .. }
        )
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Stopped { status } => write!(f, "stopped ({status})"),
            ExitReason::Crashed { status } => write!(f, "crashed ({status})"),
            ExitReason::Aborted { status } => write!(f, "aborted ({status})"),
            ExitReason::ConnectionLost { cause, status } => {
                write!(f, "connection lost: {cause} ({status})")
            }
            ExitReason::Hung { missed, status } => {
                let pings = if *missed == 1 { "ping" } else { "pings" };
                write!(f, "hung ({missed} {pings} unanswered) ({status})")
            }
        }
    }
}

/// Why a runtime did not start: each step of a start that can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The private socket directory could not be created.
    #[error("cannot create a private directory for its socket: {reason}")]
    SocketDir {
        /// The operating system's message.
        reason: String,
    },
    /// The host could not listen on the socket.
    #[error("cannot listen on {}: {reason}", path.display())]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The operating system's message.
        reason: String,
    },
    /// The program could not be run.
    #[error("cannot run {}: {reason}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The operating system's message.
        reason: String,
    },
    /// The process exited before it connected to the host.
    #[error("exited before connecting to the host ({status})")]
    ExitedBeforeConnecting {
        /// How it exited.
        status: ProcessStatus,
    },
    /// The host could not accept the process's connection.
    #[error("cannot accept its connection: {reason}")]
    Accept {
        /// The operating system's message.
        reason: String,
    },
    /// The process did not connect in time.
    #[error("did not connect to the host within {}", humantime::format_duration(*within))]
    ConnectTimeout {
        /// The accept timeout.
        within: Duration,
    },
    /// The process exited during the handshake.
    #[error("exited during the handshake ({status})")]
    ExitedDuringHandshake {
        /// How it exited.
        status: ProcessStatus,
    },
    /// The handshake failed on the wire or was refused.
    #[error("handshake failed: {reason}")]
    Handshake {
        /// The protocol error.
        reason: String,
    },
    /// The process did not answer the handshake in time.
    #[error("did not answer the handshake within {}", humantime::format_duration(*within))]
    HandshakeTimeout {
        /// The handshake timeout.
        within: Duration,
    },
    /// The process answered the handshake with something else.
    #[error("answered the handshake with {got}")]
    UnexpectedAnswer {
        /// The name of the body it sent.
        got: &'static str,
    },
    /// The process speaks another major protocol version.
    #[error("speaks protocol {runtime}, the host speaks {host} (major versions must match)")]
    ProtocolMismatch {
        /// What the runtime speaks.
        runtime: ProtocolVersion,
        /// What the host speaks.
        host: ProtocolVersion,
    },
    /// The process reported another version than it is configured as.
    #[error("reported version {reported:?}, but is configured as version {configured:?}")]
    VersionMismatch {
        /// What it reported.
        reported: String,
        /// What the host expected.
        configured: Arc<str>,
    },
    /// The version did not serve within an aggregate's start timeout.
    #[error("not serving within {}", humantime::format_duration(*within))]
    NotServing {
        /// The start timeout.
        within: Duration,
    },
    /// The version's event stream closed while it was starting (its host
    /// was dropped).
    #[error("its host went away while it was starting")]
    HostGone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_like_the_operating_system_says_them() {
        assert_eq!(ProcessStatus::Code(3).to_string(), "exit status: 3");
        assert_eq!(ProcessStatus::Signal(9).to_string(), "signal: 9 (SIGKILL)");
        assert!(ProcessStatus::Code(0).success());
        assert!(!ProcessStatus::Signal(15).success());
    }

    #[test]
    fn a_hung_runtime_is_a_failure_that_says_how_many_pings_it_missed() {
        let hung = ExitReason::Hung {
            missed: 3,
            status: ProcessStatus::Signal(9),
        };
        assert!(hung.is_failure());
        assert_eq!(hung.status(), &ProcessStatus::Signal(9));
        assert_eq!(
            hung.to_string(),
            "hung (3 pings unanswered) (signal: 9 (SIGKILL))"
        );
        let once = ExitReason::Hung {
            missed: 1,
            status: ProcessStatus::Signal(9),
        };
        assert_eq!(
            once.to_string(),
            "hung (1 ping unanswered) (signal: 9 (SIGKILL))"
        );
    }

    #[test]
    fn only_crashes_hangs_and_lost_connections_are_failures() {
        let status = ProcessStatus::Code(0);
        assert!(
            !ExitReason::Stopped {
                status: status.clone()
            }
            .is_failure()
        );
        assert!(
            !ExitReason::Aborted {
                status: status.clone()
            }
            .is_failure()
        );
        assert!(
            ExitReason::Crashed {
                status: status.clone()
            }
            .is_failure()
        );
        let lost = ExitReason::ConnectionLost {
            cause: Arc::from("bad frame: malformed message"),
            status: ProcessStatus::Signal(9),
        };
        assert!(lost.is_failure());
        assert_eq!(
            lost.to_string(),
            "connection lost: bad frame: malformed message (signal: 9 (SIGKILL))"
        );
    }
}
