//! The hosted runtimes: one supervised worker per runtime, the registry
//! the API reads, and the manager that applies config changes.
//!
//! Each runtime is an [`Aggregate`] of its versions, owned by a worker
//! `runtime/<id>` in the agent's runner. The worker starts the aggregate
//! at the runtime's *desired* version (from the store; the config's
//! `active` only seeds an empty store), then watches the store and
//! reconciles: a new desired version is a switch. The API never switches
//! a runtime itself: it writes desired state and waits for the worker's
//! [`SwitchOutcome`], which is the path a fleet store will use too.
//!
//! A failed switch leaves the old version serving and puts the desired
//! state back to it (compare-and-set, so a newer request wins), so desired
//! state always converges to something that runs: an agent restarted after
//! a failed switch does not retry a version that never worked.
//!
//! This module must never serve HTTP or parse files; a runtime's failure
//! must never reach the agent's other workers (the worker's errors are
//! not fatal: the runner restarts it with backoff).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use steward_host::{
    Aggregate, AggregateConfig, Event, ExitReason, ProcessConfig, ProcessHost, RuntimeHost, Storage,
};
use steward_protocol::RuntimeInfoResponse;
use steward_store::Store;
use steward_worker::{Backoff, Error, Runner, SimpleWorker, Watcher, Worker};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, RuntimeConfig, VersionConfig};
use crate::events::{AgentEvent, EventBus};
use crate::metrics;
use crate::storage::StoreStorage;

/// The runner id of a runtime's worker.
pub(crate) fn worker_id(runtime: &str) -> String {
    format!("runtime/{runtime}")
}

/// Where a runtime is, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuntimeState {
    /// Its worker is starting it (first start, or after a worker restart).
    Starting,
    /// The active version serves calls.
    Running,
    /// The active version's process died; the host restarts it.
    Restarting,
    /// Its worker failed and waits to be restarted by the runner.
    Failed,
    /// Stopped (agent shutting down, or removed from the config).
    Stopped,
}

impl RuntimeState {
    /// Its name in the API: `starting`, `running`, `restarting`, `failed`
    /// or `stopped`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RuntimeState::Starting => "starting",
            RuntimeState::Running => "running",
            RuntimeState::Restarting => "restarting",
            RuntimeState::Failed => "failed",
            RuntimeState::Stopped => "stopped",
        }
    }
}

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

/// One runtime of the config, for as long as it is in the config: its
/// settings, the running aggregate (while its worker runs) and its status.
/// Outlives worker restarts, so counters and the last error survive them.
pub(crate) struct Hosted {
    pub(crate) id: String,
    config: RwLock<Arc<RuntimeConfig>>,
    aggregate: RwLock<Option<Aggregate>>,
    status: Mutex<RuntimeStatus>,
    outcomes: watch::Sender<SwitchOutcome>,
}

impl Hosted {
    fn new(config: RuntimeConfig) -> Self {
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

    fn set_config(&self, config: RuntimeConfig) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
    }

