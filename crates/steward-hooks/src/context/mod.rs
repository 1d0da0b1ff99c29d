//! What a hook's commands run against: one [`HookContext`] per hook run,
//! holding what the hook may read (unit info, a settings snapshot), what it
//! changed (buffered until the hook succeeded: [`Changes`]), and the
//! agent's [`ContextBackend`] for everything else.
//!
//! The context owns the *rules* (a hook reads its own buffered writes; a
//! relation hook sees its relation's membership as of the hook: a joining
//! unit is a member, a departing one is not; changes are only handed out,
//! never applied here). It must never persist
//! anything itself: the agent commits [`Changes`] together with the hook's
//! completion, and only if the hook succeeded.

mod backend;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use steward_worker::BoxError;

pub use backend::{
    ContextBackend, LogLevel, RelationInfo, UnknownLogLevel, WorkloadState, WorkloadStatus,
};

use crate::{Error, HookInfo, HookKind};

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
/// succeeded (and then together with the hook's completion): unit state
/// and this unit's settings in its relations.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Changes {
    /// Unit state writes by key: `Some(value)` sets, `None` deletes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state: BTreeMap<String, Option<String>>,
    /// This unit's relation settings writes, by relation id then key:
    /// `Some(value)` sets, `None` deletes (`relation-set key=`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub relation_settings: BTreeMap<u64, BTreeMap<String, Option<String>>>,
}

impl Changes {
    /// Whether the hook wrote nothing (a write may still leave a value as
    /// it was: see [`changes_relation`](Self::changes_relation)).
    pub fn is_empty(&self) -> bool {
        self.state.is_empty() && self.relation_settings.is_empty()
    }

    /// Applies the writes to relation `relation_id` to `settings` (this
    /// unit's settings in it, as committed); returns whether they changed.
    pub fn apply_relation(
        &self,
        relation_id: u64,
        settings: &mut BTreeMap<String, String>,
    ) -> bool {
        let mut changed = false;
        for (key, value) in self
            .relation_settings
            .get(&relation_id)
            .into_iter()
            .flatten()
        {
            changed |= match value {
                Some(value) => settings.insert(key.clone(), value.clone()).as_ref() != Some(value),
                None => settings.remove(key).is_some(),
            };
        }
        changed
    }

    /// Whether the writes to relation `relation_id` would change
    /// `settings`. The agent bumps the unit's change version in a relation
    /// (so that the other side runs relation-changed) only when they do:
    /// a `relation-set` that sets what is already there changes nothing.
    pub fn changes_relation(&self, relation_id: u64, settings: &BTreeMap<String, String>) -> bool {
        self.relation_settings
            .get(&relation_id)
            .into_iter()
            .flatten()
            .any(|(key, value)| settings.get(key) != value.as_ref())
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

    /// The relation a relation hook is about.
    pub fn relation_id(&self) -> Option<u64> {
        self.hook
            .relation_id
            .filter(|_| self.hook.kind.is_relation())
    }

    /// The remote unit a joined, changed or departed hook is about (none in
    /// relation-broken, which is about the whole relation).
    pub fn remote_unit(&self) -> Option<&str> {
        let about_a_unit =
            self.hook.kind.is_relation() && self.hook.kind != HookKind::RelationBroken;
        self.hook
            .remote_unit
            .as_deref()
            .filter(|unit| about_a_unit && !unit.is_empty())
    }

    /// The relations the unit is in, by id.
    pub async fn relations(&self) -> Result<Vec<RelationInfo>, BoxError> {
        let mut relations = self.backend.relations().await?;
        relations.sort_by_key(|relation| relation.id);
        relations.dedup_by_key(|relation| relation.id);
        Ok(relations)
    }

    /// Whether a `-r` may name `relation_id`: a relation the unit is in, or
    /// the hook's own (which the agent may no longer list while it runs
    /// relation-broken).
    pub async fn knows_relation(&self, relation_id: u64) -> Result<bool, BoxError> {
        if self.relation_id() == Some(relation_id) {
            return Ok(true);
        }
        Ok(self
            .backend
            .relations()
            .await?
            .iter()
            .any(|relation| relation.id == relation_id))
    }

    /// The relation's remote members as this hook sees them, sorted: the
    /// committed members, plus the unit a joined hook is about, minus the
    /// unit a departed hook is about (juju's `relation-list`, which omits
    /// the departing unit although `relation-get` still reads it).
    pub async fn relation_members(&self, relation_id: u64) -> Result<Vec<String>, BoxError> {
        let mut members: std::collections::BTreeSet<String> = self
            .backend
            .relation_members(relation_id)
            .await?
            .into_iter()
            .collect();
        if self.relation_id() == Some(relation_id)
            && let Some(unit) = self.remote_unit()
        {
            match self.hook.kind {
                HookKind::RelationDeparted => members.remove(unit),
                _ => members.insert(unit.to_owned()),
            };
        }
        members.remove(&self.unit.unit);
        Ok(members.into_iter().collect())
    }

    /// A unit's settings in a relation as this hook sees them; `None` if
    /// the relation has none for that unit. This unit's own settings always
    /// exist (empty at first) and include the hook's buffered writes.
    pub async fn relation_settings(
        &self,
        relation_id: u64,
        unit: &str,
    ) -> Result<Option<BTreeMap<String, String>>, BoxError> {
        let committed = self.backend.relation_settings(relation_id, unit).await?;
        if unit != self.unit.unit {
            return Ok(committed);
        }
        let mut settings = committed.unwrap_or_default();
        self.changes.apply_relation(relation_id, &mut settings);
        Ok(Some(settings))
    }

    /// Buffers writes to this unit's settings in a relation (`Some` sets,
    /// `None` deletes). Refused for the relation a relation-broken hook is
    /// about: it is gone, and no unit would read them.
    pub fn set_relation_settings(
        &mut self,
        relation_id: u64,
        writes: impl IntoIterator<Item = (String, Option<String>)>,
    ) -> Result<(), Error> {
        if self.hook.kind == HookKind::RelationBroken && self.relation_id() == Some(relation_id) {
            return Err(Error::RelationSetInBroken {
                relation: self
                    .relation_label()
                    .unwrap_or_else(|| relation_id.to_string()),
            });
        }
        let mut writes = writes.into_iter().peekable();
        if writes.peek().is_some() {
            self.changes
                .relation_settings
                .entry(relation_id)
                .or_default()
                .extend(writes);
        }
        Ok(())
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
