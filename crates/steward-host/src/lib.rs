#![doc = include_str!("../docs/guide.md")]

mod aggregate;
mod error;
mod event;
mod process;
mod storage;
#[cfg(feature = "test-util")]
pub mod test_util;

use steward_protocol::{Body, RuntimeInfoResponse};
use steward_worker::BoxFuture;
use tokio::sync::broadcast;

pub use aggregate::{Aggregate, AggregateConfig, OnUnknownVersion, TransitionMode};
pub use error::Error;
pub use event::{Event, ExitReason, ProcessStatus, StartError};
pub use process::{Liveness, OutputLine, OutputSink, OutputStream, ProcessConfig, ProcessHost};
pub use storage::{MemoryStorage, Storage};

/// One hosted runtime, as the rest of the system sees it (Oasis Core's
/// `host.Runtime`).
///
/// Object safe: aggregates and agents hold `Arc<dyn RuntimeHost>`.
pub trait RuntimeHost: Send + Sync + 'static {
    /// The runtime's id.
    fn id(&self) -> &str;

    /// The running runtime's handshake answer, waiting while it (re)starts.
    /// Put a deadline on it with `tokio::time::timeout`.
    fn info(&self) -> BoxFuture<'_, Result<RuntimeInfoResponse, Error>>;

    /// Sends a request (normally `RuntimeCallRequest`) and returns the
    /// answer, waiting while the runtime (re)starts. Put a deadline on it
    /// with `tokio::time::timeout`.
    fn call(&self, body: Body) -> BoxFuture<'_, Result<Body, Error>>;

    /// Subscribes to events. A subscriber that falls behind loses the
    /// oldest events and is told how many (`RecvError::Lagged`).
    fn watch_events(&self) -> broadcast::Receiver<Event>;

    /// Starts the runtime (idempotent): the first start is immediate,
    /// later restarts follow the backoff.
    fn start(&self) -> Result<(), Error>;

    /// Asks the runtime to abandon its work in progress. If it does not
    /// answer in time, or if `force`, the process is killed and restarted.
    /// Answers which of these happened: whoever asked for a gentle abort
    /// must learn that the process was killed after all.
    fn abort(&self, force: bool) -> BoxFuture<'_, Result<Aborted, Error>>;

    /// Stops the runtime for good (idempotent) and waits until it is gone.
    fn stop(&self) -> BoxFuture<'_, ()>;

    /// The process serving now, if any. Read-only, for status displays;
    /// hosts without a process of their own (fakes) have none.
    fn process(&self) -> Option<ProcessInfo> {
        None
    }
}

/// What an abort did (see [`RuntimeHost::abort`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aborted {
    /// The runtime answered: it abandoned its calls in progress (they fail
    /// with its `aborted` error), and the same process goes on serving.
    Abandoned,
    /// The process was killed and is restarting: on request (`force`), or
    /// because it refused the abort or did not answer it in time. Its
    /// calls in progress fail as [`Error::Aborted`].
    Killed,
    /// No process was serving (it is starting or restarting): nothing to
    /// abort.
    NotRunning,
}

/// The process serving a runtime version (see [`RuntimeHost::process`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its process id.
    pub pid: u32,
    /// When it started serving (passed its handshake), by the wall clock.
    pub started_at: std::time::SystemTime,
    /// How long it has served, by the monotonic clock (so a change of the
    /// wall clock does not change it).
    pub uptime: std::time::Duration,
}
