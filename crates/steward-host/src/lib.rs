//! Hosting runtimes: the [`RuntimeHost`] contract and the process host.
//!
//! A runtime is a separate OS process speaking the Steward protocol over a
//! Unix socket. [`ProcessHost`] starts it, checks its handshake, restarts it
//! with backoff when it dies, aborts and stops it, and serves its host
//! storage requests from a [`Storage`]. Everything that happens to it is an
//! [`Event`] (`Started`, `FailedToStart`, `Stopped`, `Updated`), with a
//! typed cause ([`ExitReason`], [`StartError`]).
//! [`Aggregate`] holds several versions of one runtime and switches the
//! active one while calls keep flowing.
//!
//! This crate depends on `steward-worker` (supervision, backoff) and
//! `steward-protocol` (the wire); it must never know about configuration
//! files, stores or APIs (the agent's business).

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
pub use process::{ProcessConfig, ProcessHost};
pub use storage::{MemoryStorage, Storage};

/// One hosted runtime, as the rest of the system sees it (the seed's
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
    fn abort(&self, force: bool) -> BoxFuture<'_, Result<(), Error>>;

    /// Stops the runtime for good (idempotent) and waits until it is gone.
    fn stop(&self) -> BoxFuture<'_, ()>;
}
