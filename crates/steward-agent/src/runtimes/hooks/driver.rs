//! The worker `hooks/<id>`: runs one runtime's hooks, one at a time, in
//! the lifecycle's order, each as a crash-safe operation.
//!
//! It loads the unit's record (a hook that was running when the agent died
//! is now a failed hook; one done but not committed is committed), then
//! loops: commit what is done; while a hook is in error, wait for its
//! retry (with backoff, when `on-hook-failure = "retry"`) or an operator's
//! `resolve`; otherwise run the hook that is due — a lifecycle hook first,
//! else a relation hook ([`relations`](super::relations)) — or wait until
//! one is (a settings edit, a start or switch of the serving version, a
//! change of a relation or of its units, the runtime leaving the config).
//! Every step is written to the store before the next one, and a hook's
//! completion is one transaction with everything it changed (unit state,
//! relation settings, relation state), so a crash anywhere is recovered
//! exactly.
//!
//! It never touches the runtime's processes and calls never wait for it:
//! the runtime's worker only waits, before a first start, for `install` to
//! have succeeded. Its errors (a store that fails) restart it with
//! backoff, like any worker; it must never take the runtime down.

use std::sync::Arc;
use std::time::SystemTime;

use steward_hooks::lifecycle::{Due, PlannedHook, Step, UnitRecord};
use steward_hooks::runner::{HookOutcome, HookReport, HookSpec, run_hook};
use steward_hooks::{Changes, HookContext, HookKind, UnitInfo};
use steward_store::RecordWrite;
use steward_worker::{Backoff, BackoffState, Error, Runner};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::backend::AgentBackend;
use super::env::{HookFacts, RelationFacts, hook_env};
use super::relations::{RelationHooks, RelationWake, state_write};
use super::{load_record, load_workload, record_write, save_record};
use crate::config::{OnHookFailure, Settings};
use crate::events::{AgentEvent, EventKind};
use crate::logs::LogStream;
use crate::relations::records::{self, RelationUnit};
use crate::runtimes::{Context, HookActivity, HookRequest, Hosted, LastHook};
use crate::{failpoint, metrics};

/// The runner id of a runtime's hook driver.
pub(crate) fn worker_id(runtime: &str) -> String {
    format!("hooks/{runtime}")
}

/// Starts the hook driver of `hosted` in `runner`.
pub(crate) fn start(context: &Context, runner: &Runner, hosted: Arc<Hosted>) -> Result<(), Error> {
    let context = context.clone();
    runner.start_simple(worker_id(&hosted.id), move || {
        let context = context.clone();
        let hosted = hosted.clone();
        move |stop: CancellationToken| run(context, hosted, stop)
    })
}

/// What woke a waiting driver.
enum Wake {
    /// The agent is stopping (or the driver is being removed).
    Stop,
    /// An operator or the manager asked something.
    Request(HookRequest),
    /// The settings or the serving version changed: look again.
    Changed,
    /// A relation or its units changed.
    Relation(RelationWake),
    /// The failed hook's retry delay passed.
    RetryDue,
}

/// One runtime's hook driver while it runs.
struct Driver {
    context: Context,
    hosted: Arc<Hosted>,
    record: UnitRecord,
    /// `config-changed` is due: the driver started, or the settings
    /// changed since the last hook saw them.
    config_changed: bool,
    /// The settings the last hook ran with.
    settings_seen: Settings,
    /// The runtime is leaving the config: run `stop`, then answer here.
    stopping: Option<tokio::sync::oneshot::Sender<()>>,
    /// `stop` has run (or had nothing to do): no hook runs any more.
    stopped: bool,
    /// The retry backoff of the hook in error (reset when a hook
    /// succeeds or is resolved).
    backoff: Option<BackoffState>,
    /// When the hook in error is retried (with `on-hook-failure = "retry"`).
    retry_at: Option<tokio::time::Instant>,
    /// The unit's relations and their hook queues.
    relations: RelationHooks,
}

async fn run(context: Context, hosted: Arc<Hosted>, stop: CancellationToken) -> Result<(), Error> {
    // One driver at a time holds the requests (the runner never runs two
    // instances of an id, but a restarted one must wait for the old one).
    let shared = hosted.clone();
    let mut requests = shared.hook_requests.lock().await;
    let mut driver = Driver::load(context, hosted).await?;
    let result = driver.drive(&mut requests, &stop).await;
    if let Some(reply) = driver.stopping.take() {
        let _ = reply.send(());
    }
    result
}

