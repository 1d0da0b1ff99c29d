//! The hosted runtimes: one supervised worker per runtime ([`worker`]), one
//! hook driver per runtime with hooks ([`hooks`]), what the API reads about
//! them ([`Hosted`], [`Registry`]), and the manager that applies config
//! changes ([`Manager`]).
//!
//! Each runtime is an [`Aggregate`](steward_host::Aggregate) of its
//! versions, owned by the worker `runtime/<id>` in the agent's runner and
//! reconciled with the desired version in the store. This module must
//! never serve HTTP or parse files; a runtime's failure must never reach
//! the agent's other workers (the worker's errors are not fatal: the
//! runner restarts it with backoff).

mod hooks;
mod hosted;
mod hosts;
mod manager;
mod registry;
#[cfg(test)]
mod tests;
mod track;
mod worker;

use std::sync::Arc;

use steward_store::{DesiredState, Store};

pub(crate) use hooks::HookServices;
pub(crate) use hosted::{HookActivity, HookRequest, Hosted, LastHook, RuntimeStatus};
pub(crate) use hosts::{Hosts, ProcessHosts};
pub(crate) use manager::Manager;
pub(crate) use registry::Registry;

/// Whose desired state it is, which decides whether an agent may correct
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DesiredScope {
    /// This agent's alone: a desired version the config lacks becomes the
    /// config's `active`, and a failed switch puts back the version that
    /// still runs, so desired state always names something that works.
    Local,
    /// A fleet's, shared by many agents: an agent never corrects it (the
    /// others may have the version, or have switched to it); it keeps what
    /// runs and reports the problem in its status.
    Fleet,
}

use crate::events::EventBus;
use crate::relations::Relations;

/// What every runtime worker and the manager share.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The agent's own state: hook and relation records, host storage.
    pub(crate) store: Store,
    /// Desired versions: the agent's store, or the fleet's.
    pub(crate) desired: Arc<dyn DesiredState>,
    /// Who else reads and writes [`desired`](Self::desired).
    pub(crate) scope: DesiredScope,
    pub(crate) registry: Arc<Registry>,
    pub(crate) events: EventBus,
    pub(crate) hosts: Arc<dyn Hosts>,
    pub(crate) hooks: Arc<HookServices>,
    pub(crate) relations: Arc<Relations>,
}
