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
//! - [`lifecycle`]: which hook is due next, and the steps that make a hook
//!   run crash-safe (the record the agent persists).
//! - [`relation`]: what a unit's hooks have seen of a relation (the state
//!   the agent persists), and the queues that turn a watch of its units
//!   into relation hooks with juju's ordering guarantees.
//! - [`runner`]: runs one hook as a process in its own process group, with
//!   a timeout, output by line, and cancellation.
//! - [`leader`]: the helper process that makes sure no hook process
//!   outlives the agent.
//!
//! This crate descends from juju's uniter `hook`, `jujuc` and `relation`
//! packages; it knows nothing of HTTP, redb or etcd. The agent decides when
//! hooks run, computes their environment and persists their results.
//!
//! # Driving a hook run (what the agent does)
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::time::Duration;
//! # use steward_hooks::{HookContext, HookInfo, HookKind, UnitInfo, ContextBackend};
//! # use steward_hooks::runner::{run_hook, HookSpec};
//! # use steward_hooks::tool::ToolServer;
//! # async fn example(backend: Arc<dyn ContextBackend>) -> Result<(), steward_hooks::Error> {
//! let server = ToolServer::builtin(Default::default()).await?; // one per agent
//! let unit = UnitInfo { runtime: "kv".into(), unit: "kv/a1".into(), version: "2".into() };
//! let context = HookContext::new(unit, HookInfo::unit(HookKind::Install), None, backend)?;
//! let registration = server.register(context);
//! let mut spec = HookSpec::new("/srv/kv/hooks", "install", "/srv/kv", Duration::from_secs(600));
//! spec.env.extend(registration.env().into_iter().map(|(k, v)| (k.into(), v.into())));
//! let report = run_hook(&spec, &Default::default(), |line| println!("{line:?}")).await;
//! let changes = registration.finish().await.finish();
//! if report.succeeded() {
//!     // commit `changes` with the hook's completion, in one transaction
//! }
//! # drop(changes); Ok(()) }
//! ```

mod context;
mod error;
mod kind;
pub mod leader;
pub mod lifecycle;
pub mod relation;
pub mod runner;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod tool;

pub use context::{
    Changes, ContextBackend, HookContext, LogLevel, RelationInfo, UnitInfo, UnknownLogLevel,
    WorkloadState, WorkloadStatus,
};
pub use error::Error;
pub use kind::{HookInfo, HookKind};
