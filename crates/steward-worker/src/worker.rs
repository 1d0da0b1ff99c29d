//! The [`Worker`] trait: the one interface every supervised thing exposes.
//!
//! This module owns only the contract. It must never grow methods that tie a
//! worker to how it is run (threads, tasks, processes): a runner, a runtime
//! host and a test double all have to implement it the same way.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::Error;

/// A boxed, `Send` future; what object-safe async methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something running that can be asked to stop and waited for.
///
/// This is Juju's `Worker { Kill(); Wait() error }`, made async:
///
/// - [`kill`](Worker::kill) asks the worker to stop. It returns at once, may
///   be called any number of times, and never fails.
/// - [`wait`](Worker::wait) resolves when the worker has stopped, with the
///   reason. It can be awaited any number of times, from any number of
///   tasks, before or after the worker stops; every call gets the same
///   result. Dropping a `wait` future has no effect on the worker.
/// - `Ok(())` means the worker finished its job; a supervisor does not
///   restart it. A worker that stops because it was killed should also
///   return `Ok(())` unless something actually went wrong.
///
/// The trait is object safe: supervisors hold workers as
/// `Arc<dyn Worker>`, and because `Worker: Any` such a handle can be turned
/// back into the concrete type (see [`Runner::worker`](crate::Runner::worker)).
///
/// Most workers are written as an async closure or a [`Run`](crate::Run)
/// type and started with [`SimpleWorker::spawn`](crate::SimpleWorker::spawn);
/// implement the trait directly (usually around a
/// [`Lifecycle`](crate::Lifecycle)) for types that run several tasks or own
/// something other than a task, such as a child process.
pub trait Worker: Any + Send + Sync {
    /// Asks the worker to stop, without waiting for it to do so.
    fn kill(&self);

    /// Waits for the worker to stop and returns why it stopped.
    fn wait(&self) -> BoxFuture<'_, Result<(), Error>>;

    /// Stops the worker *now*, skipping its clean-up where that is possible.
    ///
    /// Supervisors call this only on workers that ignored
    /// [`kill`](Worker::kill) for longer than a shutdown timeout. The default
    /// just kills; workers that own a task abort it.
    fn abort(&self) {
        self.kill();
    }
}

impl<W: Worker + ?Sized> Worker for Arc<W> {
    fn kill(&self) {
        (**self).kill();
    }

    fn wait(&self) -> BoxFuture<'_, Result<(), Error>> {
        (**self).wait()
    }

    fn abort(&self) {
        (**self).abort();
    }
}

impl<W: Worker + ?Sized> Worker for Box<W> {
    fn kill(&self) {
        (**self).kill();
    }

    fn wait(&self) -> BoxFuture<'_, Result<(), Error>> {
        (**self).wait()
    }

    fn abort(&self) {
        (**self).abort();
    }
}

/// Implements [`Worker`] for a type by delegating to one of its fields, for
/// wrappers whose lifetime is exactly that of the worker they hold.
macro_rules! delegate_worker {
    ([$($generics:tt)*] $type:ty => $field:ident) => {
        impl<$($generics)*> $crate::Worker for $type {
            fn kill(&self) {
                $crate::Worker::kill(&self.$field);
            }

            fn wait(&self) -> $crate::BoxFuture<'_, Result<(), $crate::Error>> {
                $crate::Worker::wait(&self.$field)
            }

            fn abort(&self) {
                $crate::Worker::abort(&self.$field);
            }
        }
    };
}
pub(crate) use delegate_worker;
