//! Runner settings and their defaults. This module only collects settings;
//! it must never start anything but the runner itself in [`RunnerBuilder::build`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Backoff, Error, Runner};

type ErrorPredicate = Arc<dyn Fn(&Error) -> bool + Send + Sync>;
type ErrorOrder = Arc<dyn Fn(&Error, &Error) -> bool + Send + Sync>;

/// A limit on restarts: more than `max_restarts` restarts of one worker
/// within the sliding window `within` escalate to a fatal
/// [`Error::RestartIntensityExceeded`] (Erlang's "intensity" and "period").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartIntensity {
    /// Restarts allowed inside the window.
    pub max_restarts: u32,
    /// The length of the sliding window.
    pub within: Duration,
}

/// Everything a runner needs to decide; built by [`RunnerBuilder`].
#[derive(Clone)]
pub(crate) struct Params {
    pub(crate) name: Arc<str>,
    pub(crate) is_fatal: ErrorPredicate,
    pub(crate) should_restart: ErrorPredicate,
    pub(crate) more_important: ErrorOrder,
    pub(crate) backoff: Backoff,
    pub(crate) intensity: Option<RestartIntensity>,
    pub(crate) shutdown_timeout: Duration,
}

/// Configures and starts a [`Runner`].
///
/// | setting | default |
/// |---|---|
/// | [`name`](Self::name) | `"runner"` (appears in logs) |
/// | [`is_fatal`](Self::is_fatal) | only [`Error::TerminateAgent`] is fatal |
/// | [`should_restart`](Self::should_restart) | every non-fatal error restarts |
/// | [`more_important`](Self::more_important) | `TerminateAgent` beats anything; otherwise the first fatal error stays |
/// | [`restart_delay`](Self::restart_delay) | 3 s, doubling per consecutive failure up to 60 s, ±10 % jitter, reset after 60 s of stable running (see [`Backoff`]) |
/// | [`restart_intensity`](Self::restart_intensity) | none: a failing worker is retried forever, at the backoff's pace |
/// | [`shutdown_timeout`](Self::shutdown_timeout) | 30 s |
///
/// The defaults suit a long-lived agent, where one part failing should
/// never take the others down. Juju's runner defaults to "every error is
/// fatal"; pass `.is_fatal(|_| true)` for that behaviour.
#[must_use = "a builder does nothing until `build` is called"]
pub struct RunnerBuilder {
    params: Params,
}

impl fmt::Debug for RunnerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerBuilder")
            .field("name", &self.params.name)
            .field("backoff", &self.params.backoff)
            .field("intensity", &self.params.intensity)
            .field("shutdown_timeout", &self.params.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for RunnerBuilder {
    fn default() -> Self {
        Self {
            params: Params {
                name: Arc::from("runner"),
                is_fatal: Arc::new(Error::is_terminate_agent),
                should_restart: Arc::new(|_| true),
                more_important: Arc::new(|new, current| {
                    new.is_terminate_agent() && !current.is_terminate_agent()
                }),
                backoff: Backoff::default(),
                intensity: None,
                shutdown_timeout: Duration::from_secs(30),
            },
        }
    }
}

impl RunnerBuilder {
    /// The defaults of the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// A name for logs and reports; useful when runners nest.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.params.name = name.into();
        self
    }

    /// Decides whether an error stops the whole runner. A fatal error from
    /// any worker (including one being stopped, and a start function's
    /// error) kills every other worker and becomes a candidate for the
    /// runner's own result.
    pub fn is_fatal(mut self, is_fatal: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        self.params.is_fatal = Arc::new(is_fatal);
        self
    }

    /// Decides whether a worker that failed with a non-fatal error is
    /// restarted (`true`) or forgotten (`false`).
    pub fn should_restart(
        mut self,
        should_restart: impl Fn(&Error) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.params.should_restart = Arc::new(should_restart);
        self
    }

    /// `more_important(new, current)` returns true when `new` should replace
    /// `current` as the error the runner reports. Ties (both `false`) keep
    /// the error recorded first, so the order is deterministic: the fatal
    /// error that triggered shutdown stays unless a later one is strictly
    /// more important. It runs under the runner's lock: keep it a pure
    /// comparison, never calling back into the runner.
    pub fn more_important(
        mut self,
        more_important: impl Fn(&Error, &Error) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.params.more_important = Arc::new(more_important);
        self
    }

    /// The first restart delay (Juju's `RestartDelay`), keeping the
    /// rest of the backoff. `Duration::ZERO` restarts at once.
    pub fn restart_delay(mut self, delay: Duration) -> Self {
        self.params.backoff = self.params.backoff.initial(delay);
        self
    }

    /// Replaces the whole restart backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.params.backoff = backoff;
        self
    }

    /// Escalates a crash loop to a fatal error; see [`RestartIntensity`].
    pub fn restart_intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.params.intensity = Some(RestartIntensity {
            max_restarts,
            within,
        });
        self
    }

    /// How long a shutdown waits for workers to stop after `kill` before
    /// it aborts the rest and reports them.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.params.shutdown_timeout = timeout;
        self
    }

    /// Starts the runner, with no workers yet.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn build(self) -> Runner {
        Runner::with_params(self.params)
    }
}
