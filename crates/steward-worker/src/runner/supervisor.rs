//! The per-id supervision loop: start an instance, wait for it, decide,
//! back off, start again.
//!
//! One task per id runs this loop, so everything that happens to an id is
//! sequential by construction: an instance is started only after the
//! previous one's `wait()` returned, which is what makes "at most one live
//! instance per id" hold without any cross-task coordination. This module
//! must never hold a lock across an `.await`.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::entry::Entry;
use super::{Shared, Start};
use crate::panic::catch_panic;
use crate::{Error, RestartIntensity, Worker, WorkerState};

/// Owned by the supervisor future from the moment it is created, so the
/// runner's bookkeeping is updated however the task ends: normal return,
/// panic, or abort (even before its first poll).
pub(crate) struct ExitGuard {
    pub(crate) shared: Arc<Shared>,
    pub(crate) entry: Arc<Entry>,
    /// The result to publish on exit; `None` means the task was aborted.
    pub(crate) exit: Option<Result<(), Error>>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let exit = self.exit.take().unwrap_or(Err(Error::Aborted));
        self.shared.supervisor_exited(&self.entry, exit);
    }
}

pub(crate) async fn supervise(mut guard: ExitGuard, mut start: Start) {
    let entry = guard.entry.clone();
    let params = &guard.shared.params;
    let mut backoff = params.backoff.start();
    let mut recent_restarts = VecDeque::new();
    let exit = loop {
        let (result, ran_for) =
            run_instance(&entry, &mut start, guard.shared.lifecycle.dying_token()).await;
        let error = match result {
            Ok(()) => {
                if entry.stop.is_cancelled() {
                    debug!("worker stopped");
                } else {
                    info!("worker finished; it will not be restarted");
                }
                break Ok(());
            }
            Err(error) => error,
        };
        if (params.is_fatal)(&error) {
            guard.shared.fatal(&entry.id, error.clone());
            break Err(error);
        }
        entry.failed(&error);
        if entry.stop.is_cancelled() {
            debug!(error = ?error, "worker stopped with an error");
            break Err(error);
        }
        if !(params.should_restart)(&error) {
            info!(error = ?error, "worker failed and will not be restarted");
            break Err(error);
        }
        if let Some(limit) = params.intensity
            && intensity_exceeded(&mut recent_restarts, limit)
        {
            guard.shared.fatal(
                &entry.id,
                Error::RestartIntensityExceeded {
                    id: entry.id.clone(),
                    max_restarts: limit.max_restarts,
                    within: limit.within,
                    last_error: Arc::new(error.clone()),
                },
            );
            break Err(error);
        }
        let delay = backoff.next_delay(ran_for);
        warn!(error = ?error, delay = ?delay, "worker failed; restarting after delay");
        entry.backing_off(delay);
        if delay.is_zero() {
            // An instance can fail without ever returning `Pending` (a
            // start function or a driven body that errs at once); without
            // this, a zero delay would loop inside one poll and starve
            // every other task on this thread.
            tokio::task::coop::consume_budget().await;
        } else {
            tokio::select! {
                biased;
                () = entry.stop.cancelled() => {}
                () = tokio::time::sleep(delay) => {}
            }
        }
        if entry.stop.is_cancelled() {
            // Stopped during its delay: never started again, and there
            // was no instance to report an exit for.
            debug!("worker stopped while waiting to restart");
            break Ok(());
        }
        entry.restarting();
    };
    guard.exit = Some(exit);
}

/// Starts one instance and waits for it. Returns its result and how long
/// it ran (`None` if it never started).
async fn run_instance(
    entry: &Entry,
    start: &mut Start,
    runner_dying: &CancellationToken,
) -> (Result<(), Error>, Option<Duration>) {
    if entry.stop.is_cancelled() {
        return (Ok(()), None);
    }
    debug!("starting worker");
    let (instance, body): (Arc<dyn Worker>, _) = match start {
        Start::Worker(factory) => {
            // The factory is awaited to completion even if a stop arrives
            // meanwhile (start functions need not be cancel safe); the
            // instance is then killed at once. A hung factory is bounded by
            // the runner's shutdown timeout.
            let started = match catch_unwind(AssertUnwindSafe(factory)) {
                Ok(start) => catch_panic(start).await,
                Err(payload) => Err(Error::from_panic(payload)),
            };
            match started {
                Ok(instance) => (instance, None),
                Err(error) => {
                    debug!(error = ?error, "worker failed to start");
                    return (Err(error), None);
                }
            }
        }
        // The body's kill token is a child of the id's stop token, which
        // is a child of the runner's: a stop or a shutdown reaches the
        // body without waking this task first.
        Start::Body(make) => match catch_unwind(AssertUnwindSafe(|| make(&entry.stop))) {
            Ok((worker, body)) => (Arc::new(worker) as Arc<dyn Worker>, Some(body)),
            Err(payload) => {
                let error = Error::from_panic(payload);
                debug!(error = ?error, "worker failed to start");
                return (Err(error), None);
            }
        },
    };
    let started_at = Instant::now();
    entry.running(instance.clone(), started_at);
    debug!("worker started");
    // `stop_worker` kills a running instance itself, straight from the
    // caller's task: waking this task first would add a hand-off to every
    // stop. It may have looked for the instance before `running` published
    // it, so check once here.
    if entry.stop.is_cancelled() {
        instance.kill();
    }
    let result = match body {
        Some(body) => body.await,
        None => {
            let wait = catch_panic(instance.wait());
            tokio::pin!(wait);
            tokio::select! {
                biased;
                result = &mut wait => result,
                () = runner_dying.cancelled() => {
                    entry.set_phase(WorkerState::Stopping);
                    instance.kill();
                    wait.await
                }
            }
        }
    };
    entry.exited();
    (result, Some(started_at.elapsed()))
}

/// Records a restart now and reports whether the sliding window now holds
/// more restarts than allowed.
fn intensity_exceeded(recent: &mut VecDeque<Instant>, limit: RestartIntensity) -> bool {
    let now = Instant::now();
    while recent
        .front()
        .is_some_and(|&at| now.saturating_duration_since(at) >= limit.within)
    {
        recent.pop_front();
    }
    recent.push_back(now);
    recent.len() > limit.max_restarts as usize
}