impl Driver {
    async fn load(context: Context, hosted: Arc<Hosted>) -> Result<Self, Error> {
        let id = hosted.id.as_str();
        let mut record = load_record(&context.store, id).await.map_err(Error::msg)?;
        if record.recover() {
            warn!(
                runtime = id,
                "a hook was running when the agent stopped; it counts as failed"
            );
            save_record(&context.store, id, &record)
                .await
                .map_err(Error::msg)?;
        }
        let workload = load_workload(&context.store, id)
            .await
            .map_err(Error::msg)?;
        let installed = record.installed;
        hosted.update_hooks(|hooks| {
            hooks.installed = Some(installed);
            hooks.workload = workload;
        });
        let settings_seen = hosted.config().settings.clone();
        let relations = RelationHooks::new(id, context.relations.clone());
        Ok(Self {
            relations,
            context,
            hosted,
            record,
            config_changed: true,
            settings_seen,
            stopping: None,
            stopped: false,
            backoff: None,
            retry_at: None,
        })
    }

    async fn drive(
        &mut self,
        requests: &mut mpsc::Receiver<HookRequest>,
        stop: &CancellationToken,
    ) -> Result<(), Error> {
        let mut config = self.hosted.watch_config();
        let mut serving = self.hosted.watch_serving();
        loop {
            let settings = config.borrow_and_update().settings.clone();
            if settings != self.settings_seen {
                self.config_changed = true;
                self.settings_seen = settings;
            }
            serving.borrow_and_update();
            if self.commit_done().await?.is_some() {
                // Done before a crash: committed now.
                continue;
            }
            let taking_part = self.record.started && self.stopping.is_none() && !self.stopped;
            self.relations
                .sync(&self.context.store, taking_part)
                .await
                .map_err(Error::msg)?;
            if let Some((hook, reason)) = self.record.failed() {
                let (hook, reason) = (hook.clone(), reason.to_owned());
                if let Some(id) = hook
                    .info
                    .relation_id
                    .filter(|_| hook.info.kind.is_relation())
                    && !self.relations.exists(id)
                {
                    // Its relation is gone (juju/juju#12634: retrying it
                    // forever would block the unit).
                    warn!(runtime = %self.hosted.id, hook = %hook.name(), relation = id, "giving up the failed hook: its relation is gone");
                    self.record.operation = None;
                    self.save().await?;
                    continue;
                }
                self.publish(HookActivity::Error {
                    hook: hook.name(),
                    message: reason,
                });
                if self.stopping.is_some() {
                    // Leaving the config: the failed hook is given up, and
                    // `stop` comes next.
                    warn!(runtime = %self.hosted.id, hook = %hook.name(), "giving up the failed hook: the runtime is being removed");
                    self.record.operation = None;
                    continue;
                }
                if self.retry_at.is_none() && self.backoff.is_none() {
                    // Failed before this driver ran (in an earlier agent
                    // run, or the agent died during it): retried like any.
                    self.schedule_retry();
                }
                match self.wait(requests, &mut config, &mut serving, stop).await {
                    Wake::Stop => return Ok(()),
                    Wake::Request(request) => self.answer(request).await?,
                    Wake::Changed => {}
                    Wake::Relation(wake) => self.relation_changed(wake),
                    Wake::RetryDue => {
                        info!(runtime = %self.hosted.id, hook = %hook.name(), "retrying the failed hook");
                        self.run_operation(hook).await?;
                    }
                }
                continue;
            }
            let next = if self.stopped {
                None
            } else {
                let due_serving = self.hosted.watch_serving().borrow().clone();
                let starting = self.starting_version().await?;
                let lifecycle = self.record.next_hook(&Due {
                    config_changed: self.config_changed,
                    stop: self.stopping.is_some(),
                    starting_version: &starting,
                    serving: due_serving.as_deref(),
                });
                lifecycle.or_else(|| {
                    if self.stopping.is_some() {
                        // Leaving the config: its relations were ended
                        // first; only `stop` is left.
                        return None;
                    }
                    let (id, _) = self.relations.next()?;
                    let version = due_serving
                        .or_else(|| self.record.version.clone())
                        .unwrap_or(starting);
                    self.relations.take(id, &version)
                })
            };
            match next {
                Some(hook) => self.run_operation(hook).await?,
                None => {
                    if let Some(reply) = self.stopping.take() {
                        self.stopped = true;
                        let _ = reply.send(());
                    }
                    self.publish(HookActivity::Idle);
                    match self.wait(requests, &mut config, &mut serving, stop).await {
                        Wake::Stop => return Ok(()),
                        Wake::Request(request) => self.answer(request).await?,
                        Wake::Relation(wake) => self.relation_changed(wake),
                        Wake::Changed | Wake::RetryDue => {}
                    }
                }
            }
        }
    }

