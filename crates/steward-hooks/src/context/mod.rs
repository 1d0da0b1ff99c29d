//! What a hook's commands run against: one [`HookContext`] per hook run,
//! holding what the hook may read (unit info, a settings snapshot), what it
//! changed (buffered until the hook succeeded: [`Changes`]), and the
//! agent's [`ContextBackend`] for everything else.
//!
//! The context owns the *rules* (a hook reads its own buffered writes;
//! changes are only handed out, never applied here). It must never persist
//! anything itself: the agent commits [`Changes`] together with the hook's
//! completion, and only if the hook succeeded.

mod backend;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use steward_worker::BoxError;

pub use backend::{ContextBackend, LogLevel, UnknownLogLevel, WorkloadState, WorkloadStatus};

use crate::{Error, HookInfo};

/// Who the hook runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitInfo {
    /// The runtime's id (`kv`).
    pub runtime: String,
    /// The unit's name, `<runtime>/<agent>` (`kv/agent-1`).
    pub unit: String,
    /// The runtime's active version.
    pub version: String,
}

/// What a hook changed, to be committed by the agent only if the hook
/// succeeded (and then together with the hook's completion).
///
/// Relation settings will join the unit state here.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Changes {
    /// Unit state writes by key: `Some(value)` sets, `None` deletes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state: BTreeMap<String, Option<String>>,
}

impl Changes {
    /// Whether the hook changed nothing.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// Applies the unit state writes to `state` (what the store does when
    /// it commits them).
    pub fn apply_state(&self, state: &mut BTreeMap<String, String>) {
        for (key, value) in &self.state {
            match value {
                Some(value) => state.insert(key.clone(), value.clone()),
                None => state.remove(key),
            };
        }
    }
}

/// One hook run's context.
#[derive(Debug)]
pub struct HookContext {
    unit: UnitInfo,
    hook: HookInfo,
    hook_name: String,
    endpoint: Option<String>,
    settings: Map<String, Value>,
    backend: Arc<dyn ContextBackend>,
    changes: Changes,
}

impl HookContext {
    /// A context for running `hook` for `unit`. `endpoint` is the relation's
    /// endpoint name, which relation hooks need (their file name is
    /// `<endpoint>-<kind>`). Fails if the hook description is incomplete
    /// ([`HookInfo::validate`]).
    pub fn new(
        unit: UnitInfo,
        hook: HookInfo,
        endpoint: Option<&str>,
        backend: Arc<dyn ContextBackend>,
    ) -> Result<Self, Error> {
        hook.validate()?;
        let hook_name = hook.file_name(endpoint)?;
        Ok(Self {
            unit,
            endpoint: endpoint
                .filter(|_| hook.kind.is_relation())
                .map(String::from),
            hook,
            hook_name,
            settings: Map::new(),
            backend,
            changes: Changes::default(),
        })
    }

    /// Sets the snapshot of the runtime's settings (`[runtime.settings]`)
    /// that `config-get` prints. Taken once per hook, so a hook sees one
    /// consistent configuration however long it runs.
    #[must_use]
    pub fn with_settings(mut self, settings: Map<String, Value>) -> Self {
        self.settings = settings;
        self
    }

    /// Who the hook runs for.
    pub fn unit(&self) -> &UnitInfo {
        &self.unit
    }

    /// The hook being run.
    pub fn hook(&self) -> &HookInfo {
        &self.hook
    }

    /// The hook's file name (`install`, `db-relation-joined`).
    pub fn hook_name(&self) -> &str {
        &self.hook_name
    }

    /// The relation's endpoint name, in a relation hook.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// In a relation hook, the relation as juju names it in messages and
    /// `-r` flags: `<endpoint>:<relation id>` (juju's `FakeId`).
    pub fn relation_label(&self) -> Option<String> {
        Some(format!("{}:{}", self.endpoint()?, self.hook.relation_id?))
    }

    /// The settings snapshot.
    pub fn settings(&self) -> &Map<String, Value> {
        &self.settings
    }

    /// The agent's side of the context.
    pub fn backend(&self) -> &Arc<dyn ContextBackend> {
        &self.backend
    }

    /// The unit state as this hook sees it: the persisted state with the
    /// hook's own buffered writes applied.
    pub async fn state(&self) -> Result<BTreeMap<String, String>, BoxError> {
        let mut state = self.backend.unit_state().await?;
        self.changes.apply_state(&mut state);
        Ok(state)
    }

    /// One unit state value as this hook sees it; the hook's own buffered
    /// write (or delete) wins without asking the backend.
    pub async fn state_value(&self, key: &str) -> Result<Option<String>, BoxError> {
        if let Some(buffered) = self.changes.state.get(key) {
            return Ok(buffered.clone());
        }
        Ok(self.backend.unit_state().await?.remove(key))
    }

    /// Buffers a unit state write.
    pub fn set_state(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.changes.state.insert(key.into(), Some(value.into()));
    }

    /// Buffers a unit state delete.
    pub fn delete_state(&mut self, key: impl Into<String>) {
        self.changes.state.insert(key.into(), None);
    }

    /// What the hook changed so far.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Takes what the hook changed, leaving nothing buffered. The agent
    /// commits the result only if the hook succeeded, and drops it
    /// otherwise.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// Ends the context and hands out what the hook changed.
    pub fn finish(self) -> Changes {
        self.changes
    }
}
