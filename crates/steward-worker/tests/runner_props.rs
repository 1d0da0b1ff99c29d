//! Property test: random sequences of start / stop / fail / finish / kill
//! never show two live instances of one id, and always end with the runner
//! finished and every instance gone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::time::Duration;

use proptest::prelude::*;
use steward_worker::test_util::TestStarter;
use steward_worker::{Backoff, Error, Runner, RunnerState, Worker};

const IDS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Start(usize),
    Stop(usize),
    StopAndRemove(usize),
    /// The current instance fails with a non-fatal error.
    Fail(usize),
    /// The current instance fails with a fatal error.
    FailFatal(usize),
    /// The current instance finishes cleanly.
    Finish(usize),
    /// Make the next starts of this id fail (or succeed again).
    BreakStarts(usize, bool),
    /// Make this id's instances take a while to stop once killed.
    SlowStops(usize, u64),
    /// Let paused time run for a while.
    Advance(u64),
    /// Let every ready task run, without moving the clock.
    Settle,
    Kill,
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..IDS;
    prop_oneof![
        4 => id.clone().prop_map(Op::Start),
        2 => id.clone().prop_map(Op::Stop),
        1 => id.clone().prop_map(Op::StopAndRemove),
        3 => id.clone().prop_map(Op::Fail),
        1 => id.clone().prop_map(Op::FailFatal),
        1 => id.clone().prop_map(Op::Finish),
        1 => (id.clone(), any::<bool>()).prop_map(|(id, broken)| Op::BreakStarts(id, broken)),
        1 => (id, 0u64..30).prop_map(|(id, ms)| Op::SlowStops(id, ms)),
        3 => (0u64..40).prop_map(Op::Advance),
        3 => Just(Op::Settle),
        1 => Just(Op::Kill),
    ]
}

async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

async fn run_ops(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runner = Runner::builder()
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .is_fatal(|error| error.to_string() == "fatal")
        .build();
    let starters: Vec<TestStarter> = (0..IDS).map(|_| TestStarter::new()).collect();
    let name = |id: usize| format!("w{id}");

    for op in ops {
        match op {
            Op::Start(id) => {
                let result = runner.start_worker(name(id), starters[id].factory());
                match result {
                    Ok(()) => {
                        // Registered synchronously, before any task ran.
                        prop_assert!(!runner.is_stopping());
                        prop_assert!(runner.worker_names().contains(&name(id)));
                    }
                    Err(Error::AlreadyExists { .. }) => {
                        prop_assert!(runner.worker_names().contains(&name(id)));
                    }
                    Err(Error::Dead) => prop_assert!(runner.is_stopping()),
                    Err(other) => prop_assert!(false, "start_worker: unexpected {other:?}"),
                }
            }
            Op::Stop(id) => match runner.stop_worker(&name(id)) {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(Error::Dead) => prop_assert!(runner.is_stopping()),
                Err(other) => prop_assert!(false, "stop_worker: unexpected {other:?}"),
            },
            Op::StopAndRemove(id) => {
                let id_name = name(id);
                let removal =
                    tokio::time::timeout(Duration::from_secs(60), runner.stop_and_remove(&id_name));
                match removal.await {
                    Ok(Err(Error::Dead)) => prop_assert!(runner.is_stopping()),
                    Ok(_) => prop_assert!(
                        !runner.worker_names().contains(&name(id)) || runner.is_stopping(),
                        "id still present after stop_and_remove"
                    ),
                    Err(_) => prop_assert!(false, "stop_and_remove hung"),
                }
            }
            Op::Fail(id) => {
                starters[id].die(Err(Error::msg("transient")));
            }
            Op::FailFatal(id) => {
                starters[id].die(Err(Error::msg("fatal")));
            }
            Op::Finish(id) => {
                starters[id].die(Ok(()));
            }
            Op::BreakStarts(id, broken) => {
                starters[id].set_start_error(broken.then(|| Error::msg("cannot start")));
            }
            Op::SlowStops(id, ms) => starters[id].set_stop_delay(Duration::from_millis(ms)),
            Op::Advance(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Op::Settle => settle().await,
            Op::Kill => runner.kill(),
        }
        for (id, starter) in starters.iter().enumerate() {
            prop_assert!(starter.max_live() <= 1, "two live instances of w{id}");
        }
    }

    runner.kill();
    let finished = tokio::time::timeout(Duration::from_secs(600), runner.wait()).await;
    prop_assert!(finished.is_ok(), "runner did not finish after kill");
    prop_assert_eq!(runner.report().state, RunnerState::Stopped);
    prop_assert!(runner.worker_names().is_empty());
    prop_assert!(matches!(
        runner.start_worker("late", starters[0].factory()),
        Err(Error::Dead)
    ));
    for (id, starter) in starters.iter().enumerate() {
        prop_assert!(starter.max_live() <= 1, "two live instances of w{id}");
        prop_assert_eq!(
            starter.live(),
            0,
            "an instance of w{} outlived its runner",
            id
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn one_live_instance_per_id_and_always_finishes(ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(run_ops(ops))?;
    }
}
