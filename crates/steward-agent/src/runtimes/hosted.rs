//! [`Hosted`]: one runtime of the config as the rest of the agent sees it
//! — its settings, its aggregate while its worker runs, its status and the
//! outcomes of its switches. It outlives worker restarts, so counters and
//! the last error survive them. Locks here are held only to clone or
//! update a value, never across an `.await`; this module must never start
//! or stop anything.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::SystemTime;

use steward_host::Aggregate;
use steward_protocol::RuntimeInfoResponse;
use tokio::sync::watch;

use crate::api::types::RuntimeState;
use crate::config::RuntimeConfig;

/// What the API shows about a runtime besides its config.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeStatus {
    pub(crate) state: RuntimeState,
    /// The active version's handshake answer, once it started.
    pub(crate) info: Option<RuntimeInfoResponse>,
    /// Unexpected exits of its processes since the agent started.
    pub(crate) restarts: u64,
    pub(crate) last_error: Option<String>,
    /// When the active version last started.
    pub(crate) started_at: Option<SystemTime>,
}

/// The result of one attempted switch, published by the runtime's worker.
#[derive(Debug, Clone, Default)]
pub(crate) struct SwitchOutcome {
    /// Bumped on every attempt, so a waiter can tell new outcomes from old.
    pub(crate) generation: u64,
    /// The version switched to (or not).
    pub(crate) version: String,
    /// Why it failed.
    pub(crate) error: Option<String>,
}

/// One runtime of the config, for as long as it is in the config.
#[derive(Debug)]
pub(crate) struct Hosted {
    pub(crate) id: String,
    config: RwLock<Arc<RuntimeConfig>>,
    aggregate: RwLock<Option<Aggregate>>,
    status: Mutex<RuntimeStatus>,
    outcomes: watch::Sender<SwitchOutcome>,
}

impl Hosted {
    pub(crate) fn new(config: RuntimeConfig) -> Self {
        Self {
            id: config.id.clone(),
            config: RwLock::new(Arc::new(config)),
            aggregate: RwLock::new(None),
            status: Mutex::new(RuntimeStatus {
                state: RuntimeState::Starting,
                info: None,
                restarts: 0,
                last_error: None,
                started_at: None,
            }),
            outcomes: watch::channel(SwitchOutcome::default()).0,
        }
    }

    /// The settings it runs with.
    pub(crate) fn config(&self) -> Arc<RuntimeConfig> {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_config(&self, config: RuntimeConfig) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
    }

    /// The aggregate, while the runtime's worker runs.
    pub(crate) fn aggregate(&self) -> Option<Aggregate> {
        self.aggregate
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_aggregate(&self, aggregate: Option<Aggregate>) {
        *self
            .aggregate
            .write()
            .unwrap_or_else(PoisonError::into_inner) = aggregate;
    }

    /// The active version, if the runtime runs.
    pub(crate) fn active_version(&self) -> Option<String> {
        self.aggregate()
            .and_then(|aggregate| aggregate.active_version())
    }

    /// A snapshot of its status.
    pub(crate) fn status(&self) -> RuntimeStatus {
        self.status_mut().clone()
    }

    pub(crate) fn status_mut(&self) -> MutexGuard<'_, RuntimeStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Switch outcomes from now on (see [`SwitchOutcome::generation`]).
    pub(crate) fn outcomes(&self) -> watch::Receiver<SwitchOutcome> {
        self.outcomes.subscribe()
    }

    pub(crate) fn publish_outcome(&self, version: &str, error: Option<String>) {
        self.outcomes.send_modify(|outcome| {
            outcome.generation += 1;
            outcome.version = version.to_owned();
            outcome.error = error;
        });
    }
}
