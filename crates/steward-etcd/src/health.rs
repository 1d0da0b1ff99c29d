//! Whether etcd answers: [`FleetHealth`], its transitions, and the
//! *reconnect epoch* that tells the store's watches to resume on a fresh
//! stream after an outage.
//!
//! Any request that times out or loses its connection reports a failure
//! here; only the maintenance task's successful check reports a recovery
//! (after it has re-published what an outage may have lost). Each
//! transition is logged once; retries are never logged above debug. This
//! module must never make a request itself.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use steward_store::FleetHealth;
use steward_worker::{QueueWatcher, WatchedValue};
use tokio::sync::watch;
use tracing::{info, warn};

pub(crate) struct Health {
    state: Mutex<FleetHealth>,
    /// Set on every transition only, so its watchers wake per change.
    watched: WatchedValue<FleetHealth>,
    /// Bumped on every recovery: watches restart their streams from the
    /// last revision they saw, whatever state their old stream was left in.
    epoch: watch::Sender<u64>,
    endpoints: String,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Health {
    pub(crate) fn new(endpoints: String) -> Self {
        Self {
            state: Mutex::new(FleetHealth::Connected),
            watched: WatchedValue::new(FleetHealth::Connected),
            epoch: watch::Sender::new(0),
            endpoints,
        }
    }

    pub(crate) fn get(&self) -> FleetHealth {
        lock(&self.state).clone()
    }

    pub(crate) fn watch(&self) -> QueueWatcher<()> {
        self.watched.watch()
    }

    pub(crate) fn epochs(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// A request or check failed for want of etcd.
    pub(crate) fn failed(&self, reason: &str) {
        let mut state = lock(&self.state);
        if state.is_connected() {
            warn!(
                endpoints = %self.endpoints,
                %reason,
                "fleet: etcd cannot be reached; serving the last known desired state and retrying"
            );
            *state = FleetHealth::Disconnected {
                since: SystemTime::now(),
                reason: reason.to_owned(),
            };
            self.watched.set(state.clone());
        }
    }

    /// The maintenance task reached etcd (and re-published what it owns).
    pub(crate) fn recovered(&self) {
        let mut state = lock(&self.state);
        if let FleetHealth::Disconnected { since, .. } = &*state {
            let outage = since.elapsed().unwrap_or_default();
            info!(
                endpoints = %self.endpoints,
                outage = %format_args!("{:.1}s", outage.as_secs_f64()),
                "fleet: etcd is reachable again; catching up"
            );
            *state = FleetHealth::Connected;
            self.watched.set(FleetHealth::Connected);
            self.epoch.send_modify(|epoch| *epoch += 1);
        }
    }
}
