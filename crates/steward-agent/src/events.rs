//! The agent's event stream: what happened to which runtime, when. Every
//! runtime event (`started`, `failed_to_start`, `stopped`, `updated`) and
//! every version switch (`switched`, `switch_failed`) becomes one
//! [`AgentEvent`] on one broadcast channel, read by the API's
//! server-sent-events endpoint and by `steward events`.
//!
//! This module only carries events; it must never block a publisher (a slow
//! reader loses the oldest events and is told so).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// One thing that happened to a runtime, as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEvent {
    /// The runtime's id.
    pub runtime: String,
    /// The version the event is about.
    pub version: String,
    /// `started`, `failed_to_start`, `stopped`, `updated`, `switched` or
    /// `switch_failed`.
    pub kind: String,
    /// When the agent saw it, RFC 3339 (UTC).
    pub time: String,
    /// Details: an exit status, a start error, the previous version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl AgentEvent {
    /// An event stamped now.
    pub fn now(
        runtime: impl Into<String>,
        version: impl Into<String>,
        kind: impl Into<String>,
        message: Option<String>,
    ) -> Self {
        Self {
            runtime: runtime.into(),
            version: version.into(),
            kind: kind.into(),
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            message,
        }
    }

    /// The event as one human-readable line (what `steward events` prints).
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "{}  {:<12} {:<10} {}",
            self.time, self.runtime, self.version, self.kind
        );
        if let Some(message) = &self.message {
            line.push_str(": ");
            line.push_str(message);
        }
        line
    }
}

/// Events kept for readers that fall behind.
const BUFFER: usize = 1024;

/// The agent-wide event channel (cheap to clone).
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<AgentEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A channel with no subscribers yet.
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(BUFFER).0,
        }
    }

    /// Publishes `event` (and logs it); never waits.
    pub fn publish(&self, event: AgentEvent) {
        tracing::info!(
            runtime = %event.runtime,
            version = %event.version,
            kind = %event.kind,
            message = event.message.as_deref().unwrap_or(""),
            "runtime event"
        );
        // No subscriber is fine: nobody is listening.
        let _ = self.sender.send(event);
    }

    /// A receiver of the events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.sender.subscribe()
    }
}
