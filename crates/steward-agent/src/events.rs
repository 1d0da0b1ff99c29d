//! The agent's event stream: what happened to which runtime, when. Every
//! runtime event and every version switch becomes one [`AgentEvent`] of
//! an [`EventKind`] on one broadcast channel, read by the API's
//! server-sent-events endpoint and by `steward events`.
//!
//! This module only carries events; it must never block a publisher (a slow
//! reader loses the oldest events and is told so).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// What kind of thing happened (its wire name in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A version's process started and passed its handshake (`started`).
    Started,
    /// An attempt to start a version failed (`failed_to_start`).
    FailedToStart,
    /// A version's process ended, whatever the cause (`stopped`).
    Stopped,
    /// Something about a running version changed (`updated`).
    Updated,
    /// The active version changed (`switched`).
    Switched,
    /// A switch failed; the previous version stays (`switch_failed`).
    SwitchFailed,
    /// A hook started (`hook_started`; the message is the hook).
    HookStarted,
    /// A hook succeeded (`hook_succeeded`; the message is the hook).
    HookSucceeded,
    /// A hook failed (`hook_failed`; the message says how).
    HookFailed,
    /// A relation of the runtime was created (`relation_created`; the
    /// message names it). Relation events have no version.
    RelationCreated,
    /// A relation of the runtime left the config and is being ended by
    /// its hooks (`relation_dying`).
    RelationDying,
    /// A relation of the runtime is gone (`relation_removed`).
    RelationRemoved,
}

impl EventKind {
    /// Its wire name, e.g. `failed_to_start`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::FailedToStart => "failed_to_start",
            EventKind::Stopped => "stopped",
            EventKind::Updated => "updated",
            EventKind::Switched => "switched",
            EventKind::SwitchFailed => "switch_failed",
            EventKind::HookStarted => "hook_started",
            EventKind::HookSucceeded => "hook_succeeded",
            EventKind::HookFailed => "hook_failed",
            EventKind::RelationCreated => "relation_created",
            EventKind::RelationDying => "relation_dying",
            EventKind::RelationRemoved => "relation_removed",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that happened to a runtime, as the API serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentEvent {
    /// The runtime's id.
    pub runtime: String,
    /// The version the event is about.
    pub version: String,
    /// What happened.
    pub kind: EventKind,
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
        kind: EventKind,
        message: Option<String>,
    ) -> Self {
        Self {
            runtime: runtime.into(),
            version: version.into(),
            kind,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            message,
        }
    }

    /// The event as one human-readable line (what `steward events` prints).
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "{}  {:<12} {:<10} {}",
            self.time,
            self.runtime,
            self.version,
            self.kind.as_str()
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
pub(crate) struct EventBus {
    sender: broadcast::Sender<AgentEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A channel with no subscribers yet.
    pub(crate) fn new() -> Self {
        Self {
            sender: broadcast::channel(BUFFER).0,
        }
    }

    /// Publishes `event` (and logs it); never waits.
    pub(crate) fn publish(&self, event: AgentEvent) {
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
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_their_wire_names() {
        for kind in [
            EventKind::Started,
            EventKind::FailedToStart,
            EventKind::Stopped,
            EventKind::Updated,
            EventKind::Switched,
            EventKind::SwitchFailed,
            EventKind::HookStarted,
            EventKind::HookSucceeded,
            EventKind::HookFailed,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
        }
    }
}
