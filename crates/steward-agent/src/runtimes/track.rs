//! What a runtime's events mean to the agent: each event of its aggregate
//! updates the runtime's status and metrics and becomes an agent event.
//! This module only records; it must never act on a runtime (a crash is
//! the host's to restart).

use std::sync::Arc;
use std::time::SystemTime;

use steward_host::{Aggregate, Event, ExitReason, RuntimeHost};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Hosted;
use crate::api::types::RuntimeState;
use crate::events::{AgentEvent, EventBus, EventKind};
use crate::metrics;

/// The task that follows one aggregate's events.
pub(super) struct Tracking {
    done: CancellationToken,
    task: JoinHandle<()>,
}

impl Tracking {
    /// Follows `aggregate`'s events from now on.
    pub(super) fn start(hosted: &Arc<Hosted>, aggregate: &Aggregate, bus: &EventBus) -> Self {
        let done = CancellationToken::new();
        let task = tokio::spawn(follow(
            hosted.clone(),
            aggregate.watch_events(),
            bus.clone(),
            done.clone(),
        ));
        Self { done, task }
    }

    /// Stops following, after the events already queued (so the final
    /// `Stopped` of a shutdown is not lost).
    pub(super) async fn finish(self) {
        self.done.cancel();
        let _ = self.task.await;
    }
}

async fn follow(
    hosted: Arc<Hosted>,
    mut events: broadcast::Receiver<Event>,
    bus: EventBus,
    done: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            biased;
            event = events.recv() => event,
            () = done.cancelled() => {
                while let Ok(event) = events.try_recv() {
                    note(&hosted, &bus, event);
                }
                return;
            }
        };
        match event {
            Ok(event) => note(&hosted, &bus, event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(runtime = %hosted.id, missed, "event tracking fell behind");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Records one event: status, metrics, and the agent event.
pub(super) fn note(hosted: &Hosted, bus: &EventBus, event: Event) {
    let id = hosted.id.as_str();
    let is_active = |version: &str| hosted.active_version().as_deref() == Some(version);
    let (kind, message) = match &event {
        Event::Started { version, info } => {
            metrics::record_up(id, version, true);
            let mut status = hosted.status_mut();
            status.state = RuntimeState::Running;
            status.info = Some(info.clone());
            status.started_at = Some(SystemTime::now());
            (EventKind::Started, None)
        }
        Event::FailedToStart { version, error } => {
            metrics::record_start_failure(id, version);
            let active = is_active(version);
            let mut status = hosted.status_mut();
            status.last_error = Some(format!("version {version} failed to start: {error}"));
            if active {
                status.state = RuntimeState::Restarting;
            }
            (EventKind::FailedToStart, Some(error.to_string()))
        }
        Event::Stopped { version, reason } => {
            metrics::record_up(id, version, false);
            let described = match reason {
                ExitReason::Stopped { status } => status.to_string(),
                other => other.to_string(),
            };
            let active = is_active(version);
            let mut status = hosted.status_mut();
            // `Aborted` is a kill the operator asked for (`abort --force`):
            // a restart, but neither a failure nor news.
            if reason.is_failure() {
                metrics::record_restart(id, version);
                status.restarts += 1;
                status.last_error = Some(format!("version {version} exited: {described}"));
            }
            if active {
                status.state = match reason {
                    ExitReason::Stopped { .. } => RuntimeState::Stopped,
                    _ => RuntimeState::Restarting,
                };
                status.info = None;
            }
            (EventKind::Stopped, Some(described))
        }
        Event::Updated { what, .. } => (EventKind::Updated, Some(what.clone())),
    };
    bus.publish(AgentEvent::now(id, &**event.version(), kind, message));
}
