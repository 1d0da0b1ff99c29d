//! Turning panics into errors, so one misbehaving worker cannot take its
//! supervisor down. This module only converts; it must never decide what a
//! panic means (that is the supervisor's `is_fatal`).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::Error;

pin_project_lite::pin_project! {
    /// A future that resolves to [`Error::Panicked`] instead of unwinding
    /// when the inner future panics.
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T> Future for CatchUnwind<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        // Unwind safety: after a panic the inner future is never polled
        // again (the caller gets `Ready`), so no broken invariant of it can
        // be observed.
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => Poll::Ready(Err(Error::from_panic(payload))),
        }
    }
}

/// Runs `future`, converting a panic during any of its polls into
/// [`Error::Panicked`].
pub(crate) fn catch_panic<F, T>(future: F) -> CatchUnwind<F>
where
    F: Future<Output = Result<T, Error>>,
{
    CatchUnwind { inner: future }
}
