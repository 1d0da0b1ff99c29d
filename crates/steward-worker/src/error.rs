//! The one error type of this crate: what a worker ends with and what the
//! runner's own operations fail with.
//!
//! It must stay cheap to clone, because [`Worker::wait`](crate::Worker::wait)
//! hands the same result to every waiter: every variant holds only `Arc`s,
//! small copies or nothing. A worker's own error is kept whole behind an
//! `Arc`, so its `source()` chain and its concrete type (see
//! [`Error::downcast_ref`]) survive any number of clones.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A boxed error as produced by `?` on most error types; the input of
/// [`Error::other`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a worker stopped, or why a runner operation was refused.
///
/// Variants other than [`Error::Other`] are produced by this crate and are
/// meant to be matched on; a worker's own failures travel as `Other` and can
/// be recovered with [`Error::downcast_ref`].
#[derive(Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runner has finished (or is shutting down) and accepts no more
    /// work. Start a new runner instead.
    #[error("worker runner is not running")]
    Dead,

    /// The whole agent should stop. Nothing in this crate produces it: a
    /// worker returns it to ask for termination, and the default
    /// [`is_fatal`](crate::RunnerBuilder::is_fatal) and
    /// [`more_important`](crate::RunnerBuilder::more_important) rules treat it
    /// as fatal and as the most important error.
    #[error("agent should be terminated")]
    TerminateAgent,

    /// `start_worker` was called with an id that is already starting,
    /// running or waiting to restart. Stop it first, or pick another id.
    #[error("worker {id:?} already exists; stop it first or use another id")]
    AlreadyExists {
        /// The id that is taken.
        id: Arc<str>,
    },

    /// No worker with this id is known to the runner (never started,
    /// finished, or stopped and removed).
    #[error("no worker {id:?} in this runner")]
    NotFound {
        /// The id that was looked up.
        id: Arc<str>,
    },

    /// The worker's code (or its start function) panicked. The panic was
    /// caught: only that worker is affected.
    #[error("worker panicked: {message}")]
    Panicked {
        /// The panic payload, when it was a string.
        message: Arc<str>,
    },

    /// The worker was cancelled without running its clean-up, because it
    /// did not stop within the shutdown timeout or was aborted explicitly.
    #[error("worker was aborted before it finished")]
    Aborted,

    /// A worker restarted more often than the runner's restart intensity
    /// allows; the runner escalates this to a fatal error so a crash loop
    /// surfaces instead of spinning forever.
    #[error(
        "worker {id:?} restarted more than {max_restarts} times within {}; giving up (last error: {last_error})",
        humantime::format_duration(*within)
    )]
    RestartIntensityExceeded {
        /// The worker that kept failing.
        id: Arc<str>,
        /// The configured limit that was exceeded.
        max_restarts: u32,
        /// The configured sliding window.
        within: Duration,
        /// The error of its last failure.
        #[source]
        last_error: Arc<Error>,
    },

    /// The runner's graceful shutdown timed out, so it aborted the workers
    /// that were still running. Reported only when no fatal error is more
    /// important.
    #[error(
        "shutdown did not finish within {}; aborted workers: {}",
        humantime::format_duration(*timeout),
        id_list(aborted)
    )]
    ShutdownTimedOut {
        /// The configured grace period.
        timeout: Duration,
        /// The ids that had to be aborted, sorted.
        aborted: Arc<[Arc<str>]>,
    },

    /// A watcher's stream of changes ended cleanly while its consumer still
    /// wanted changes. Watchers end only when killed or on an error, so
    /// this means the thing being watched went away.
    #[error("watcher stopped unexpectedly")]
    WatcherStopped,

    /// The wait was given up because its cancellation token fired (the
    /// worker waiting is being stopped).
    #[error("cancelled while waiting")]
    Cancelled,

    /// `error` ended the work, and cleaning up afterwards failed too. The
    /// first error is the one that matters; [`Error::primary`] returns it,
    /// and [`Error::downcast_ref`] looks through to it.
    #[error("{error}; cleanup also failed: {}", error_list(cleanup, false))]
    WithCleanup {
        /// The error that ended the work.
        error: Arc<Error>,
        /// What failed while cleaning up (stopping a watcher, tearing down).
        cleanup: Arc<[Error]>,
    },

    /// An error of the worker's own, kept whole.
    #[error(transparent)]
    Other(Arc<dyn StdError + Send + Sync + 'static>),
}

impl Error {
    /// Wraps any error (or anything `?` could box, such as `anyhow::Error`
    /// or a `String`) as a worker error.
    pub fn other(error: impl Into<BoxError>) -> Self {
        Error::Other(Arc::from(error.into()))
    }

