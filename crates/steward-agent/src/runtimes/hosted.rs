//! [`Hosted`]: one runtime of the config as the rest of the agent sees it
//! — its settings, its aggregate while its worker runs, the version that
//! serves, its status, its hooks' status, and the outcomes of its
//! switches. It outlives worker restarts, so counters and the last error
//! survive them, and it is how the runtime's worker, its hook driver and
//! the API see each other: through `watch` channels, never by calling into
//! each other. Locks here are held only to clone or update a value, never
//! across an `.await`; this module must never start or stop anything.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use steward_hooks::WorkloadStatus;
use steward_host::Aggregate;
use steward_protocol::RuntimeInfoResponse;
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::types::RuntimeState;
use crate::config::RuntimeConfig;
use crate::logs::RuntimeLogs;
use crate::metrics::CallMetrics;
use crate::stats::{self, CallStats, Series};

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

/// Where a runtime's hooks are, as its hook driver publishes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HookStatus {
    /// Whether `install` has succeeded; `None` until the driver has read
    /// the unit's record (the runtime does not start before it is `true`).
    pub(crate) installed: Option<bool>,
    /// What the driver is doing.
    pub(crate) activity: HookActivity,
    /// The workload status the hooks set (`status-set`).
    pub(crate) workload: Option<WorkloadStatus>,
    /// The last hook that ended.
    pub(crate) last: Option<LastHook>,
}

/// What a hook driver is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum HookActivity {
    /// Nothing is due.
    #[default]
    Idle,
    /// Running this hook.
    Running(String),
    /// This hook failed; later hooks wait.
    Error {
        /// The hook's name.
        hook: String,
        /// Why (`hook "install" failed: exit status 1`).
        message: String,
    },
}

impl HookActivity {
    /// What the API calls it.
    pub(crate) fn state(&self) -> crate::api::types::HooksState {
        use crate::api::types::HooksState;
        match self {
            HookActivity::Idle => HooksState::Idle,
            HookActivity::Running(_) => HooksState::Running,
            HookActivity::Error { .. } => HooksState::Error,
        }
    }
}

/// How the last hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LastHook {
    pub(crate) hook: String,
    /// What happened, for people (`succeeded`, `exit status 1`, …).
    pub(crate) outcome: String,
    /// The exit code, when it exited.
    pub(crate) exit_code: Option<i32>,
    pub(crate) succeeded: bool,
    pub(crate) duration_ms: u64,
    pub(crate) finished_at: SystemTime,
}

/// What an operator or the manager asks a runtime's hook driver.
#[derive(Debug)]
pub(crate) enum HookRequest {
    /// Resolve the hook in error: run it again now (`retry`) or mark it
    /// done without running it. Answers the hook's name, or why nothing
    /// can be resolved.
    Resolve {
        retry: bool,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// The runtime is leaving the config: run `stop` (if it installed),
    /// then answer. No hook runs after it.
    Stop { reply: oneshot::Sender<()> },
}

/// One runtime of the config, for as long as it is in the config.
#[derive(Debug)]
pub(crate) struct Hosted {
    pub(crate) id: String,
    config: watch::Sender<Arc<RuntimeConfig>>,
    aggregate: RwLock<Option<Aggregate>>,
    /// The version serving calls, once the runtime's worker started it.
    serving: watch::Sender<Option<String>>,
    status: Mutex<RuntimeStatus>,
    hooks: watch::Sender<HookStatus>,
    requests: mpsc::Sender<HookRequest>,
    /// Taken by the hook driver while it runs (a restarted driver takes it
    /// again).
    pub(crate) hook_requests: tokio::sync::Mutex<mpsc::Receiver<HookRequest>>,
    outcomes: watch::Sender<SwitchOutcome>,
    /// Its versions' and hooks' recent output.
    logs: Arc<RuntimeLogs>,
    /// What its calls are counted in: one lock per call, this runtime's
    /// own.
    calls: Mutex<Calls>,
}

/// The records of a runtime's calls.
#[derive(Debug, Default)]
struct Calls {
    /// The call metrics of the version calls last went to, looked up on
    /// the first call (after the agent installed its recorder).
    metrics: Option<CallMetrics>,
    /// The last minutes, per second and version, for the web UI's plots.
    stats: CallStats,
}

impl Hosted {
    pub(crate) fn new(config: RuntimeConfig) -> Self {
        let (requests, receiver) = mpsc::channel(16);
        Self {
            logs: Arc::new(RuntimeLogs::new(config.log_lines)),
            id: config.id.clone(),
            config: watch::channel(Arc::new(config)).0,
            aggregate: RwLock::new(None),
            serving: watch::channel(None).0,
            status: Mutex::new(RuntimeStatus {
                state: RuntimeState::Starting,
                info: None,
                restarts: 0,
                last_error: None,
                started_at: None,
            }),
            hooks: watch::channel(HookStatus::default()).0,
            requests,
            hook_requests: tokio::sync::Mutex::new(receiver),
            outcomes: watch::channel(SwitchOutcome::default()).0,
            calls: Mutex::default(),
        }
    }