    /// The aggregate, while the runtime's worker runs.
    pub(crate) fn aggregate(&self) -> Option<Aggregate> {
        self.aggregate
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_aggregate(&self, aggregate: Option<Aggregate>) {
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

    fn status_mut(&self) -> std::sync::MutexGuard<'_, RuntimeStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Switch outcomes from now on (see [`SwitchOutcome::generation`]).
    pub(crate) fn outcomes(&self) -> watch::Receiver<SwitchOutcome> {
        self.outcomes.subscribe()
    }

    fn publish_outcome(&self, version: &str, error: Option<String>) {
        self.outcomes.send_modify(|outcome| {
            outcome.generation += 1;
            outcome.version = version.to_owned();
            outcome.error = error;
        });
    }
}

/// The hosted runtimes by id; what the API looks runtimes up in. Locks are
/// held only to clone an `Arc`.
#[derive(Default)]
pub(crate) struct Registry {
    runtimes: RwLock<BTreeMap<String, Arc<Hosted>>>,
}

impl Registry {
    /// The runtime `id`, if the config has it.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Hosted>> {
        self.runtimes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Every runtime, sorted by id.
    pub(crate) fn all(&self) -> Vec<Arc<Hosted>> {
        self.runtimes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn ids(&self) -> Vec<String> {
        self.runtimes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    fn insert(&self, hosted: Arc<Hosted>) {
        self.runtimes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hosted.id.clone(), hosted);
    }

    fn remove(&self, id: &str) -> Option<Arc<Hosted>> {
        self.runtimes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
    }
}

/// What every runtime worker and the manager share.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) store: Store,
    pub(crate) registry: Arc<Registry>,
    pub(crate) events: EventBus,
}

impl Context {
    /// A host for one version, its host storage in the store.
    fn process_host(
        &self,
        runtime: &RuntimeConfig,
        version: &VersionConfig,
    ) -> Arc<dyn RuntimeHost> {
        let mut config = ProcessConfig::new(
            runtime.id.as_str(),
            version.version.as_str(),
            version.command.clone(),
        )
        .args(version.args.iter().cloned());
        config.env = version
            .env
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        config.backoff = Backoff::new(runtime.restart.initial)
            .max(runtime.restart.max)
            .reset_after(std::time::Duration::from_secs(60));
        let storage: Arc<dyn Storage> = Arc::new(StoreStorage(self.store.clone()));
        Arc::new(ProcessHost::new(config, storage))
    }

    fn aggregate(&self, runtime: &RuntimeConfig) -> Result<Aggregate, steward_host::Error> {
        let versions = runtime
            .versions
            .iter()
            .map(|version| (version.version.clone(), self.process_host(runtime, version)));
        Aggregate::new(
            runtime.id.as_str(),
            versions,
            AggregateConfig {
                mode: runtime.transition,
                ..AggregateConfig::default()
            },
        )
    }

    /// Starts the worker of `hosted` in `runner`.
    fn start_worker(&self, runner: &Runner, hosted: Arc<Hosted>) -> Result<(), Error> {
        let context = self.clone();
        runner.start_worker(worker_id(&hosted.id), move || {
            let context = context.clone();
            let hosted = hosted.clone();
            async move {
                Ok(SimpleWorker::spawn(move |stop: CancellationToken| {
                    run_runtime(context, hosted, stop)
                }))
            }
        })
    }
}

/// The body of a runtime's worker: start the aggregate at the desired
/// version, reconcile on every desired-state change, stop everything on
/// the way out (whatever the way).
async fn run_runtime(
    context: Context,
    hosted: Arc<Hosted>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let config = hosted.config();
    hosted.status_mut().state = RuntimeState::Starting;
    let aggregate = context.aggregate(&config).map_err(Error::other)?;
    let tracking_done = CancellationToken::new();
    let tracker = tokio::spawn(track_events(
        hosted.clone(),
        aggregate.watch_events(),
        context.events.clone(),
        tracking_done.clone(),
    ));
    hosted.set_aggregate(Some(aggregate.clone()));

    let result = serve(&context, &hosted, &aggregate, &stop).await;

    hosted.set_aggregate(None);
    aggregate.stop().await;
    tracking_done.cancel();
    let _ = tracker.await;
    let mut status = hosted.status_mut();
    status.info = None;
    match &result {
        Ok(()) => status.state = RuntimeState::Stopped,
        Err(error) => {
            status.state = RuntimeState::Failed;
            status.last_error = Some(error.to_string());
        }
    }
    result
}

async fn serve(
    context: &Context,
    hosted: &Hosted,
    aggregate: &Aggregate,
    stop: &CancellationToken,
) -> Result<(), Error> {
    let id = hosted.id.as_str();
    let mut desired_changes = context.store.watch_desired_version(id);
    let first = initial_version(context, hosted).await?;
    tokio::select! {
        () = stop.cancelled() => return Ok(()),
        started = aggregate.set_version(&first) => started.map_err(Error::other)?,
    }
    info!(runtime = id, version = %first, "runtime serving");
    let result = loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break Ok(()),
            change = desired_changes.next_change() => {
                if let Err(error) = change {
                    break Err(error);
                }
                tokio::select! {
                    () = stop.cancelled() => break Ok(()),
                    () = reconcile(context, hosted, aggregate) => {}
                }
            }
        }
    };
    desired_changes.kill();
    let _ = desired_changes.wait().await;
    result
}

/// The version to start with: the desired one if the config still has it,
/// else the config's `active` (which then becomes the desired version).
async fn initial_version(context: &Context, hosted: &Hosted) -> Result<String, Error> {
    let config = hosted.config();
    let id = hosted.id.as_str();
    let stored = context
        .store
        .desired_version(id)
        .await
        .map_err(Error::other)?;
    match stored {
        Some(version) if config.version(&version).is_some() => Ok(version),
        stored => {
            if let Some(unknown) = &stored {
                warn!(runtime = id, desired = %unknown, starting = %config.active, "the desired version is not in the config; starting the config's active version");
            }
            let set = context
                .store
                .compare_and_set_desired_version(id, stored.as_deref(), &config.active)
                .await
                .map_err(Error::other)?;
            if !set {
                // Someone wrote a desired version meanwhile: start with the
                // config's and let the change notification reconcile it.
                info!(runtime = id, "the desired version changed while starting");
            }
            Ok(config.active.clone())
        }
    }
}

