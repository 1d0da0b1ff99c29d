//! One worker id's shared record: what `report`, `worker` and
//! `stop_and_remove` read while the id's supervisor task drives it.
//!
//! Only the supervisor task writes the phase and the instance; every lock
//! here is held for a few field updates and never across an `.await`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Error, Worker, WorkerState};

pub(crate) struct Entry {
    pub(crate) id: Arc<str>,
    /// Cancelled by `stop_worker` or, as a child of the runner's dying
    /// token, by the runner's shutdown. Never reset: a stopped id is
    /// removed, and starting it again creates a new entry.
    pub(crate) stop: CancellationToken,
    /// Woken when an instance starts running and when the entry is removed.
    changed: Notify,
    inner: Mutex<EntryInner>,
}

pub(crate) struct EntryInner {
    pub(crate) phase: WorkerState,
    pub(crate) instance: Option<Arc<dyn Worker>>,
    pub(crate) supervisor: Option<AbortHandle>,
    pub(crate) restarts: u64,
    pub(crate) last_error: Option<Error>,
    pub(crate) started_at: Option<Instant>,
    pub(crate) next_restart_at: Option<Instant>,
    /// Set once, when the entry leaves the runner: the last instance's
    /// result (`Ok` if none was running).
    pub(crate) exit: Option<Result<(), Error>>,
}

impl Entry {
    pub(crate) fn new(id: Arc<str>, stop: CancellationToken) -> Self {
        Self {
            id,
            stop,
            changed: Notify::new(),
            inner: Mutex::new(EntryInner {
                phase: WorkerState::Starting,
                instance: None,
                supervisor: None,
                restarts: 0,
                last_error: None,
                started_at: None,
                next_restart_at: None,
                exit: None,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, EntryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state a report shows: a stop request wins over whatever the
    /// supervisor has not yet noticed.
    pub(crate) fn visible_state(&self, inner: &EntryInner) -> WorkerState {
        if self.stop.is_cancelled() {
            WorkerState::Stopping
        } else {
            inner.phase
        }
    }

    pub(crate) fn running(&self, instance: Arc<dyn Worker>, started_at: Instant) {
        {
            let mut inner = self.lock();
            inner.phase = WorkerState::Running;
            inner.instance = Some(instance);
            inner.started_at = Some(started_at);
            inner.next_restart_at = None;
        }
        self.changed.notify_waiters();
    }

    pub(crate) fn set_phase(&self, phase: WorkerState) {
        self.lock().phase = phase;
    }

    pub(crate) fn exited(&self) {
        self.lock().instance = None;
    }

    pub(crate) fn failed(&self, error: &Error) {
        self.lock().last_error = Some(error.clone());
    }

    pub(crate) fn backing_off(&self, delay: Duration) {
        let mut inner = self.lock();
        inner.phase = WorkerState::BackingOff;
        inner.next_restart_at = Some(Instant::now() + delay);
    }

    pub(crate) fn restarting(&self) {
        let mut inner = self.lock();
        inner.phase = WorkerState::Starting;
        inner.restarts += 1;
        inner.next_restart_at = None;
    }

    /// Records the final result and wakes everyone waiting on this entry.
    /// Returns false if the entry was already removed.
    pub(crate) fn remove(&self, exit: Result<(), Error>) -> bool {
        {
            let mut inner = self.lock();
            if inner.exit.is_some() {
                return false;
            }
            inner.exit = Some(exit);
            inner.instance = None;
            inner.supervisor = None;
        }
        self.changed.notify_waiters();
        true
    }

    /// Waits until an instance is running and returns it: `NotFound` if the
    /// entry goes away first, `Dead` if the runner starts dying.
    pub(crate) async fn running_instance(
        &self,
        runner_dying: &CancellationToken,
    ) -> Result<Arc<dyn Worker>, Error> {
        loop {
            let changed = self.changed.notified();
            if runner_dying.is_cancelled() {
                return Err(Error::Dead);
            }
            {
                let inner = self.lock();
                if inner.exit.is_some() {
                    return Err(Error::NotFound {
                        id: self.id.clone(),
                    });
                }
                if inner.phase == WorkerState::Running
                    && !self.stop.is_cancelled()
                    && let Some(instance) = &inner.instance
                {
                    return Ok(instance.clone());
                }
            }
            tokio::select! {
                () = changed => {}
                () = runner_dying.cancelled() => return Err(Error::Dead),
                // A stop request makes the instance unavailable for good;
                // the removal that follows wakes us through `changed`.
                () = self.stop.cancelled(), if !self.stop.is_cancelled() => {}
            }
        }
    }

    /// Waits until the entry has left the runner and returns the last
    /// instance's result.
    pub(crate) async fn removed(&self) -> Result<(), Error> {
        loop {
            let changed = self.changed.notified();
            if let Some(exit) = &self.lock().exit {
                return exit.clone();
            }
            changed.await;
        }
    }
}
