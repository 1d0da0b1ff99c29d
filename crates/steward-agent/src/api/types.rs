//! The API's request and response bodies, shared by the server and the
//! CLI so the two cannot drift apart: a field renamed on one side fails to
//! compile on the other. Plain data only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

pub use steward_hooks::WorkloadState;

pub use crate::config::Transition;
pub use crate::events::{AgentEvent, EventKind};
pub use crate::logs::{LogLine, LogList, LogSource, LogStream};

/// `{"error": {...}}`: the body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error: who raised it, its code, and a message for a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// `steward` for the agent's own errors, else the runtime's module.
    pub module: String,
    /// The HTTP status for the agent's errors, else the runtime's code.
    pub code: u32,
    /// What happened and what to do.
    pub message: String,
}

/// `GET /v1/runtimes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuntimeList {
    /// The runtimes, sorted by id.
    pub runtimes: Vec<RuntimeSummary>,
}

/// Where a runtime is (its wire name in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeState {
    /// Not started yet: its `install` hook has not succeeded (`installing`;
    /// the hooks status says why).
    Installing,
    /// Its worker is starting it: first start, or after a worker restart
    /// (`starting`).
    Starting,
    /// The active version serves calls (`running`).
    Running,
    /// The active version's process died; the host restarts it
    /// (`restarting`).
    Restarting,
    /// Its worker failed and waits to be restarted (`failed`).
    Failed,
    /// Stopped: the agent is shutting down, or it left the config
    /// (`stopped`).
    Stopped,
}

impl RuntimeState {
    /// Its wire name, e.g. `running`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeState::Installing => "installing",
            RuntimeState::Starting => "starting",
            RuntimeState::Running => "running",
            RuntimeState::Restarting => "restarting",
            RuntimeState::Failed => "failed",
            RuntimeState::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for RuntimeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a relation lives (its wire name in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RelationLife {
    /// In the config: its units join, change and depart (`alive`).
    Alive,
    /// Gone from the config: its hooks are ending it with relation-departed
    /// and relation-broken; then it is deleted (`dying`).
    Dying,
}

impl RelationLife {
    /// Its wire name, e.g. `alive`.
    pub fn as_str(self) -> &'static str {
        match self {
            RelationLife::Alive => "alive",
            RelationLife::Dying => "dying",
        }
    }
}

impl std::fmt::Display for RelationLife {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One runtime in a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuntimeSummary {
    /// Its id.
    pub id: String,
    /// The version serving calls, if any.
    pub active_version: Option<String>,
    /// The version the store says it should run.
    pub desired_version: Option<String>,
    /// Its configured versions.
    pub versions: Vec<String>,
    /// Where it is.
    pub state: RuntimeState,
}

/// `GET /v1/runtimes/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuntimeDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub summary: RuntimeSummary,
    /// How it switches versions.
    pub transition: Transition,
    /// The deadline of a call, in milliseconds.
    pub call_timeout_ms: u64,
    /// The active version's handshake answer.
    pub info: Option<RuntimeInfo>,
    /// Unexpected exits of its processes since the agent started.
    pub restarts: u64,
    /// The last failure seen (start, exit, switch), if any.
    pub last_error: Option<String>,
    /// When the active version last started (RFC 3339).
    pub started_at: Option<String>,
    /// The process serving each version that has one, by version: the
    /// active version's, and during a switch the other's too.
    #[serde(default)]
    pub processes: Vec<VersionProcess>,
    /// The workload status its hooks set (`status-set`), if any did.
    #[serde(default)]
    pub workload: Option<Workload>,
    /// Its hooks, if it has any.
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// Its relations, by id.
    #[serde(default)]
    pub relations: Vec<RuntimeRelation>,
}

/// One relation of a runtime, as its unit on this agent is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuntimeRelation {
    /// The relation's id.
    pub id: u64,
    /// The runtime's endpoint in it (`db`; hooks name the relation
    /// `db:<id>`).
    pub endpoint: String,
    /// Whether it lives.
    pub state: RelationLife,
    /// The other end, with its units in the relation.
    pub remote: RelationEnd,
    /// The unit's own settings in it, as committed by its hooks.
    pub settings: BTreeMap<String, String>,
}

/// `GET /v1/relations`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RelationList {
    /// The relations, by id.
    pub relations: Vec<RelationSummary>,
}

/// One relation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelationSummary {
    /// Its id, the same on both ends (`db:3` and `store:3`).
    pub id: u64,
    /// Whether it lives.
    pub state: RelationLife,
    /// Whether it is a peer relation (`[[runtime.peer]]`): the units of one
    /// runtime, across the fleet, relate to each other; it then has one
    /// end.
    #[serde(default)]
    pub peer: bool,
    /// Its ends, as the config declares them: two, or one for a peer
    /// relation.
    pub endpoints: Vec<RelationEnd>,
}