/// Brings the aggregate to the desired version, if it is not there.
async fn reconcile(context: &Context, hosted: &Hosted, aggregate: &Aggregate) {
    let id = hosted.id.as_str();
    let desired = match context.store.desired_version(id).await {
        Ok(Some(desired)) => desired,
        Ok(None) => return,
        Err(error) => {
            warn!(runtime = id, %error, "cannot read the desired version");
            hosted.status_mut().last_error = Some(error.to_string());
            return;
        }
    };
    let active = aggregate.active_version();
    if active.as_deref() == Some(desired.as_str()) {
        return;
    }
    let result = if aggregate.versions().contains(&desired) {
        aggregate
            .set_version(&desired)
            .await
            .map_err(|e| e.to_string())
    } else {
        Err(format!(
            "runtime {id} has no version {desired:?} in the config (known: {})",
            aggregate.versions().join(", ")
        ))
    };
    let from = active.clone().unwrap_or_else(|| "none".to_owned());
    match result {
        Ok(()) => {
            metrics::record_switch(id, true);
            context.events.publish(AgentEvent::now(
                id,
                &desired,
                "switched",
                Some(format!("from {from}")),
            ));
            hosted.publish_outcome(&desired, None);
        }
        Err(error) => {
            metrics::record_switch(id, false);
            warn!(runtime = id, to = %desired, %error, "switch failed; the previous version stays");
            hosted.status_mut().last_error = Some(error.clone());
            context.events.publish(AgentEvent::now(
                id,
                &desired,
                "switch_failed",
                Some(error.clone()),
            ));
            // Desired state goes back to what runs, unless a newer request
            // replaced it meanwhile.
            if let Some(active) = aggregate.active_version()
                && let Err(revert) = context
                    .store
                    .compare_and_set_desired_version(id, Some(&desired), &active)
                    .await
            {
                warn!(runtime = id, error = %revert, "cannot put the desired version back");
            }
            hosted.publish_outcome(&desired, Some(error));
        }
    }
}