    /// Waits for something that may make a hook due (or retry one).
    async fn wait(
        &mut self,
        requests: &mut mpsc::Receiver<HookRequest>,
        config: &mut tokio::sync::watch::Receiver<Arc<crate::config::RuntimeConfig>>,
        serving: &mut tokio::sync::watch::Receiver<Option<String>>,
        stop: &CancellationToken,
    ) -> Wake {
        let retry_at = self.retry_at;
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            () = stop.cancelled() => Wake::Stop,
            request = requests.recv() => match request {
                Some(request) => Wake::Request(request),
                // The runtime is gone; nothing can ask any more.
                None => {
                    stop.cancelled().await;
                    Wake::Stop
                }
            },
            _ = config.changed() => Wake::Changed,
            _ = serving.changed() => Wake::Changed,
            wake = self.relations.changed() => Wake::Relation(wake),
            () = retry => Wake::RetryDue,
        };
        if let Wake::RetryDue = wake {
            // The retry runs now; it reschedules itself if it fails.
            self.retry_at = None;
        }
        wake
    }

    fn relation_changed(&mut self, wake: RelationWake) {
        match wake {
            RelationWake::Units(event) => self.relations.feed(event),
            // Looked at by the next turn of the loop.
            RelationWake::Relations => {}
        }
    }

    async fn answer(&mut self, request: HookRequest) -> Result<(), Error> {
        match request {
            HookRequest::Stop { reply } => {
                self.stopping = Some(reply);
                Ok(())
            }
            HookRequest::Resolve { retry, reply } => {
                let Some((hook, _)) = self.record.failed() else {
                    let _ = reply.send(Err(format!(
                        "no hook of runtime {} is in error",
                        self.hosted.id
                    )));
                    return Ok(());
                };
                let hook = hook.clone();
                let _ = reply.send(Ok(hook.name()));
                if retry {
                    info!(runtime = %self.hosted.id, hook = %hook.name(), "resolved: retrying the hook");
                    return self.run_operation(hook).await;
                }
                info!(runtime = %self.hosted.id, hook = %hook.name(), "resolved: the hook is marked done without running it");
                // Its effects apply as if it had succeeded, its relation's
                // state included (with no changes of its own).
                let state = self
                    .relations
                    .committed_state(&self.context.store, &hook.info)
                    .await
                    .map_err(Error::msg)?;
                if let Ok(skipped) = self.record.skip()
                    && skipped.info.kind == HookKind::ConfigChanged
                {
                    self.config_changed = false;
                }
                self.backoff = None;
                self.retry_at = None;
                let mut writes = Vec::new();
                if let Some(state) = &state {
                    writes.push(state_write(&self.hosted.id, state));
                }
                self.persist(writes, Vec::new()).await?;
                if let Some(state) = state {
                    self.relations
                        .committed(&hook.info, state)
                        .await
                        .map_err(Error::msg)?;
                }
                self.publish_installed();
                Ok(())
            }
        }
    }

    /// The version the runtime starts at: its desired version if the config
    /// has it, else the config's `active` (what the runtime's worker does).
    async fn starting_version(&self) -> Result<String, Error> {
        let config = self.hosted.config();
        let desired = self
            .context
            .desired
            .desired_version(&self.hosted.id)
            .await
            .map_err(Error::other)?;
        Ok(match desired {
            Some(version) if config.version(&version).is_some() => version,
            _ => config.active.clone(),
        })
    }

    /// Runs `hook` as an operation: pending, the process, then done and
    /// committed, or failed.
    async fn run_operation(&mut self, hook: PlannedHook) -> Result<(), Error> {
        let config = self.hosted.config();
        let Some(hooks) = config.hooks.clone() else {
            // Hooks were removed from the config; the manager stops us.
            return Ok(());
        };
        let id = self.hosted.id.clone();
        let name = hook.name();
        self.record.prepare(hook.clone());
        self.save().await?;
        failpoint::hit("hook-pending", &name);
        self.publish(HookActivity::Running(name.clone()));
        self.event(&hook, EventKind::HookStarted, Some(name.clone()));
        self.settings_seen = config.settings.clone();

        let services = &self.context.hooks;
        let unit = services.unit(&id);
        let backend = Arc::new(AgentBackend {
            store: self.context.store.clone(),
            hosted: self.hosted.clone(),
            state: self.record.state.clone(),
            relations: self.relations.view(),
            source: self.context.relations.source().clone(),
        });
        let info = UnitInfo {
            runtime: id.clone(),
            unit: unit.clone(),
            version: hook.version.clone(),
        };
        let context = HookContext::new(info, hook.info.clone(), hook.endpoint.as_deref(), backend)
            .map_err(Error::other)?
            .with_settings(config.settings.clone());
        let remote_runtime = hook
            .info
            .relation_id
            .filter(|_| hook.info.kind.is_relation())
            .and_then(|relation| self.relations.remote_runtime(relation));
        let registration = services.server.register(context);
        let cwd = hooks.dir.parent().unwrap_or(&hooks.dir).to_path_buf();
        let spec = HookSpec {
            hooks_dir: hooks.dir.clone(),
            hook: name.clone(),
            env: hook_env(
                HookFacts {
                    runtime: &id,
                    unit: &unit,
                    hook_name: &name,
                    hook: &hook,
                    hooks_dir: &hooks.dir,
                    tools_dir: &services.tools_dir,
                    relation: hook.endpoint.as_deref().zip(hook.info.relation_id).map(
                        |(endpoint, relation)| RelationFacts {
                            endpoint,
                            relation,
                            remote_unit: hook.info.remote_unit.as_deref(),
                            remote_runtime: remote_runtime.as_deref(),
                        },
                    ),
                },
                registration.env(),
            ),
            cwd,
            timeout: hooks.timeout,
            leader: services.leader.clone(),
        };
        // Not cancelled when the agent stops: a hook is let finish within
        // the shutdown grace (then the runner aborts this task, which kills
        // the hook's group, and it counts as failed at the next start).
        let logs = self.hosted.logs().clone();
        let report = run_hook(&spec, &CancellationToken::new(), |line| {
            let stream = LogStream::from(line.stream);
            info!(runtime = %id, hook = %name, stream = stream.as_str(), "{}", line.line);
            logs.push_hook(&name, &hook.version, stream, line.line);
        })
        .await;
        let changes = registration.finish().await.finish();
        metrics::record_hook(&id, &name, report.succeeded(), report.duration);
        self.remember(&report);

        if report.succeeded() {
            if report.outcome == HookOutcome::Missing {
                tracing::debug!(runtime = %id, hook = %name, "no such hook; skipped");
            }
            self.record.done(changes);
            self.save().await?;
            failpoint::hit("hook-done", &name);
            if let Some(committed) = self.commit_done().await? {
                if committed.info.kind == HookKind::ConfigChanged
                    && self.hosted.config().settings == self.settings_seen
                {
                    self.config_changed = false;
                }
                if committed.info.kind == HookKind::Stop {
                    self.stopped = true;
                }
            }
            failpoint::hit("hook-committed", &name);
            self.backoff = None;
            self.retry_at = None;
            self.publish_installed();
            info!(runtime = %id, hook = %name, duration = ?report.duration, "hook succeeded");
            self.event(&hook, EventKind::HookSucceeded, Some(name));
            return Ok(());
        }

        let reason = report.to_string();
        warn!(runtime = %id, hook = %name, %reason, "hook failed");
        self.record.fail(reason.clone());
        self.save().await?;
        self.event(&hook, EventKind::HookFailed, Some(reason));
        if hook.info.kind == HookKind::Stop {
            // Leaving the config does not wait for a failing stop hook.
            self.record.operation = None;
            self.stopped = true;
            self.save().await?;
            return Ok(());
        }
        self.schedule_retry();
        Ok(())
    }

    /// Schedules the next retry of the hook in error, with backoff, when
    /// the config says to retry failed hooks.
    fn schedule_retry(&mut self) {
        let config = self.hosted.config();
        let Some(hooks) = &config.hooks else { return };
        if hooks.on_failure != OnHookFailure::Retry {
            return;
        }
        let delay = self
            .backoff
            .get_or_insert_with(|| {
                Backoff::new(hooks.retry.initial)
                    .max(hooks.retry.max)
                    .start()
            })
            .next_delay(None);
        info!(runtime = %self.hosted.id, ?delay, "retrying the failed hook later");
        self.retry_at = Some(tokio::time::Instant::now() + delay);
    }

    /// Commits a done operation in one transaction: the hook's effects on
    /// the lifecycle and the unit state, its writes to the unit's relation
    /// settings, and (for a relation hook) its relation's state. Returns the
    /// committed hook; `None` when no operation is done.
    async fn commit_done(&mut self) -> Result<Option<PlannedHook>, Error> {
        let Some(operation) = self
            .record
            .operation
            .clone()
            .filter(|operation| operation.step == Step::Done)
        else {
            return Ok(None);
        };
        let (mut writes, published) = self.settings_writes(&operation.changes).await?;
        let state = self
            .relations
            .committed_state(&self.context.store, &operation.hook.info)
            .await
            .map_err(Error::msg)?;
        if let Some(state) = &state {
            writes.push(state_write(&self.hosted.id, state));
        }
        let committed = self.record.commit();
        self.persist(writes, published).await?;
        if let Some(state) = state {
            self.relations
                .committed(&operation.hook.info, state)
                .await
                .map_err(Error::msg)?;
        }
        Ok(committed)
    }

    /// The writes that apply a hook's `relation-set`s to the unit's
    /// settings, each relation whose settings change getting a new change
    /// version; with the records to publish once they are committed.
    async fn settings_writes(
        &self,
        changes: &Changes,
    ) -> Result<(Vec<RecordWrite>, Vec<(u64, RelationUnit)>), Error> {
        let id = self.hosted.id.as_str();
        let unit = self.context.relations.unit(id);
        let (mut writes, mut published) = (Vec::new(), Vec::new());
        for &relation in changes.relation_settings.keys() {
            if !self.relations.exists(relation) {
                warn!(
                    runtime = id,
                    relation, "dropping relation settings written by a hook: the relation is gone"
                );
                continue;
            }
            let mut record = records::unit(&self.context.store, relation, &unit)
                .await
                .map_err(Error::msg)?
                .unwrap_or_else(|| RelationUnit {
                    runtime: id.to_owned(),
                    ..RelationUnit::default()
                });
            if !changes.changes_relation(relation, &record.settings) {
                continue;
            }
            changes.apply_relation(relation, &mut record.settings);
            record.version += 1;
            writes.push(records::set_unit(relation, &unit, &record));
            published.push((relation, record));
        }
        Ok((writes, published))
    }

    /// Writes the unit's record together with `writes`, in one
    /// transaction, then publishes the relation settings it committed.
    async fn persist(
        &self,
        mut writes: Vec<RecordWrite>,
        published: Vec<(u64, RelationUnit)>,
    ) -> Result<(), Error> {
        let id = self.hosted.id.as_str();
        writes.push(record_write(id, &self.record).map_err(Error::msg)?);
        self.context
            .store
            .commit_records(writes)
            .await
            .map_err(Error::other)?;
        let unit = self.context.relations.unit(id);
        for (relation, record) in published {
            self.context
                .relations
                .source()
                .published(relation, &unit, &record);
        }
        Ok(())
    }

    fn remember(&self, report: &HookReport) {
        let exit_code = match report.outcome {
            HookOutcome::Exited(code) => Some(code),
            _ => None,
        };
        let outcome = match &report.outcome {
            HookOutcome::Missing => "skipped (no such hook)".to_owned(),
            HookOutcome::Exited(0) => "succeeded".to_owned(),
            _ => report.to_string(),
        };
        let last = LastHook {
            hook: report.hook.clone(),
            outcome,
            exit_code,
            succeeded: report.succeeded(),
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
            finished_at: SystemTime::now(),
        };
        self.hosted.update_hooks(|hooks| hooks.last = Some(last));
    }

    async fn save(&self) -> Result<(), Error> {
        save_record(&self.context.store, &self.hosted.id, &self.record)
            .await
            .map_err(Error::msg)
    }

    fn publish(&self, activity: HookActivity) {
        self.hosted.update_hooks(|hooks| {
            if hooks.activity != activity {
                hooks.activity = activity;
            }
        });
    }

    fn publish_installed(&self) {
        let installed = self.record.installed;
        self.hosted
            .update_hooks(|hooks| hooks.installed = Some(installed));
    }

    fn event(&self, hook: &PlannedHook, kind: EventKind, message: Option<String>) {
        self.context.events.publish(AgentEvent::now(
            self.hosted.id.as_str(),
            hook.version.as_str(),
            kind,
            message,
        ));
    }
}
