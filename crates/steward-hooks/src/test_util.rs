//! Helpers for testing code that runs hooks (behind the `test-util`
//! feature): an in-memory [`ContextBackend`] that records what hooks did.
//!
//! Never used by the agent itself; nothing here is persistent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use steward_worker::{BoxError, BoxFuture};

use crate::{Changes, ContextBackend, LogLevel, WorkloadStatus};

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
}

/// An in-memory [`ContextBackend`]: unit state in a map, status and logs
/// recorded, runtime calls answered by a handler (by default, an echo of
/// `{"method": …, "args": …}`). Clones share the same state.
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

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits a hook's changes, as the agent's store would.
    pub fn commit(&self, changes: &Changes) {
        changes.apply_state(&mut self.lock().unit_state);
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
}
