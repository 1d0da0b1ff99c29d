//! The worker `runtimes`: keeps the hosted runtimes and their relations in
//! step with the config. It applies the config it starts with and then
//! every new one from a `watch` channel (fed by the config file's
//! observer, or never changing for the built-in demo): a new runtime gets a
//! worker, a removed one is stopped, and a changed one is changed in place
//! where it can be, restarted with its new settings where it cannot. A
//! relation the config gains is created, one it lost dies; a runtime
//! leaving the config first waits for its relations to be ended by their
//! hooks, then runs its `stop` hook, then stops.
//!
//! It must never switch versions (desired state does) nor talk to a
//! runtime process: it only starts, stops and reconfigures workers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use steward_worker::{Error, Runner};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::hooks::{self, driver};
use super::{Context, HookRequest, Hosted, worker};
use crate::config::{Config, RuntimeConfig};

/// How much longer than its hook timeout a removed runtime's `stop` hook is
/// waited for (the driver may first finish a hook in progress).
const STOP_HOOK_SLACK: Duration = Duration::from_secs(30);

/// Applies configs to the agent's runner.
#[derive(Debug)]
pub(crate) struct Manager {
    pub(crate) context: Context,
    pub(crate) runner: Runner,
}

impl Manager {
    /// The manager's worker body: applies the current config, then every
    /// change, until `stop`.
    pub(crate) async fn run(
        self,
        mut configs: watch::Receiver<Arc<Config>>,
        stop: CancellationToken,
    ) -> Result<(), Error> {
        let first = configs.borrow_and_update().clone();
        self.apply(&first).await?;
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                changed = configs.changed() => {
                    if changed.is_err() {
                        // No more configs will come: keep what runs.
                        stop.cancelled().await;
                        return Ok(());
                    }
                    let config = configs.borrow_and_update().clone();
                    info!(runtimes = config.runtimes.len(), "config changed: applying it");
                    if config.fleet != first.fleet {
                        // The store behind desired state is chosen once.
                        warn!("the config's [fleet] table changed; it takes effect when the agent restarts");
                    }
                    self.apply(&config).await?;
                }
            }
        }
    }

    /// Makes the hosted runtimes and the relations match `config`.
    pub(crate) async fn apply(&self, config: &Config) -> Result<(), Error> {
        let registry = &self.context.registry;
        let relations = &self.context.relations;
        // Relations first: those the config lost start dying while the
        // hook drivers of both sides still run.
        let hooked: BTreeSet<String> = registry
            .all()
            .iter()
            .filter(|hosted| hosted.config().hooks.is_some())
            .map(|hosted| hosted.id.clone())
            .collect();
        relations.apply(config, hooked).await.map_err(Error::msg)?;
        for id in registry.ids() {
            if config.runtime(&id).is_none()
                && let Some(hosted) = registry.get(&id)
            {
                info!(runtime = %id, "runtime removed from the config: stopping it");
                self.remove(&hosted).await;
                registry.remove(&id);
            }
        }
        for runtime in &config.runtimes {
            match registry.get(&runtime.id) {
                None => {
                    info!(runtime = %runtime.id, "starting runtime");
                    let hosted = Arc::new(Hosted::new(runtime.clone()));
                    registry.insert(hosted.clone());
                    if runtime.hooks.is_some() {
                        relations.hook(&runtime.id);
                        driver::start(&self.context, &self.runner, hosted.clone())?;
                    }
                    worker::start(&self.context, &self.runner, hosted)?;
                }
                Some(hosted) => self.change(&hosted, runtime).await?,
            }
        }
        Ok(())
    }

    /// Takes a runtime out: the end of its relations (their hooks on both
    /// sides), its `stop` hook (while its processes still run), then its
    /// processes, then its hook driver, whose record is forgotten (added
    /// again, the runtime installs again).
    async fn remove(&self, hosted: &Hosted) {
        let id = hosted.id.as_str();
        let hooks = hosted.config().hooks.clone();
        let relations = &self.context.relations;
        if !relations.of_runtime(id).is_empty() {
            // Each side runs a departed and a broken per relation; a hook
            // stuck in error must not keep the runtime forever.
            let timeout = hooks.as_ref().map_or(Duration::ZERO, |hooks| hooks.timeout);
            relations
                .wait_until_free(id, timeout * 2 + STOP_HOOK_SLACK)
                .await;
        }
        if let Some(hooks) = &hooks {
            let (reply, done) = oneshot::channel();
            if hosted.request_hooks(HookRequest::Stop { reply }).await {
                // The stop hook may take its whole timeout; a hung driver
                // must not keep the runtime forever.
                let patience = hooks.timeout + STOP_HOOK_SLACK;
                if tokio::time::timeout(patience, done).await.is_err() {
                    warn!(
                        runtime = id,
                        "the stop hook did not finish in time; stopping the runtime anyway"
                    );
                }
            }
        }
        self.stop_worker(&worker::worker_id(id)).await;
        if hooks.is_some() || self.runner.worker_names().contains(&driver::worker_id(id)) {
            self.stop_worker(&driver::worker_id(id)).await;
            if let Err(error) = hooks::forget_unit(&self.context.store, id).await {
                warn!(runtime = id, %error, "cannot forget the unit's hook record");
            }
        }
        self.unhook(id).await;
    }

    /// `runtime` runs no more hooks: relations dying do not wait for it.
    async fn unhook(&self, runtime: &str) {
        if let Err(error) = self.context.relations.unhook(runtime).await {
            warn!(runtime, %error, "cannot end the relations waiting for the runtime's hooks");
        }
    }

    async fn stop_worker(&self, worker: &str) {
        match self.runner.stop_and_remove(worker).await {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(error) => warn!(worker, %error, "worker stopped with an error"),
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
        // Hook settings apply from the next hook on (the driver follows the
        // config); only adding or removing hooks starts or stops a driver.
        match (&old.hooks, &new.hooks) {
            (None, Some(_)) => {
                self.context.relations.hook(&new.id);
                driver::start(&self.context, &self.runner, hosted.clone())?;
            }
            (Some(_), None) => {
                self.stop_worker(&driver::worker_id(&new.id)).await;
                self.unhook(&new.id).await;
            }
            _ => {}
        }
        if changes_in_place(&old, new) {
            let Some(aggregate) = hosted.aggregate() else {
                // Not running right now: its next start uses the new config.
                return Ok(());
            };
            if self.change_versions(&aggregate, &old, new).await {
                return Ok(());
            }
        }
        info!(runtime = %new.id, "runtime settings changed: restarting it");
        self.stop_worker(&worker::worker_id(&new.id)).await;
        worker::start(&self.context, &self.runner, hosted.clone())
    }

    /// Adds and removes versions on the running aggregate; false when that
    /// is not enough (the active version was removed, or the aggregate
    /// refused), which means a restart.
    async fn change_versions(
        &self,
        aggregate: &steward_host::Aggregate,
        old: &RuntimeConfig,
        new: &RuntimeConfig,
    ) -> bool {
        let mut applied = true;
        for version in &new.versions {
            if old.version(&version.version).is_none() {
                info!(runtime = %new.id, version = %version.version, "version added");
                let host = self.context.hosts.host(new, version);
                if let Err(error) = aggregate.add_version(version.version.as_str(), host) {
                    warn!(runtime = %new.id, %error, "cannot add the version in place");
                    applied = false;
                }
            }
        }
        let active = aggregate.active_version();
        for version in &old.versions {
            if new.version(&version.version).is_some() {
                continue;
            }
            if active.as_deref() == Some(&version.version) {
                // Removing the active version means restarting at the
                // config's `active`, not an in-place change.
                applied = false;
                continue;
            }
            info!(runtime = %new.id, version = %version.version, "version removed");
            if let Err(error) = aggregate.remove_version(&version.version).await {
                warn!(runtime = %new.id, %error, "cannot remove the version in place");
                applied = false;
            }
        }
        applied
    }
}

/// Whether going from `old` to `new` can be done on the running aggregate:
/// versions added or removed, `active` (it only seeds an empty store) and
/// the call timeout (read per call). Anything that changes how a process
/// runs needs a restart.
pub(super) fn changes_in_place(old: &RuntimeConfig, new: &RuntimeConfig) -> bool {
    old.transition == new.transition
        && old.restart == new.restart
        && old.timeouts == new.timeouts
        && old.liveness == new.liveness
        && new.versions.iter().all(|version| {
            old.version(&version.version)
                .is_none_or(|previous| previous == version)
        })
}