/// One end of a relation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelationEnd {
    /// The runtime.
    pub runtime: String,
    /// Its endpoint name.
    pub endpoint: String,
    /// Its units in the relation (those the other end sees), sorted.
    pub units: Vec<String>,
}

/// The process serving one version of a runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionProcess {
    /// The version.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// When it started serving (RFC 3339).
    pub started_at: String,
    /// How long it has served, in milliseconds.
    pub uptime_ms: u64,
}

/// A workload status, as a runtime's hooks set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Workload {
    /// `maintenance`, `blocked`, `waiting`, `active` (or `unknown`).
    #[schema(schema_with = super::openapi::workload_state)]
    pub status: WorkloadState,
    /// What the hook said; may be empty.
    pub message: String,
}

/// Where a runtime's hooks are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hooks {
    /// What they are doing.
    pub state: HooksState,
    /// The hook running, or in error.
    pub hook: Option<String>,
    /// Why the hook in error failed (`hook "install" failed: exit status 1`).
    pub message: Option<String>,
    /// Whether `install` has succeeded (the runtime starts only then).
    pub installed: bool,
    /// The last hook that ended.
    pub last: Option<LastHook>,
}

/// What a runtime's hooks are doing (the wire name in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HooksState {
    /// No hook is due (`idle`).
    Idle,
    /// A hook runs (`running`).
    Running,
    /// A hook failed; later hooks wait until it is retried successfully or
    /// resolved (`error`).
    Error,
}

/// How the last hook run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LastHook {
    /// The hook.
    pub hook: String,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// What happened, for people.
    pub outcome: String,
    /// Its exit code, if it exited.
    pub exit_code: Option<i32>,
    /// How long it ran.
    pub duration_ms: u64,
    /// When it ended (RFC 3339).
    pub finished_at: String,
}

/// `POST /v1/runtimes/{id}/resolve`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResolveRequest {
    /// Run the failed hook again now (`true`, the default), or mark it
    /// done without running it (`false`; its changes are dropped).
    #[serde(default = "yes")]
    pub retry: bool,
}

fn yes() -> bool {
    true
}

/// A resolved hook.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResolveResponse {
    /// The runtime.
    pub id: String,
    /// The hook that was in error.
    pub hook: String,
    /// Whether it is run again (else it was marked done).
    pub retried: bool,
}

/// A runtime's handshake answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuntimeInfo {
    /// The protocol version it speaks, `major.minor`.
    pub protocol_version: String,
    /// The version it reported.
    pub runtime_version: String,
    /// What it said it supports.
    pub features: Vec<String>,
}

/// `POST /v1/runtimes/{id}/call`.
///
/// Arguments and answers are JSON text, not `serde_json::Value`, which
/// would turn an integer beyond 64 bits into a float.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallRequest {
    /// The runtime's method.
    #[schema(example = "echo")]
    pub method: String,
    /// Its arguments (any JSON; `None` and `null` are CBOR `null`).
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>, example = json!([1, "two", {"three": 3.5}]))]
    pub args: Option<Box<RawValue>>,
}

/// A successful call.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallResponse {
    /// The runtime's answer (any JSON).
    #[schema(value_type = serde_json::Value)]
    pub result: Box<RawValue>,
}

/// `PUT /v1/runtimes/{id}/version`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionRequest {
    /// The version to switch to.
    #[schema(example = "1.0.0")]
    pub version: String,
    /// Whether to answer only once this agent's switch is done (the
    /// default). With `false` the answer comes as soon as desired state
    /// says `version` (202), and the switch goes on.
    #[serde(default = "waits", skip_serializing_if = "is_true")]
    #[schema(default = true)]
    pub wait: bool,
}

fn waits() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// A completed switch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionResponse {
    /// The runtime.
    pub id: String,
    /// The version now active.
    pub version: String,
    /// The version active before, if any.
    pub previous: Option<String>,
    /// False when the request did not wait (`wait: false`): desired state
    /// says `version`, and the switch goes on.
    #[serde(default = "waits")]
    pub done: bool,
    /// Whether desired state is the fleet's: every agent's unit of the
    /// runtime switches, and `GET /v1/fleet` shows how far they are.
    #[serde(default)]
    pub fleet: bool,
}

/// `POST /v1/runtimes/{id}/abort`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AbortRequest {
    /// Kill and restart the process instead of asking it.
    #[serde(default)]
    pub force: bool,
}

