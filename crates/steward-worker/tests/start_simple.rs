//! Integration tests for [`Runner::start_simple`]: a body driven on its
//! id's supervisor task must behave exactly as the same body started with
//! `start_worker` + [`SimpleWorker::spawn`], so most tests run once per
//! [`Api`] and assert the same outcome; the rest check what only the
//! one-task path has (its task count, a body that never returns
//! `Pending`).
//!
//! Tests run on a current-thread runtime with paused time, except where a
//! test needs a thread of its own to notice a runtime that stopped making
//! progress.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use steward_worker::test_util::run_with_deadline;
use steward_worker::{Backoff, Error, Run, Runner, SimpleWorker, Worker, WorkerState};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

/// The two ways of running a simple body under a runner.
#[derive(Debug, Clone, Copy)]
enum Api {
    /// `start_simple`: the body runs on the supervisor task.
    Simple,
    /// `start_worker` + `SimpleWorker::spawn`: the body has its own task.
    Spawned,
}

const BOTH: [Api; 2] = [Api::Simple, Api::Spawned];

impl Api {
    fn start<F, R>(self, runner: &Runner, id: &str, mut make_body: F) -> Result<(), Error>
    where
        F: FnMut() -> R + Send + 'static,
        R: Run,
    {
        match self {
            Api::Simple => runner.start_simple(id, make_body),
            Api::Spawned => runner.start_worker(id, move || {
                let body = make_body();
                async move { Ok(SimpleWorker::spawn(body)) }
            }),
        }
    }
}

/// Sends `()` on the channel when dropped: tells a test that a body's
/// future was dropped (aborted) rather than returning.
struct DropSignal(mpsc::UnboundedSender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// The runner's instance of `id`, as the `SimpleWorker` it must be.
async fn simple_instance(runner: &Runner, id: &str) -> Arc<SimpleWorker> {
    let any: Arc<dyn Any + Send + Sync> = runner.worker(id).await.unwrap();
    any.downcast::<SimpleWorker>()
        .expect("the instance of a simple worker is a SimpleWorker")
}

/// A body that fails twice and then serves until stopped is restarted
/// after the exact delay, and a stop removes it cleanly.
#[tokio::test(start_paused = true)]
async fn a_failing_body_is_restarted_after_the_delay_and_stops_cleanly() {
    for api in BOTH {
        let runner = Runner::builder()
            .backoff(Backoff::constant(Duration::from_secs(1)))
            .build();
        let entries = Arc::new(AtomicUsize::new(0));
        let (entered_tx, mut entered_rx) = mpsc::unbounded_channel();
        let counted = entries.clone();
        api.start(&runner, "w", move || {
            let (entries, entered_tx) = (counted.clone(), entered_tx.clone());
            move |stop: CancellationToken| async move {
                let n = entries.fetch_add(1, Ordering::SeqCst) + 1;
                entered_tx.send(Instant::now()).unwrap();
                if n <= 2 {
                    return Err(Error::msg(format!("failure {n}")));
                }
                stop.cancelled().await;
                Ok(())
            }
        })
        .unwrap();
        let first = entered_rx.recv().await.unwrap();
        let second = entered_rx.recv().await.unwrap();
        let third = entered_rx.recv().await.unwrap();
        assert_eq!(second - first, Duration::from_secs(1), "{api:?}");
        assert_eq!(third - second, Duration::from_secs(1), "{api:?}");
        simple_instance(&runner, "w").await;
        let report = &runner.report().workers["w"];
        assert_eq!(report.state, WorkerState::Running, "{api:?}");
        assert_eq!(report.restarts, 2, "{api:?}");
        assert!(
            report
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("failure 2")),
            "{api:?}: {report:?}"
        );

        runner.stop_and_remove("w").await.unwrap();
        assert!(runner.report().workers.is_empty(), "{api:?}");
        assert_eq!(entries.load(Ordering::SeqCst), 3, "{api:?}");
        runner.kill();
        runner.wait().await.unwrap();
    }
}

/// The handle `worker` hands out controls the body: killing it ends the
/// body, whose `Ok` finishes the id (it is not restarted), and its `wait`
/// returns the body's result.
#[tokio::test(start_paused = true)]
async fn the_handed_out_worker_kills_and_waits_for_the_body() {
    for api in BOTH {
        let runner = Runner::builder()
            .backoff(Backoff::constant(Duration::from_secs(1)))
            .build();
        let entries = Arc::new(AtomicUsize::new(0));
        let counted = entries.clone();
        api.start(&runner, "w", move || {
            let entries = counted.clone();
            move |stop: CancellationToken| async move {
                entries.fetch_add(1, Ordering::SeqCst);
                stop.cancelled().await;
                Ok(())
            }
        })
        .unwrap();
        let instance = simple_instance(&runner, "w").await;
        instance.kill();
        instance.kill();
        assert!(instance.wait().await.is_ok(), "{api:?}");
        // Finished, not restarted: the id goes away.
        assert!(
            matches!(runner.worker("w").await, Err(Error::NotFound { .. })),
            "{api:?}"
        );
        sleep(Duration::from_secs(10)).await;
        assert_eq!(entries.load(Ordering::SeqCst), 1, "{api:?}");
        runner.kill();
        runner.wait().await.unwrap();
    }
}