    /// A worker error with just a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error::Other(Arc::new(Message(message.to_string())))
    }

    /// The worker's own error, if this is [`Error::Other`] holding a `T`
    /// (looking through [`Error::WithCleanup`]).
    pub fn downcast_ref<T: StdError + 'static>(&self) -> Option<&T> {
        match self.primary() {
            Error::Other(inner) => inner.downcast_ref::<T>(),
            _ => None,
        }
    }

    /// The error that ended the work: itself, or the first error of
    /// [`Error::WithCleanup`].
    pub fn primary(&self) -> &Error {
        match self {
            Error::WithCleanup { error, .. } => error.primary(),
            other => other,
        }
    }

    /// Attaches errors that happened while cleaning up after `self`;
    /// returns `self` unchanged when there are none.
    pub fn with_cleanup(self, cleanup: Vec<Error>) -> Error {
        if cleanup.is_empty() {
            return self;
        }
        Error::WithCleanup {
            error: Arc::new(self),
            cleanup: Arc::from(cleanup),
        }
    }

    /// True for [`Error::TerminateAgent`] (looking through
    /// [`Error::WithCleanup`]).
    pub fn is_terminate_agent(&self) -> bool {
        matches!(self.primary(), Error::TerminateAgent)
    }

    /// The message of a caught panic payload.
    pub(crate) fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let message: Arc<str> = if let Some(s) = payload.downcast_ref::<&'static str>() {
            Arc::from(*s)
        } else if let Some(s) = payload.downcast_ref::<String>() {
            Arc::from(s.as_str())
        } else {
            Arc::from("non-string panic payload")
        };
        Error::Panicked { message }
    }
}

impl fmt::Debug for Error {
    // Debug shows the message and the chain, which is what a log or a test
    // failure needs; the derived form would print Arc internals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Error::WithCleanup { error, cleanup } = self {
            return write!(
                f,
                "{error:?}; cleanup also failed: {}",
                error_list(cleanup, true)
            );
        }
        write!(f, "{self}")?;
        let mut source = self.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl From<BoxError> for Error {
    fn from(error: BoxError) -> Self {
        Error::other(error)
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::other(error)
    }
}

/// A plain message as an error, for [`Error::msg`].
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Message {}

/// Writes items with a separator between them, each by `write_item`.
struct Joined<'a, T> {
    items: &'a [T],
    separator: &'static str,
    write_item: fn(&T, &mut fmt::Formatter<'_>) -> fmt::Result,
}

impl<T> fmt::Display for Joined<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(self.separator)?;
            }
            (self.write_item)(item, f)?;
        }
        Ok(())
    }
}

/// Ids as `"a", "b"`.
fn id_list(ids: &[Arc<str>]) -> Joined<'_, Arc<str>> {
    Joined {
        items: ids,
        separator: ", ",
        write_item: |id, f| write!(f, "{id:?}"),
    }
}

/// Errors as `a; b` (with their source chains when `chains`).
fn error_list(errors: &[Error], chains: bool) -> Joined<'_, Error> {
    Joined {
        items: errors,
        separator: "; ",
        write_item: if chains {
            |error, f| write!(f, "{error:?}")
        } else {
            |error, f| write!(f, "{error}")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn clone_keeps_type_and_source_chain() {
        let err = Error::other(Outer(std::io::Error::other("inner")));
        let copy = err.clone();
        assert!(copy.downcast_ref::<Outer>().is_some());
        assert_eq!(copy.to_string(), "outer");
        // `Other` is transparent: the outer error's own source comes next.
        assert_eq!(copy.source().unwrap().to_string(), "inner");
        assert_eq!(format!("{copy:?}"), "outer: inner");
    }

    #[test]
    fn intensity_error_names_worker_and_keeps_last_error() {
        let err = Error::RestartIntensityExceeded {
            id: "db".into(),
            max_restarts: 3,
            within: Duration::from_secs(10),
            last_error: Arc::new(Error::msg("connection refused")),
        };
        assert_eq!(
            err.to_string(),
            "worker \"db\" restarted more than 3 times within 10s; giving up \
             (last error: connection refused)"
        );
        assert_eq!(err.source().unwrap().to_string(), "connection refused");
    }

    #[test]
    fn cleanup_errors_never_mask_the_first_error() {
        let first = Error::other(Outer(std::io::Error::other("inner")));
        assert!(
            first
                .clone()
                .with_cleanup(Vec::new())
                .downcast_ref::<Outer>()
                .is_some()
        );
        let err = first.with_cleanup(vec![Error::msg("tear down"), Error::WatcherStopped]);
        assert_eq!(
            err.to_string(),
            "outer; cleanup also failed: tear down; watcher stopped unexpectedly"
        );
        assert_eq!(
            format!("{err:?}"),
            "outer: inner; cleanup also failed: tear down; watcher stopped unexpectedly"
        );
        assert!(err.downcast_ref::<Outer>().is_some());
        assert!(
            Error::TerminateAgent
                .with_cleanup(vec![Error::Aborted])
                .is_terminate_agent()
        );
    }

    #[test]
    fn shutdown_error_lists_ids() {
        let err = Error::ShutdownTimedOut {
            timeout: Duration::from_millis(1500),
            aborted: Arc::from(vec![Arc::<str>::from("a"), Arc::from("b")]),
        };
        assert_eq!(
            err.to_string(),
            "shutdown did not finish within 1s 500ms; aborted workers: \"a\", \"b\""
        );
    }

    #[test]
    fn panic_payloads_become_messages() {
        let err = Error::from_panic(Box::new("boom"));
        assert_eq!(err.to_string(), "worker panicked: boom");
        let err = Error::from_panic(Box::new(String::from("bang")));
        assert_eq!(err.to_string(), "worker panicked: bang");
        let err = Error::from_panic(Box::new(7_u8));
        assert_eq!(err.to_string(), "worker panicked: non-string panic payload");
    }
}
