//! [`Lifecycle`]: the kill/wait bookkeeping every worker needs, in one place.
//!
//! It plays the part of Go's `tomb`: "dying" is a state anyone can observe
//! (a [`CancellationToken`]), the first error recorded wins, and the final
//! result is published once to any number of waiters. It must never run
//! anything itself: it holds state, the owner of the work drives it.

use std::sync::{Mutex, OnceLock, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The shared state of one running worker: dying, dead, and why.
///
/// ```
/// use steward_worker::{Error, Lifecycle};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let lifecycle = Lifecycle::new();
/// let dying = lifecycle.dying();
/// lifecycle.kill_with(Error::msg("disk full"));
/// lifecycle.kill_with(Error::msg("ignored: the first error wins"));
/// assert!(dying.is_cancelled());
///
/// lifecycle.finish(Ok(()));
/// assert_eq!(lifecycle.wait().await.unwrap_err().to_string(), "disk full");
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Lifecycle {
    dying: CancellationToken,
    first_error: Mutex<Option<Error>>,
    result: OnceLock<Result<(), Error>>,
    dead: Notify,
}

impl Lifecycle {
    /// A lifecycle that is alive: not dying, not dead.
    pub fn new() -> Self {
        Self::default()
    }

    /// A lifecycle whose dying token is `dying`: a child token makes the
    /// worker die with its parent, without a task to forward the kill.
    pub(crate) fn with_dying(dying: CancellationToken) -> Self {
        Self {
            dying,
            ..Self::default()
        }
    }

    /// A token that is cancelled as soon as the worker starts dying. Hand
    /// it to the work so it can stop.
    pub fn dying(&self) -> CancellationToken {
        self.dying.clone()
    }

    /// The dying token itself, for callers that only need to look.
    pub(crate) fn dying_token(&self) -> &CancellationToken {
        &self.dying
    }

    /// True once [`kill`](Self::kill) or [`kill_with`](Self::kill_with) was
    /// called.
    pub fn is_dying(&self) -> bool {
        self.dying.is_cancelled()
    }

    /// True once [`finish`](Self::finish) was called.
    pub fn is_dead(&self) -> bool {
        self.result.get().is_some()
    }

    /// Starts dying, without an error. Idempotent.
    pub fn kill(&self) {
        self.dying.cancel();
    }

    /// Starts dying because of `error`. The first error recorded is the one
    /// [`wait`](Self::wait) reports; later ones are dropped.
    pub fn kill_with(&self, error: Error) {
        {
            let mut first = self
                .first_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if first.is_none() {
                *first = Some(error);
            }
        }
        self.dying.cancel();
    }

    /// Marks the worker dead with `result` and wakes every waiter. An error
    /// recorded by [`kill_with`](Self::kill_with) takes precedence over
    /// `result`. Only the first call has an effect; it also marks the
    /// lifecycle dying, so observers never see "dead but not dying".
    pub fn finish(&self, result: Result<(), Error>) {
        let recorded = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let result = match recorded {
            Some(error) => Err(error),
            None => result,
        };
        if self.result.set(result).is_ok() {
            self.dying.cancel();
            self.dead.notify_waiters();
        }
    }

    /// The final result, if the worker is dead.
    pub fn result(&self) -> Option<Result<(), Error>> {
        self.result.get().cloned()
    }

    /// Waits until [`finish`](Self::finish) has been called and returns the
    /// final result. Cancel safe, and may be awaited by any number of tasks.
    pub async fn wait(&self) -> Result<(), Error> {
        loop {
            // Register before checking, so a `finish` between the check and
            // the await still wakes us.
            let dead = self.dead.notified();
            if let Some(result) = self.result.get() {
                return result.clone();
            }
            dead.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn many_waiters_get_the_same_result() {
        let lifecycle = Arc::new(Lifecycle::new());
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let lifecycle = lifecycle.clone();
                tokio::spawn(async move { lifecycle.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        lifecycle.finish(Err(Error::msg("gone")));
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap().unwrap_err().to_string(), "gone");
        }
        // And after the fact, too.
        assert_eq!(lifecycle.wait().await.unwrap_err().to_string(), "gone");
    }

    #[tokio::test]
    async fn finish_is_first_call_wins_and_implies_dying() {
        let lifecycle = Lifecycle::new();
        assert!(!lifecycle.is_dying() && !lifecycle.is_dead());
        lifecycle.finish(Ok(()));
        lifecycle.finish(Err(Error::msg("late")));
        assert!(lifecycle.is_dying() && lifecycle.is_dead());
        assert!(lifecycle.wait().await.is_ok());
    }

    #[tokio::test]
    async fn recorded_error_beats_clean_finish() {
        let lifecycle = Lifecycle::new();
        lifecycle.kill_with(Error::TerminateAgent);
        lifecycle.finish(Ok(()));
        assert!(
            lifecycle
                .result()
                .unwrap()
                .unwrap_err()
                .is_terminate_agent()
        );
    }
}
