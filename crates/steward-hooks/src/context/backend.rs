//! What only the agent can do for a hook's commands, as a trait the agent
//! implements over its stores and hosts ([`ContextBackend`]), and the
//! values that cross it (workload status, log levels, relations).
//!
//! This module must never depend on how the agent stores or hosts
//! anything: no HTTP, redb or etcd types appear here.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_worker::{BoxError, BoxFuture};

/// The agent's side of a hook context: persisted unit state, workload
/// status, hook logs, calls into the runtime, and the unit's relations.
///
/// One backend may serve many hook runs (the agent may create one per run
/// or share one per runtime); every method is about the runtime and unit
/// the context was built for. Errors are printed to the hook as
/// `error: <error>` (exit code 1), so they should say what went wrong in
/// the user's terms.
///
/// The relation methods have defaults that describe a unit in no relation,
/// so that an agent without relations need not implement them.
pub trait ContextBackend: Send + Sync + fmt::Debug {
    /// The unit's persisted state (`state-get`), as last committed. A
    /// hook's own `state-set`s are not in it until the hook succeeded.
    fn unit_state(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>, BoxError>>;

    /// Sets the workload status now (`status-set` is not buffered: a hook
    /// reports progress while it runs, and a failing hook's last status is
    /// what the operator needs to see).
    fn set_status(&self, status: WorkloadStatus) -> BoxFuture<'_, Result<(), BoxError>>;

    /// The current workload status (`status-get`).
    fn status(&self) -> BoxFuture<'_, Result<WorkloadStatus, BoxError>>;

    /// Logs a hook's message (`juju-log`), under the runtime and `hook`
    /// (the hook's file name, e.g. `db-relation-joined`).
    fn log(&self, level: LogLevel, hook: &str, message: &str);

    /// Calls `method` on the runtime's active version (`runtime-call`),
    /// with `args` as given on the command line (JSON).
    fn runtime_call<'a>(
        &'a self,
        method: &'a str,
        args: Value,
    ) -> BoxFuture<'a, Result<Value, BoxError>>;

    /// The relations the unit is in (`relation-ids`, and the ids `-r`
    /// accepts), in any order. A relation whose `relation-broken` hook is
    /// running may be left out: the hook's own relation is always accepted
    /// by `-r`.
    fn relations(&self) -> BoxFuture<'_, Result<Vec<RelationInfo>, BoxError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The remote units that are members of the relation as this unit's
    /// hooks have seen them (`relation-list`): the members of the
    /// relation's committed [`RelationState`](crate::relation::RelationState).
    /// The context adjusts the list for the hook it runs (a joining unit
    /// is added, a departing one left out), so the backend need not.
    fn relation_members(&self, relation_id: u64) -> BoxFuture<'_, Result<Vec<String>, BoxError>> {
        Box::pin(async move {
            Err(BoxError::from(format!(
                "relation {relation_id}: this agent does not support relations"
            )))
        })
    }

    /// A unit's committed settings in the relation (`relation-get`);
    /// `None` if the relation has none for that unit. For this unit itself,
    /// its settings as last committed (the context applies the hook's own
    /// writes). A unit departing in the current `relation-departed` hook
    /// must still be readable: the hook needs its last settings to clean
    /// up after it.
    fn relation_settings<'a>(
        &'a self,
        relation_id: u64,
        unit: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, BoxError>> {
        Box::pin(async move {
            Err(BoxError::from(format!(
                "cannot read {unit:?}'s settings in relation {relation_id}: \
                 this agent does not support relations"
            )))
        })
    }
}

/// One relation a unit is in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RelationInfo {
    /// The relation's id.
    pub id: u64,
    /// This unit's endpoint in it (`db`): what hook file names and
    /// `relation-ids` use.
    pub endpoint: String,
    /// The runtime (application) at the other end; this unit's own runtime
    /// for a peer relation.
    pub remote: String,
}

impl RelationInfo {
    /// The relation as juju names it in messages and `-r` flags:
    /// `<endpoint>:<id>` (juju's `FakeId`).
    pub fn label(&self) -> String {
        format!("{}:{}", self.endpoint, self.id)
    }
}

/// A unit's workload status, as `status-set` sets it and `status-get`
/// reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadStatus {
    /// The state.
    pub status: WorkloadState,
    /// A message for the operator; may be empty.
    pub message: String,
}

impl WorkloadStatus {
    /// A status with a message.
    pub fn new(status: WorkloadState, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl Default for WorkloadStatus {
    fn default() -> Self {
        Self::new(WorkloadState::Unknown, "")
    }
}

/// Juju's workload states. Hooks set the first four; `unknown` is the state
/// before any hook set one, and `error` is the agent's (a failed hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadState {
    /// The unit is doing work that is not the workload's (installing,
    /// upgrading).
    Maintenance,
    /// The unit needs an operator.
    Blocked,
    /// The unit waits for something outside it (a relation).
    Waiting,
    /// The workload is serving.
    Active,
    /// No hook has set a status yet.
    Unknown,
    /// A hook failed (set by the agent, never by `status-set`).
    Error,
}

impl WorkloadState {
    /// The states `status-set` accepts, in juju's order.
    pub const SETTABLE: [WorkloadState; 4] = [
        WorkloadState::Maintenance,
        WorkloadState::Blocked,
        WorkloadState::Waiting,
        WorkloadState::Active,
    ];

    /// The state's name (`active`).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadState::Maintenance => "maintenance",
            WorkloadState::Blocked => "blocked",
            WorkloadState::Waiting => "waiting",
            WorkloadState::Active => "active",
            WorkloadState::Unknown => "unknown",
            WorkloadState::Error => "error",
        }
    }
}

impl fmt::Display for WorkloadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level of a hook's log message (juju's loggo levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Detailed (`juju-log --debug`).
    Debug,
    /// The default.
    Info,
    /// Something is wrong but the hook carries on.
    Warning,
    /// Something failed.
    Error,
    /// Something failed badly.
    Critical,
}

impl LogLevel {
    /// The level's name (`WARNING`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown log level name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log level {0:?} (use TRACE, DEBUG, INFO, WARNING, ERROR or CRITICAL)")]
pub struct UnknownLogLevel(pub String);

impl FromStr for LogLevel {
    type Err = UnknownLogLevel;

    /// Like loggo's `ParseLevel`: any case, `WARN` for `WARNING`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "TRACE" => Ok(LogLevel::Trace),
            "DEBUG" => Ok(LogLevel::Debug),
            "INFO" => Ok(LogLevel::Info),
            "WARN" | "WARNING" => Ok(LogLevel::Warning),
            "ERROR" => Ok(LogLevel::Error),
            "CRITICAL" => Ok(LogLevel::Critical),
            _ => Err(UnknownLogLevel(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_parse_like_loggo() {
        assert_eq!("warn".parse(), Ok(LogLevel::Warning));
        assert_eq!("Warning".parse(), Ok(LogLevel::Warning));
        assert_eq!("critical".parse(), Ok(LogLevel::Critical));
        assert_eq!(
            "loud".parse::<LogLevel>(),
            Err(UnknownLogLevel("loud".into()))
        );
    }

    #[test]
    fn statuses_serialise_by_name() {
        let status = WorkloadStatus::new(WorkloadState::Active, "ready");
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({"status": "active", "message": "ready"})
        );
        assert_eq!(WorkloadStatus::default().status, WorkloadState::Unknown);
    }
}
