//! The worker `fleet`: publishes each of this agent's units with its
//! status, re-publishing a unit only when its status changed, and removes
//! the units of runtimes this agent no longer runs.
//!
//! It wakes on the agent's events (starts, exits, switches, hooks), on
//! desired-state changes (the only wakes that read etcd), and once a
//! second for what changes without an event (a hook's progress, an
//! error). A publish that etcd did not
//! confirm is remembered by the store and redone when etcd answers, as is
//! everything published before an outage that etcd lost (a lease that
//! expired meanwhile): this worker never loops on a failure. It must never
//! change a runtime.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use steward_store::{DesiredState, Presence};
use steward_worker::{Error as WorkerError, Runner, Watcher, Worker};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::unit_status;
use crate::api::types::UnitStatus;
use crate::events::EventBus;
use crate::runtimes::Registry;

/// The runner id of the worker.
pub(crate) const WORKER: &str = "fleet";

/// How often statuses are compared without an event.
const RECHECK: Duration = Duration::from_secs(1);

/// What the worker reads and where it publishes.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    pub(crate) registry: Arc<Registry>,
    pub(crate) desired: Arc<dyn DesiredState>,
    pub(crate) presence: Arc<dyn Presence>,
    pub(crate) events: EventBus,
}

/// Starts the worker in `runner`.
pub(crate) fn start(runner: &Runner, publisher: Publisher) -> Result<(), WorkerError> {
    runner.start_simple(WORKER, move || {
        let publisher = publisher.clone();
        move |stop: CancellationToken| run(publisher, stop)
    })
}

async fn run(publisher: Publisher, stop: CancellationToken) -> Result<(), WorkerError> {
    let mut events = publisher.events.subscribe();
    let mut desired_changes = publisher.desired.watch_desired_versions();
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = Published::default();
    let result = loop {
        state.publish(&publisher).await;
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
            event = events.recv() => {
                if let Err(RecvError::Closed) = event {
                    break Ok(());
                }
            }
            change = desired_changes.next_change() => {
                if let Err(error) = change {
                    break Err(error);
                }
                state.desired_stale = true;
            }
            _ = recheck.tick() => {}
        }
    };
    desired_changes.kill();
    let _ = desired_changes.wait().await;
    result
}

/// What this worker last published, by runtime.
#[derive(Debug)]
struct Published {
    units: BTreeMap<String, UnitStatus>,
    /// The desired versions as last read (kept through an outage).
    desired: BTreeMap<String, String>,
    /// Whether [`desired`](Self::desired) must be read again: at first,
    /// after the watch saw a change, and after a failed read. Events and
    /// rechecks change only the runtimes' own status, so they need no
    /// read of etcd.
    desired_stale: bool,
    /// The last publish failure reported, so that a lasting one is
    /// logged once.
    reported: Option<String>,
}

impl Default for Published {
    fn default() -> Self {
        Self {
            units: BTreeMap::new(),
            desired: BTreeMap::new(),
            desired_stale: true,
            reported: None,
        }
    }
}

impl Published {
    async fn publish(&mut self, publisher: &Publisher) {
        if self.desired_stale {
            match publisher.desired.desired_versions().await {
                Ok(desired) => {
                    self.desired = desired;
                    self.desired_stale = false;
                }
                // An outage: the last known versions stand (the store
                // reports the outage itself, once), and the next wake reads
                // again.
                Err(error) => {
                    debug!(%error, "cannot read the desired versions; publishing the last known")
                }
            }
        }
        let hosted = publisher.registry.all();
        let mut failure = None;
        for hosted in &hosted {
            let status = unit_status(hosted, self.desired.get(&hosted.id).cloned());
            if self.units.get(&hosted.id) == Some(&status) {
                continue;
            }
            let unit = publisher.presence.unit_name(&hosted.id);
            let bytes = match serde_json::to_vec(&status) {
                Ok(bytes) => bytes,
                Err(error) => {
                    failure = Some(format!("cannot encode the status of {unit}: {error}"));
                    continue;
                }
            };
            match publisher.presence.publish_unit(&unit, bytes).await {
                // Unavailable: the store publishes it once etcd answers.
                Ok(()) | Err(steward_store::Error::Unavailable { .. }) => {
                    self.units.insert(hosted.id.clone(), status);
                }
                Err(error) => failure = Some(format!("cannot publish {unit}: {error}")),
            }
        }
        let gone: Vec<String> = self
            .units
            .keys()
            .filter(|id| !hosted.iter().any(|hosted| &hosted.id == *id))
            .cloned()
            .collect();
        for id in gone {
            let unit = publisher.presence.unit_name(&id);
            match publisher.presence.remove_unit(&unit).await {
                Ok(()) | Err(steward_store::Error::Unavailable { .. }) => {
                    self.units.remove(&id);
                }
                Err(error) => failure = Some(format!("cannot remove {unit}: {error}")),
            }
        }
        if failure != self.reported {
            if let Some(failure) = &failure {
                warn!("fleet: {failure}; retrying");
            }
            self.reported = failure;
        }
    }
}
