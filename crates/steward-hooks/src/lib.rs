//! Runtime hooks: programs a runtime ships that the agent runs at points of
//! the runtime's life (install, start, config changes, version upgrades,
//! stop, relation changes), and the hook tools they call back with.
//!
//! - [`HookKind`] and [`HookInfo`]: what a hook is about, its file name
//!   and the rules its description follows.
//! - [`HookContext`]: what one hook run's tool commands run against — unit
//!   info, a settings snapshot, changes buffered until the hook succeeded
//!   ([`Changes`]), and the agent's [`ContextBackend`].
//! - [`tool`]: the hook tool server the agent runs, the client hooks run
//!   (`config-get`, `state-set`, …), and the built-in commands.
//! - [`leader`]: the helper process that makes sure no hook process
//!   outlives the agent.
//!
//! This crate descends from juju's uniter `hook` and `jujuc` packages; it
//! knows nothing of HTTP, redb or etcd. The agent decides when hooks run,
//! computes their environment and persists their results.

#![warn(missing_debug_implementations, unreachable_pub)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod context;
mod error;
mod kind;
pub mod leader;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod tool;

pub use context::{
    Changes, ContextBackend, HookContext, LogLevel, UnitInfo, UnknownLogLevel, WorkloadState,
    WorkloadStatus,
};
pub use error::Error;
pub use kind::{HookInfo, HookKind};
