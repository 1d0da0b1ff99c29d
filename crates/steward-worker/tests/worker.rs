//! The `Worker` contract and its adapters: `SimpleWorker` (closure and
//! `Run` type) and a hand-written worker around `Lifecycle`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use steward_worker::{BoxFuture, Error, Lifecycle, Run, Runner, SimpleWorker, Worker};
use tokio_util::sync::CancellationToken;

fn until_killed() -> SimpleWorker {
    SimpleWorker::spawn(|stop: CancellationToken| async move {
        stop.cancelled().await;
        Ok(())
    })
}

/// Workers of different kinds live behind one `dyn Worker` type: the trait
/// is object safe (this would not compile otherwise).
#[tokio::test(start_paused = true)]
async fn trait_is_object_safe() {
    let lifecycle_worker = LifecycleWorker::start();
    let workers: Vec<Box<dyn Worker>> = vec![
        Box::new(until_killed()),
        Box::new(Runner::new()),
        Box::new(lifecycle_worker),
    ];
    let shared: Arc<dyn Worker> = Arc::new(until_killed());
    for worker in &workers {
        worker.kill();
    }
    shared.kill();
    for worker in &workers {
        assert!(worker.wait().await.is_ok());
    }
    assert!(shared.wait().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn kill_is_idempotent_and_wait_is_repeatable_from_many_tasks() {
    let worker = Arc::new(SimpleWorker::spawn(|stop: CancellationToken| async move {
        stop.cancelled().await;
        Err(Error::msg("stopped badly"))
    }));
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let worker = worker.clone();
            tokio::spawn(async move { worker.wait().await })
        })
        .collect();
    worker.kill();
    worker.kill();
    worker.kill();
    for waiter in waiters {
        assert_eq!(
            waiter.await.unwrap().unwrap_err().to_string(),
            "stopped badly"
        );
    }
    for _ in 0..3 {
        assert_eq!(
            worker.wait().await.unwrap_err().to_string(),
            "stopped badly"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn closure_result_is_the_worker_result() {
    let done = SimpleWorker::spawn(|_stop| async { Ok(()) });
    assert!(done.wait().await.is_ok());
    let failed = SimpleWorker::spawn(|_stop| async { Err(Error::msg("no disk")) });
    assert_eq!(failed.wait().await.unwrap_err().to_string(), "no disk");
}

#[tokio::test(start_paused = true)]
async fn panic_in_body_becomes_panicked_error() {
    let worker = SimpleWorker::spawn(|_stop| async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        panic!("kaboom");
    });
    match worker.wait().await {
        Err(Error::Panicked { message }) => assert_eq!(&*message, "kaboom"),
        other => panic!("expected Panicked, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn abort_ends_a_worker_that_ignores_kill() {
    let worker = SimpleWorker::spawn(|_stop| std::future::pending::<Result<(), Error>>());
    worker.kill();
    let still_running = tokio::time::timeout(Duration::from_secs(60), worker.wait()).await;
    assert!(
        still_running.is_err(),
        "a worker that ignores kill keeps running"
    );
    worker.abort();
    assert!(matches!(worker.wait().await, Err(Error::Aborted)));
}

struct Counter {
    ticks: Arc<AtomicUsize>,
}

impl Run for Counter {
    async fn run(self, stop: CancellationToken) -> Result<(), Error> {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                _ = interval.tick() => { self.ticks.fetch_add(1, Ordering::SeqCst); }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_type_is_a_worker_body() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let worker = SimpleWorker::spawn(Counter {
        ticks: ticks.clone(),
    });
    // Ticks at 0 s, 1 s, 2 s and 3 s.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    worker.kill();
    assert!(worker.wait().await.is_ok());
    assert_eq!(ticks.load(Ordering::SeqCst), 4);
}

/// A worker written by hand around `Lifecycle`: two tasks, one result.
struct LifecycleWorker {
    lifecycle: Arc<Lifecycle>,
}

impl LifecycleWorker {
    fn start() -> Self {
        let lifecycle = Arc::new(Lifecycle::new());
        let (a, b) = (lifecycle.dying(), lifecycle.dying());
        let owner = lifecycle.clone();
        tokio::spawn(async move {
            let first = tokio::spawn(async move { a.cancelled().await });
            let second = tokio::spawn(async move { b.cancelled().await });
            let _ = tokio::join!(first, second);
            owner.finish(Ok(()));
        });
        Self { lifecycle }
    }
}

impl Worker for LifecycleWorker {
    fn kill(&self) {
        self.lifecycle.kill();
    }

    fn wait(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.lifecycle.wait())
    }
}

#[tokio::test(start_paused = true)]
async fn a_hand_written_worker_reports_its_first_error() {
    let worker = LifecycleWorker::start();
    worker.lifecycle.kill_with(Error::msg("lost quorum"));
    assert_eq!(worker.wait().await.unwrap_err().to_string(), "lost quorum");
}