/// Aborting the instance drops the body at once, `wait` says `Aborted`,
/// and the runner treats it as any failure: it restarts the body.
#[tokio::test(start_paused = true)]
async fn aborting_the_instance_drops_the_body_and_it_is_restarted() {
    for api in BOTH {
        let runner = Runner::builder()
            .backoff(Backoff::constant(Duration::from_secs(1)))
            .build();
        let (dropped_tx, mut dropped_rx) = mpsc::unbounded_channel();
        let (entered_tx, mut entered_rx) = mpsc::unbounded_channel();
        api.start(&runner, "stubborn", move || {
            let (dropped_tx, entered_tx) = (dropped_tx.clone(), entered_tx.clone());
            // Ignores its stop token: only an abort ends it.
            move |_stop: CancellationToken| async move {
                let _signal = DropSignal(dropped_tx);
                entered_tx.send(()).unwrap();
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
        entered_rx.recv().await.unwrap();
        let instance = simple_instance(&runner, "stubborn").await;
        instance.abort();
        assert!(
            matches!(instance.wait().await, Err(Error::Aborted)),
            "{api:?}"
        );
        dropped_rx.recv().await.unwrap();
        // Restarted after its delay, as a new instance.
        entered_rx.recv().await.unwrap();
        let again = simple_instance(&runner, "stubborn").await;
        assert!(!Arc::ptr_eq(&instance, &again), "{api:?}");
        assert_eq!(runner.report().workers["stubborn"].restarts, 1, "{api:?}");
        runner.abort();
        assert!(
            matches!(runner.wait().await, Err(Error::Aborted)),
            "{api:?}"
        );
        dropped_rx.recv().await.unwrap();
    }
}

/// A panic while making the body, or inside it, is that worker's
/// `Panicked` error: recorded, restarted, and no other worker is touched.
#[tokio::test(start_paused = true)]
async fn panics_in_the_maker_and_in_the_body_are_the_workers_errors() {
    for api in BOTH {
        let runner = Runner::builder()
            .backoff(Backoff::constant(Duration::from_secs(1)))
            .build();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        api.start(&runner, "w", move || {
            let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(call != 1, "the maker panics on its first call");
            move |stop: CancellationToken| async move {
                assert!(call != 2, "the body panics on the second start");
                stop.cancelled().await;
                Ok(())
            }
        })
        .unwrap();
        api.start(&runner, "bystander", || {
            |stop: CancellationToken| async move {
                stop.cancelled().await;
                Ok(())
            }
        })
        .unwrap();
        simple_instance(&runner, "w").await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "{api:?}");
        let report = runner.report();
        assert_eq!(report.workers["w"].restarts, 2, "{api:?}");
        let last_error = report.workers["w"].last_error.clone().unwrap();
        assert!(
            last_error.contains("panicked") && last_error.contains("second start"),
            "{api:?}: {last_error}"
        );
        assert_eq!(report.workers["bystander"].restarts, 0, "{api:?}");
        runner.kill();
        runner.wait().await.unwrap();
    }
}

/// A body's fatal error stops the runner, with that error, and every other
/// body is stopped first.
#[tokio::test(start_paused = true)]
async fn a_fatal_error_from_a_body_stops_the_runner() {
    for api in BOTH {
        let runner = Runner::new();
        let stopped = Arc::new(AtomicUsize::new(0));
        for i in 0..3 {
            let stopped = stopped.clone();
            api.start(&runner, &format!("idle{i}"), move || {
                let stopped = stopped.clone();
                move |stop: CancellationToken| async move {
                    stop.cancelled().await;
                    stopped.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            })
            .unwrap();
        }
        for i in 0..3 {
            simple_instance(&runner, &format!("idle{i}")).await;
        }
        api.start(&runner, "fatal", || {
            |_stop| async { Err(Error::TerminateAgent) }
        })
        .unwrap();
        assert!(
            runner.wait().await.unwrap_err().is_terminate_agent(),
            "{api:?}"
        );
        assert_eq!(stopped.load(Ordering::SeqCst), 3, "{api:?}");
    }
}

/// A body that ignores its stop token is aborted at the shutdown timeout
/// and named in the error; a polite one stops at once.
#[tokio::test(start_paused = true)]
async fn a_body_that_ignores_the_shutdown_is_aborted_at_the_timeout() {
    for api in BOTH {
        let runner = Runner::builder()
            .shutdown_timeout(Duration::from_secs(5))
            .build();
        let (dropped_tx, mut dropped_rx) = mpsc::unbounded_channel();
        api.start(&runner, "stubborn", move || {
            let dropped_tx = dropped_tx.clone();
            move |_stop: CancellationToken| async move {
                let _signal = DropSignal(dropped_tx);
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
        api.start(&runner, "polite", || {
            |stop: CancellationToken| async move {
                stop.cancelled().await;
                Ok(())
            }
        })
        .unwrap();
        simple_instance(&runner, "stubborn").await;
        simple_instance(&runner, "polite").await;

        let killed = Instant::now();
        runner.kill();
        let error = runner.wait().await.unwrap_err();
        assert_eq!(killed.elapsed(), Duration::from_secs(5), "{api:?}");
        let Error::ShutdownTimedOut { aborted, .. } = &error else {
            panic!("{api:?}: expected ShutdownTimedOut, got {error:?}");
        };
        assert_eq!(
            aborted.iter().map(|id| &**id).collect::<Vec<_>>(),
            ["stubborn"],
            "{api:?}"
        );
        dropped_rx.recv().await.unwrap();
    }
}

/// `start_simple` runs one task per id; `start_worker` + `spawn` two.
#[tokio::test(start_paused = true)]
async fn a_simple_worker_is_one_task() {
    let metrics = tokio::runtime::Handle::current().metrics();
    for (api, tasks_per_worker) in [(Api::Simple, 1), (Api::Spawned, 2)] {
        let runner = Runner::new();
        let before = metrics.num_alive_tasks();
        for i in 0..10 {
            api.start(&runner, &format!("w{i}"), || {
                |stop: CancellationToken| async move {
                    stop.cancelled().await;
                    Ok(())
                }
            })
            .unwrap();
        }
        for i in 0..10 {
            simple_instance(&runner, &format!("w{i}")).await;
        }
        assert_eq!(
            metrics.num_alive_tasks() - before,
            10 * tasks_per_worker,
            "{api:?}"
        );
        runner.kill();
        runner.wait().await.unwrap();
    }
}

/// A body that fails without ever returning `Pending`, restarted with no
/// delay, must still let the rest of its thread run: here the test's own
/// task, which stops it.
#[test]
fn a_body_failing_at_once_with_no_delay_does_not_starve_its_thread() {
    for api in BOTH {
        run_with_deadline(Duration::from_secs(60), move || async move {
            let runner = Runner::builder()
                .backoff(Backoff::constant(Duration::ZERO))
                .build();
            let entries = Arc::new(AtomicUsize::new(0));
            let counted = entries.clone();
            api.start(&runner, "churn", move || {
                let entries = counted.clone();
                move |_stop| async move {
                    entries.fetch_add(1, Ordering::SeqCst);
                    Err(Error::msg("fails at once"))
                }
            })
            .unwrap();
            // Only runs if the churning supervisor yields.
            while entries.load(Ordering::SeqCst) < 1000 {
                tokio::task::yield_now().await;
            }
            // Its last instance failed, or the stop came between two:
            // either way the id must be gone.
            let _last = runner.stop_and_remove("churn").await;
            assert!(runner.report().workers.is_empty(), "{api:?}");
            runner.kill();
            runner.wait().await.unwrap();
        });
    }
}

/// A body that is slow to stop keeps its id until it has returned, and a
/// `stop_and_remove` waits for exactly that.
#[tokio::test(start_paused = true)]
async fn stop_and_remove_waits_for_the_body_to_return() {
    for api in BOTH {
        let runner = Runner::new();
        api.start(&runner, "slow", || {
            |stop: CancellationToken| async move {
                stop.cancelled().await;
                sleep(Duration::from_secs(2)).await;
                Ok(())
            }
        })
        .unwrap();
        simple_instance(&runner, "slow").await;
        let started = Instant::now();
        runner.stop_worker("slow").unwrap();
        assert_eq!(runner.report().workers["slow"].state, WorkerState::Stopping);
        assert!(
            timeout(Duration::from_millis(1999), runner.stop_and_remove("slow"))
                .await
                .is_err(),
            "{api:?}"
        );
        runner.stop_and_remove("slow").await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(2), "{api:?}");
        runner.kill();
        runner.wait().await.unwrap();
    }
}
