//! Test support for fleet code (feature `testing`): real etcd servers and a
//! freezable TCP proxy, for this crate's tests and the agent's.
//!
//! - [`EtcdServer`] starts Debian's `etcd` (`scripts/etcd-deps` installs
//!   it) on free loopback ports with a temporary data dir, and can freeze
//!   it (`SIGSTOP`/`SIGCONT`), kill it (`SIGKILL`) and start it again on
//!   the same data dir and ports. A missing binary is an error that names
//!   `scripts/etcd-deps`: tests that need etcd fail, never pass silently.
//! - [`Proxy`] forwards one loopback port to etcd and can freeze every
//!   connection through it: one agent is cut off (its connections stay
//!   open and silent, as with a frozen server or a partition) while the
//!   rest of the fleet keeps writing.
//!
//! Nothing here is for production: it must never be reachable from the
//! agent's normal code paths.

mod proxy;
mod server;

pub use proxy::Proxy;
pub use server::{EtcdServer, unique_prefix};
