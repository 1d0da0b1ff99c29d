//! Helpers for testing code that runs hooks (behind the `test-util`
//! feature): an in-memory [`ContextBackend`] that records what hooks did,
//! with relations, members and settings scripted by the test.
//!
//! Never used by the agent itself; nothing here is persistent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use steward_worker::{BoxError, BoxFuture};

use crate::{Changes, ContextBackend, LogLevel, RelationInfo, WorkloadStatus};

/// A runtime call handler: method and arguments to a result or an error
/// message.
pub type CallHandler = dyn Fn(&str, Value) -> Result<Value, String> + Send + Sync;

/// One `juju-log` message as the backend received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level.
    pub level: LogLevel,
    /// The hook's file name.
    pub hook: String,
    /// The message (with the relation prefix, in relation hooks).
    pub message: String,
}

#[derive(Debug, Default)]
struct State {
    unit_state: BTreeMap<String, String>,
    status: WorkloadStatus,
    statuses: Vec<WorkloadStatus>,
    logs: Vec<LogRecord>,
    calls: Vec<(String, Value)>,
    unit: String,
    relations: BTreeMap<u64, RelationInfo>,
    members: BTreeMap<u64, BTreeSet<String>>,
    relation_settings: BTreeMap<(u64, String), BTreeMap<String, String>>,
}

/// An in-memory [`ContextBackend`]: unit state in a map, status and logs
/// recorded, runtime calls answered by a handler (by default, an echo of
/// `{"method": …, "args": …}`), relations with their members and every
/// unit's settings as scripted. Clones share the same state.
#[derive(Clone)]
pub struct MemoryBackend {
    state: Arc<Mutex<State>>,
    handler: Arc<CallHandler>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("state", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty backend with the echo call handler.
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            handler: Arc::new(|method, args| {
                Ok(serde_json::json!({"method": method, "args": args}))
            }),
        }
    }

    /// This backend with `handler` answering runtime calls.
    #[must_use]
    pub fn with_runtime(
        mut self,
        handler: impl Fn(&str, Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        self.handler = Arc::new(handler);
        self
    }

    /// This backend with a persisted unit state.
    #[must_use]
    pub fn with_state<K: Into<String>, V: Into<String>>(
        self,
        state: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.lock().unit_state = state
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }

    /// This backend's own unit: where [`commit`](Self::commit) writes the
    /// hook's relation settings.
    #[must_use]
    pub fn with_unit(self, unit: impl Into<String>) -> Self {
        self.lock().unit = unit.into();
        self
    }

    /// This backend with the unit in relation `id`, at `endpoint`, to the
    /// runtime `remote`.
    #[must_use]
    pub fn with_relation(self, id: u64, endpoint: &str, remote: &str) -> Self {
        self.lock().relations.insert(
            id,
            RelationInfo {
                id,
                endpoint: endpoint.into(),
                remote: remote.into(),
            },
        );
        self
    }

    /// This backend with `unit` a member of relation `id`, with `settings`.
    #[must_use]
    pub fn with_member<K: Into<String>, V: Into<String>>(
        self,
        id: u64,
        unit: &str,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.lock()
            .members
            .entry(id)
            .or_default()
            .insert(unit.into());
        self.with_relation_settings(id, unit, settings)
    }

    /// This backend with `unit`'s settings in relation `id` (a member's, a
    /// non-member's, or the own unit's committed ones).
    #[must_use]
    pub fn with_relation_settings<K: Into<String>, V: Into<String>>(
        self,
        id: u64,
        unit: &str,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.lock().relation_settings.insert(
            (id, unit.into()),
            settings
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// `unit` is no longer a member of relation `id`; its settings stay
    /// readable (as for a unit departing in the current hook).
    pub fn depart(&self, id: u64, unit: &str) {
        if let Some(members) = self.lock().members.get_mut(&id) {
            members.remove(unit);
        }
    }

    /// `unit`'s settings in relation `id` now.
    pub fn relation_settings_now(&self, id: u64, unit: &str) -> Option<BTreeMap<String, String>> {
        self.lock()
            .relation_settings
            .get(&(id, unit.to_owned()))
            .cloned()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits a hook's changes, as the agent's store would: the unit
    /// state, and the relation settings of the unit set by
    /// [`with_unit`](Self::with_unit).
    pub fn commit(&self, changes: &Changes) {
        let mut state = self.lock();
        changes.apply_state(&mut state.unit_state);
        let unit = state.unit.clone();
        for &id in changes.relation_settings.keys() {
            let settings = state
                .relation_settings
                .entry((id, unit.clone()))
                .or_default();
            changes.apply_relation(id, settings);
        }
    }

    /// The persisted unit state.
    pub fn unit_state_now(&self) -> BTreeMap<String, String> {
        self.lock().unit_state.clone()
    }

    /// The current workload status.
    pub fn status_now(&self) -> WorkloadStatus {
        self.lock().status.clone()
    }

    /// Every status set, in order.
    pub fn statuses(&self) -> Vec<WorkloadStatus> {
        self.lock().statuses.clone()
    }

    /// Every message logged, in order.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.lock().logs.clone()
    }

    /// Every runtime call made, in order.
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.lock().calls.clone()
    }
}

impl ContextBackend for MemoryBackend {
    fn unit_state(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>, BoxError>> {
        let state = self.lock().unit_state.clone();
        Box::pin(async move { Ok(state) })
    }

    fn set_status(&self, status: WorkloadStatus) -> BoxFuture<'_, Result<(), BoxError>> {
        let mut state = self.lock();
        state.status = status.clone();
        state.statuses.push(status);
        Box::pin(async { Ok(()) })
    }

    fn status(&self) -> BoxFuture<'_, Result<WorkloadStatus, BoxError>> {
        let status = self.lock().status.clone();
        Box::pin(async move { Ok(status) })
    }

    fn log(&self, level: LogLevel, hook: &str, message: &str) {
        self.lock().logs.push(LogRecord {
            level,
            hook: hook.into(),
            message: message.into(),
        });
    }

    fn runtime_call<'a>(
        &'a self,
        method: &'a str,
        args: Value,
    ) -> BoxFuture<'a, Result<Value, BoxError>> {
        self.lock().calls.push((method.into(), args.clone()));
        let result = (self.handler)(method, args).map_err(BoxError::from);
        Box::pin(async move { result })
    }

    fn relations(&self) -> BoxFuture<'_, Result<Vec<RelationInfo>, BoxError>> {
        let relations = self.lock().relations.values().cloned().collect();
        Box::pin(async move { Ok(relations) })
    }

    fn relation_members(&self, relation_id: u64) -> BoxFuture<'_, Result<Vec<String>, BoxError>> {
        let members = self
            .lock()
            .members
            .get(&relation_id)
            .map(|members| members.iter().cloned().collect())
            .unwrap_or_default();
        Box::pin(async move { Ok(members) })
    }

    fn relation_settings<'a>(
        &'a self,
        relation_id: u64,
        unit: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, BoxError>> {
        let settings = self.relation_settings_now(relation_id, unit);
        Box::pin(async move { Ok(settings) })
    }
}
