//! Runtime hooks: programs a runtime ships that the agent runs at points of
//! the runtime's life (install, start, config changes, version upgrades,
//! stop, relation changes), and the hook tools they call back with.
//!
//! - [`HookKind`] and [`HookInfo`]: what a hook is about, its file name
//!   and the rules its description follows.
//!
//! This crate descends from juju's uniter `hook` and `jujuc` packages; it
//! knows nothing of HTTP, redb or etcd. The agent decides when hooks run,
//! computes their environment and persists their results.

#![warn(missing_debug_implementations, unreachable_pub)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod kind;

pub use error::Error;
pub use kind::{HookInfo, HookKind};
