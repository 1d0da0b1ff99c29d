//! The worker `runtime/<id>`: owns one runtime's [`Aggregate`] and keeps it
//! at the desired version kept in the store.
//!
//! It starts the aggregate at the *desired* version (the config's `active`
//! only seeds an empty store), then watches the store and reconciles: a new
//! desired version is a switch. The API never switches a runtime itself:
//! it writes desired state and waits for the worker's [`SwitchOutcome`]
//! (the path a fleet store takes too).
//!
//! A failed switch leaves the old version serving and puts the desired
//! state back to it (compare-and-set, so a newer request wins), so desired
//! state always converges to something that runs: an agent restarted after
//! a failed switch does not retry a version that never worked.
//!
//! Its errors are never fatal to the agent: the runner restarts the worker
//! with backoff, and a runtime's failure never reaches the others. It must
//! never apply config changes (the manager does).
//!
//! [`SwitchOutcome`]: super::SwitchOutcome

use std::sync::Arc;

use steward_host::{Aggregate, AggregateConfig, RuntimeHost};
use steward_worker::{Error, Runner, Watcher, Worker};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Context, DesiredScope, Hosted, track};
use crate::api::types::RuntimeState;
use crate::config::RuntimeConfig;
use crate::events::{AgentEvent, EventKind};
use crate::metrics;

/// The runner id of a runtime's worker.
pub(crate) fn worker_id(runtime: &str) -> String {
    format!("runtime/{runtime}")
}

/// Starts the worker of `hosted` in `runner`.
pub(crate) fn start(context: &Context, runner: &Runner, hosted: Arc<Hosted>) -> Result<(), Error> {
    let context = context.clone();
    runner.start_simple(worker_id(&hosted.id), move || {
        let context = context.clone();
        let hosted = hosted.clone();
        move |stop: CancellationToken| run(context, hosted, stop)
    })
}

/// An aggregate of every version of `runtime`.
pub(crate) fn aggregate(context: &Context, runtime: &RuntimeConfig) -> Result<Aggregate, Error> {
    let versions = runtime.versions.iter().map(|version| {
        (
            version.version.clone(),
            context.hosts.host(runtime, version),
        )
    });
    Aggregate::new(
        runtime.id.as_str(),
        versions,
        AggregateConfig {
            mode: runtime.transition.into(),
            ..AggregateConfig::default()
        },
    )
    .map_err(Error::other)
}

/// The body of a runtime's worker: start the aggregate at the desired
/// version, reconcile on every desired-state change, stop everything on
/// the way out (whatever the way).
async fn run(context: Context, hosted: Arc<Hosted>, stop: CancellationToken) -> Result<(), Error> {
    if !installed(&hosted, &stop).await {
        hosted.status_mut().state = RuntimeState::Stopped;
        return Ok(());
    }
    let config = hosted.config();
    hosted.status_mut().state = RuntimeState::Starting;
    let aggregate = aggregate(&context, &config)?;
    let tracking = track::Tracking::start(&hosted, &aggregate, &context.events);
    hosted.set_aggregate(Some(aggregate.clone()));

    let result = serve(&context, &hosted, &aggregate, &stop).await;

    hosted.set_serving(None);
    hosted.set_aggregate(None);
    aggregate.stop().await;
    tracking.finish().await;
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
    let mut desired_changes = context.desired.watch_desired_version(id);
    let first = initial_version(context, hosted).await?;
    tokio::select! {
        () = stop.cancelled() => return Ok(()),
        started = aggregate.set_version(&first) => started.map_err(Error::other)?,
    }
    hosted.set_serving(Some(first.clone()));
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

/// Waits, for a runtime with hooks, until its `install` hook has succeeded
/// (once per data dir): the only hook a runtime's start waits for. False if
/// `stop` came first.
async fn installed(hosted: &Hosted, stop: &CancellationToken) -> bool {
    if hosted.config().hooks.is_none() {
        return true;
    }
    let mut hooks = hosted.watch_hooks();
    if hooks.borrow().installed == Some(true) {
        return true;
    }
    hosted.status_mut().state = RuntimeState::Installing;
    info!(runtime = %hosted.id, "waiting for the install hook before the first start");
    tokio::select! {
        () = stop.cancelled() => false,
        installed = hooks.wait_for(|hooks| hooks.installed == Some(true)) => installed.is_ok(),
    }
}

/// The version to start with: the desired one if the config still has it,
/// else the config's `active` (which then becomes the desired version).
async fn initial_version(context: &Context, hosted: &Hosted) -> Result<String, Error> {
    let config = hosted.config();
    let id = hosted.id.as_str();
    // The config's `active` seeds desired state only where none was chosen.
    let stored = context
        .desired
        .create_desired_version(id, &config.active)
        .await
        .map_err(Error::other)?;
    match stored {
        None => Ok(config.active.clone()),
        Some(version) if config.version(&version).is_some() => Ok(version),
        Some(unknown) => {
            match context.scope {
                DesiredScope::Local => {
                    warn!(runtime = id, desired = %unknown, starting = %config.active, "the desired version is not in the config; starting the config's active version");
                    let set = context
                        .desired
                        .compare_and_set_desired_version(id, Some(&unknown), &config.active)
                        .await
                        .map_err(Error::other)?;
                    if !set {
                        // Someone wrote a desired version meanwhile: start
                        // with the config's and let the change
                        // notification reconcile it.
                        info!(runtime = id, "the desired version changed while starting");
                    }
                }
                DesiredScope::Fleet => {
                    let problem = not_configured(id, &unknown, &config.version_names());
                    warn!(runtime = id, desired = %unknown, starting = %config.active, "{problem}; starting the config's active version");
                    hosted.status_mut().last_error = Some(problem);
                }
            }
            Ok(config.active.clone())
        }
    }
}

/// Brings the aggregate to the desired version, if it is not there.
async fn reconcile(context: &Context, hosted: &Hosted, aggregate: &Aggregate) {
    let id = hosted.id.as_str();
    let desired = match context.desired.desired_version(id).await {
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
        Err(not_configured(id, &desired, &aggregate.versions()))
    };
    let from = active.unwrap_or_else(|| "none".to_owned());
    match result {
        Ok(()) => {
            hosted.set_serving(Some(desired.clone()));
            metrics::record_switch(id, true);
            context.events.publish(AgentEvent::now(
                id,
                &desired,
                EventKind::Switched,
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
                EventKind::SwitchFailed,
                Some(error.clone()),
            ));
            // A local desired state goes back to what runs, unless a newer
            // request replaced it meanwhile; a fleet's is not this agent's
            // to correct (others may have switched).
            if context.scope == DesiredScope::Local
                && let Some(active) = aggregate.active_version()
                && let Err(revert) = context
                    .desired
                    .compare_and_set_desired_version(id, Some(&desired), &active)
                    .await
            {
                warn!(runtime = id, error = %revert, "cannot put the desired version back");
            }
            hosted.publish_outcome(&desired, Some(error));
        }
    }
}

/// Why `runtime` cannot run `version`: its config lacks it.
fn not_configured(runtime: &str, version: &str, known: &[String]) -> String {
    format!(
        "runtime {runtime} has no version {version:?} in the config (known: {})",
        known.join(", ")
    )
}