/// The data of an `event: lagged` message: the reader fell behind and
/// missed this many events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lagged {
    /// How many events it missed.
    pub missed: u64,
}

/// A done abort.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AbortResponse {
    /// The runtime.
    pub id: String,
    /// Whether the request asked to kill the process (`force`).
    pub force: bool,
    /// What was done: a gentle abort may still end in a kill.
    pub outcome: AbortOutcome,
}

/// What an abort did (its wire name in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AbortOutcome {
    /// The runtime abandoned its calls in progress, and the same process
    /// serves on (`abandoned`).
    Abandoned,
    /// The process was killed and is restarting: asked with `force`, or
    /// the runtime refused the abort or did not answer it within its
    /// `abort-timeout`, 1 s by default (`killed`).
    Killed,
    /// No process was serving (it was starting or restarting): nothing
    /// was aborted (`not_running`).
    NotRunning,
}

impl From<steward_host::Aborted> for AbortOutcome {
    fn from(aborted: steward_host::Aborted) -> Self {
        match aborted {
            steward_host::Aborted::Abandoned => AbortOutcome::Abandoned,
            steward_host::Aborted::Killed => AbortOutcome::Killed,
            steward_host::Aborted::NotRunning => AbortOutcome::NotRunning,
        }
    }
}

/// `GET /healthz`: the agent answers (200) whenever it runs; `degraded`
/// says a part of it does not work fully (it keeps serving calls).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: HealthStatus,
    /// The store, when it refuses writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreProblem>,
    /// In a fleet: whether etcd answers. A disconnected agent is still
    /// healthy: it serves every runtime at its last known desired version
    /// and catches up when etcd is back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetConnection>,
    /// In a fleet, while disconnected: since when (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_since: Option<String>,
    /// In a fleet, while disconnected: the first failure of the outage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_reason: Option<String>,
}

/// Whether a fleet agent reaches etcd (the wire name in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FleetConnection {
    /// etcd answers (`connected`).
    Connected,
    /// etcd does not answer; the agent retries with backoff
    /// (`disconnected`).
    Disconnected,
}

/// A unit's status as its agent publishes it to the fleet: the value of
/// the key `<prefix>units/<runtime>/<agent>` in etcd, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnitStatus {
    /// The version serving calls on that agent, if any.
    pub active_version: Option<String>,
    /// The desired version as that agent last read it.
    pub desired_version: Option<String>,
    /// Where the runtime is on that agent.
    pub state: RuntimeState,
    /// Unexpected exits of its processes since that agent started.
    pub restarts: u64,
    /// What its hooks are doing, if it has hooks.
    #[serde(default)]
    pub hooks: Option<HooksState>,
    /// The last failure on that agent (a desired version its config lacks,
    /// a failed switch), if any.
    #[serde(default)]
    pub error: Option<String>,
}

/// `GET /v1/fleet` (and `steward fleet status --json`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FleetStatus {
    /// Every live unit of the fleet, sorted by name.
    pub units: Vec<FleetUnit>,
}

/// One unit of the fleet: a runtime on one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FleetUnit {
    /// `<runtime>/<agent>`.
    pub unit: String,
    /// The agent that runs it.
    pub agent: String,
    /// The runtime.
    pub runtime: String,
    /// The version serving calls there, if any.
    pub active_version: Option<String>,
    /// The desired version as that agent last read it.
    pub desired_version: Option<String>,
    /// Where the runtime is there; `null` when its status could not be
    /// read (an agent of another Steward version).
    pub state: Option<RuntimeState>,
    /// What its hooks are doing, if it has hooks.
    pub hooks: Option<HooksState>,
    /// The last failure there, if any.
    pub error: Option<String>,
    /// When its agent was last heard from (RFC 3339), if etcd could say.
    pub last_seen: Option<String>,
}

/// Whether the agent works fully (the wire name in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything works (`ok`).
    Ok,
    /// Calls are served, but something is wrong (`degraded`).
    Degraded,
}

/// Why the store refuses writes (a full disk, an I/O error); the agent
/// reopens it by itself once it can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreProblem {
    /// Since when (RFC 3339).
    pub since: String,
    /// The failure.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_their_wire_names() {
        for state in [
            RuntimeState::Installing,
            RuntimeState::Starting,
            RuntimeState::Running,
            RuntimeState::Restarting,
            RuntimeState::Failed,
            RuntimeState::Stopped,
        ] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
        }
        for life in [RelationLife::Alive, RelationLife::Dying] {
            let json = serde_json::to_string(&life).unwrap();
            assert_eq!(json, format!("\"{life}\""));
        }
    }
}