    /// The settings it runs with.
    pub(crate) fn config(&self) -> Arc<RuntimeConfig> {
        self.config.borrow().clone()
    }

    /// Its settings from now on (the hook driver follows them).
    pub(crate) fn watch_config(&self) -> watch::Receiver<Arc<RuntimeConfig>> {
        self.config.subscribe()
    }

    pub(crate) fn set_config(&self, config: RuntimeConfig) {
        self.logs
            .configure(config.log_lines, &config.version_names());
        self.config.send_replace(Arc::new(config));
    }

    /// Its recent output lines.
    pub(crate) fn logs(&self) -> &Arc<RuntimeLogs> {
        &self.logs
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

    /// Records one call made to `version` in the metrics and the
    /// per-second statistics; `error` is the error's (module, code).
    pub(crate) fn record_call(&self, version: &str, elapsed: Duration, error: Option<(&str, u32)>) {
        let at = stats::now();
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        let metrics = match &mut calls.metrics {
            Some(metrics) if metrics.version() == version => metrics,
            other => other.insert(CallMetrics::new(&self.id, version)),
        };
        metrics.record(&self.id, elapsed, error);
        calls.stats.record(at, version, elapsed, error.is_none());
    }

    /// Its calls of the last `seconds` complete seconds (see
    /// [`CallStats::series`], which also forgets versions gone idle).
    pub(crate) fn call_series(&self, seconds: u32) -> Series {
        let now = stats::now();
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stats
            .series(now, seconds)
    }

    /// The version serving calls from now on (`None` while it does not).
    pub(crate) fn watch_serving(&self) -> watch::Receiver<Option<String>> {
        self.serving.subscribe()
    }

    pub(crate) fn set_serving(&self, version: Option<String>) {
        self.serving.send_if_modified(|serving| {
            let changed = *serving != version;
            *serving = version;
            changed
        });
    }

    /// A snapshot of its status.
    pub(crate) fn status(&self) -> RuntimeStatus {
        self.status_mut().clone()
    }

    pub(crate) fn status_mut(&self) -> MutexGuard<'_, RuntimeStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Its hooks' status now.
    pub(crate) fn hook_status(&self) -> HookStatus {
        self.hooks.borrow().clone()
    }

    /// Its hooks' status from now on.
    pub(crate) fn watch_hooks(&self) -> watch::Receiver<HookStatus> {
        self.hooks.subscribe()
    }

    pub(crate) fn update_hooks(&self, update: impl FnOnce(&mut HookStatus)) {
        self.hooks.send_modify(update);
    }

    /// Sends `request` to the hook driver; `false` if no driver will ever
    /// take it (the runtime is gone).
    pub(crate) async fn request_hooks(&self, request: HookRequest) -> bool {
        self.requests.send(request).await.is_ok()
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