/// Turns the aggregate's events into status, metrics and agent events.
/// Drains what is already queued once `done` fires, so the final `Stopped`
/// of a shutdown is not lost.
async fn track_events(
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
                    note_event(&hosted, &bus, event);
                }
                return;
            }
        };
        match event {
            Ok(event) => note_event(&hosted, &bus, event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(runtime = %hosted.id, missed, "event tracking fell behind");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn note_event(hosted: &Hosted, bus: &EventBus, event: Event) {
    let id = hosted.id.as_str();
    let active = hosted.active_version();
    let message = match &event {
        Event::Started { version, info } => {
            metrics::record_up(id, version, true);
            let mut status = hosted.status_mut();
            status.state = RuntimeState::Running;
            status.info = Some(info.clone());
            status.started_at = Some(SystemTime::now());
            None
        }
        Event::FailedToStart { version, error } => {
            metrics::record_start_failure(id, version);
            let mut status = hosted.status_mut();
            status.last_error = Some(format!("version {version} failed to start: {error}"));
            if active.as_deref() == Some(&**version) {
                status.state = RuntimeState::Restarting;
            }
            Some(error.to_string())
        }
        Event::Stopped { version, reason } => {
            metrics::record_up(id, version, false);
            let described = match reason {
                ExitReason::Stopped { status } => status.to_string(),
                other => other.to_string(),
            };
            let mut status = hosted.status_mut();
            // `Aborted` is a kill the operator asked for (`abort --force`):
            // a restart, but neither a failure nor news.
            if reason.is_failure() {
                metrics::record_restart(id, version);
                status.restarts += 1;
                status.last_error = Some(format!("version {version} exited: {described}"));
            }
            if active.as_deref() == Some(&**version) {
                status.state = match reason {
                    ExitReason::Stopped { .. } => RuntimeState::Stopped,
                    _ => RuntimeState::Restarting,
                };
                status.info = None;
            }
            Some(described)
        }
        Event::Updated { what, .. } => Some(what.clone()),
    };
    let kind = match &event {
        Event::Started { .. } => "started",
        Event::FailedToStart { .. } => "failed_to_start",
        Event::Stopped { .. } => "stopped",
        Event::Updated { .. } => "updated",
    };
    bus.publish(AgentEvent::now(id, &**event.version(), kind, message));
}

/// Whether going from `old` to `new` can be done on the running aggregate:
/// versions added or removed, `active` (it only seeds an empty store) and
/// the call timeout (read per call). Anything that changes how a process
/// runs needs a restart.
fn changes_in_place(old: &RuntimeConfig, new: &RuntimeConfig) -> bool {
    old.transition == new.transition
        && old.restart == new.restart
        && new.versions.iter().all(|version| {
            old.version(&version.version)
                .is_none_or(|previous| previous == version)
        })
}

/// Applies configs to the agent's runner: starts a worker per new runtime,
/// stops removed ones, and changes the rest in place where it can.
pub(crate) struct Manager {
    pub(crate) context: Context,
    pub(crate) runner: Runner,
}

impl Manager {
    /// Makes the hosted runtimes match `config`.
    pub(crate) async fn apply(&self, config: &Config) -> Result<(), Error> {
        let registry = &self.context.registry;
        for id in registry.ids() {
            if config.runtime(&id).is_none() {
                info!(runtime = %id, "runtime removed from the config: stopping it");
                self.stop_runtime(&id).await;
                registry.remove(&id);
            }
        }
        for runtime in &config.runtimes {
            match registry.get(&runtime.id) {
                None => {
                    info!(runtime = %runtime.id, "starting runtime");
                    let hosted = Arc::new(Hosted::new(runtime.clone()));
                    registry.insert(hosted.clone());
                    self.context.start_worker(&self.runner, hosted)?;
                }
                Some(hosted) => self.change(&hosted, runtime).await?,
            }
        }
        Ok(())
    }

    async fn stop_runtime(&self, id: &str) {
        match self.runner.stop_and_remove(&worker_id(id)).await {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(error) => warn!(runtime = id, %error, "runtime stopped with an error"),
        }
    }

    /// Versions added or removed change the aggregate in place; any other
    /// change (transition, restart backoff, a version's command) restarts
    /// the runtime's worker with the new settings.
    async fn change(&self, hosted: &Arc<Hosted>, new: &RuntimeConfig) -> Result<(), Error> {
        let old = hosted.config();
        if *old == *new {
            return Ok(());
        }
        hosted.set_config(new.clone());
        let in_place = changes_in_place(&old, new);
        if in_place && let Some(aggregate) = hosted.aggregate() {
            let mut applied = true;
            for version in &new.versions {
                if old.version(&version.version).is_none() {
                    info!(runtime = %new.id, version = %version.version, "version added");
                    if let Err(error) = aggregate.add_version(
                        version.version.as_str(),
                        self.context.process_host(new, version),
                    ) {
                        warn!(runtime = %new.id, %error, "cannot add the version in place");
                        applied = false;
                    }
                }
            }
            let active = aggregate.active_version();
            for version in &old.versions {
                if new.version(&version.version).is_none()
                    && active.as_deref() == Some(&version.version)
                {
                    // Removing the active version means restarting at the
                    // config's `active` (below), not an in-place change.
                    applied = false;
                } else if new.version(&version.version).is_none() {
                    info!(runtime = %new.id, version = %version.version, "version removed");
                    if let Err(error) = aggregate.remove_version(&version.version).await {
                        warn!(runtime = %new.id, %error, "cannot remove the version in place");
                        applied = false;
                    }
                }
            }
            if applied {
                return Ok(());
            }
        } else if in_place {
            // Not running right now: its next start uses the new config.
            return Ok(());
        }
        info!(runtime = %new.id, "runtime settings changed: restarting it");
        self.stop_runtime(&new.id).await;
        self.context.start_worker(&self.runner, hosted.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CommandResolver, DEMO_TOML, parse};
    use std::path::Path;
    use std::time::Duration;

    fn echo() -> RuntimeConfig {
        let exe = std::env::current_exe().unwrap();
        let resolver = CommandResolver {
            exe_dir: None,
            path: exe.parent().map(|dir| dir.as_os_str().to_owned()),
        };
        let text = DEMO_TOML.replace(
            "command = \"steward\"",
            &format!("command = {:?}", exe.display().to_string()),
        );
        let config = parse(&text, Path::new("demo.toml"), &resolver).unwrap();
        config.runtime("echo").unwrap().clone()
    }

    #[test]
    fn adding_and_removing_versions_and_timeouts_change_in_place() {
        let old = echo();
        let mut new = old.clone();
        new.versions.pop();
        new.call_timeout = Duration::from_secs(1);
        assert!(changes_in_place(&old, &new));
        let mut more = old.clone();
        let mut extra = more.versions[0].clone();
        extra.version = "3.0.0".to_owned();
        more.versions.push(extra);
        assert!(changes_in_place(&old, &more));
    }

    #[test]
    fn process_settings_need_a_restart() {
        let old = echo();
        let mut args = old.clone();
        args.versions[0].args.push("--verbose".to_owned());
        assert!(!changes_in_place(&old, &args));
        let mut transition = old.clone();
        transition.transition = steward_host::TransitionMode::StopThenStart;
        assert!(!changes_in_place(&old, &transition));
        let mut restart = old.clone();
        restart.restart.max = Duration::from_secs(1);
        assert!(!changes_in_place(&old, &restart));
    }
}
