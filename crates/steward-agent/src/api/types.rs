//! The API's request and response bodies, shared by the server and the
//! CLI so the two cannot drift apart. Plain data only.

use serde::{Deserialize, Serialize};

/// `{"error": {...}}`: the body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error: who raised it, its code, and a message for a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `steward` for the agent's own errors, else the runtime's module.
    pub module: String,
    /// The HTTP status for the agent's errors, else the runtime's code.
    pub code: u32,
    /// What happened and what to do.
    pub message: String,
}

/// `GET /v1/runtimes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeList {
    /// The runtimes, sorted by id.
    pub runtimes: Vec<RuntimeSummary>,
}

/// One runtime in a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeSummary {
    /// Its id.
    pub id: String,
    /// The version serving calls, if any.
    pub active_version: Option<String>,
    /// The version the store says it should run.
    pub desired_version: Option<String>,
    /// Its configured versions.
    pub versions: Vec<String>,
    /// `starting`, `running`, `restarting`, `failed` or `stopped`.
    pub state: String,
}

/// `GET /v1/runtimes/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub summary: RuntimeSummary,
    /// `make-before-break` or `stop-then-start`.
    pub transition: String,
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
}

/// A runtime's handshake answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// The protocol version it speaks, `major.minor`.
    pub protocol_version: String,
    /// The version it reported.
    pub runtime_version: String,
    /// What it said it supports.
    pub features: Vec<String>,
}

/// `POST /v1/runtimes/{id}/call`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallRequest {
    /// The runtime's method.
    pub method: String,
    /// Its arguments (any JSON; `null` when left out).
    #[serde(default)]
    pub args: serde_json::Value,
}

/// A successful call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallResponse {
    /// The runtime's answer.
    pub result: serde_json::Value,
}

/// `PUT /v1/runtimes/{id}/version`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRequest {
    /// The version to switch to.
    pub version: String,
}

/// A completed switch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionResponse {
    /// The runtime.
    pub id: String,
    /// The version now active.
    pub version: String,
    /// The version active before, if any.
    pub previous: Option<String>,
}

/// `POST /v1/runtimes/{id}/abort`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AbortRequest {
    /// Kill and restart the process instead of asking it.
    #[serde(default)]
    pub force: bool,
}

/// A done abort.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbortResponse {
    /// The runtime.
    pub id: String,
    /// Whether the process was killed and restarted on request.
    pub force: bool,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
}
