//! `RuntimeHost::process` and `Aggregate::process`: the pid and uptime of
//! the process serving each version, with the real test runtime. Every
//! wait is bounded and waits for an observable fact.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use steward_host::{
    Aggregate, AggregateConfig, Event, MemoryStorage, ProcessHost, ProcessInfo, RuntimeHost,
};
use steward_protocol::{Body, CallRequest, Value};

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(20);

fn aggregate() -> Aggregate {
    let storage = Arc::new(MemoryStorage::new());
    let versions = ["1.0.0", "2.0.0"].map(|version| {
        let config = support::config("echo", version, &["--version", version]);
        let host: Arc<dyn RuntimeHost> = Arc::new(ProcessHost::new(config, storage.clone()));
        (version, host)
    });
    Aggregate::new("echo", versions, AggregateConfig::default()).unwrap()
}

/// Asserts that `info` is a live test runtime process of `version`.
fn assert_serving(info: ProcessInfo, version: &str) {
    let exe = std::fs::read_link(format!("/proc/{}/exe", info.pid)).unwrap();
    assert_eq!(
        exe,
        std::fs::canonicalize(support::TEST_RUNTIME).unwrap(),
        "pid {} is not the test runtime",
        info.pid
    );
    let args = std::fs::read(format!("/proc/{}/cmdline", info.pid)).unwrap();
    assert!(
        args.split(|&byte| byte == 0)
            .any(|arg| arg == version.as_bytes()),
        "pid {} does not run {version}: {}",
        info.pid,
        String::from_utf8_lossy(&args)
    );
    assert!(info.started_at <= SystemTime::now());
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_version_reports_the_process_serving_it() {
    let aggregate = aggregate();
    assert_eq!(aggregate.process("1.0.0"), None, "nothing started yet");
    assert_eq!(RuntimeHost::process(&aggregate), None);

    aggregate.set_version("1.0.0").await.unwrap();
    let first = aggregate.process("1.0.0").expect("1.0.0 serves");
    assert_serving(first, "1.0.0");
    assert_eq!(aggregate.process("2.0.0"), None);
    assert_eq!(aggregate.process("3.0.0"), None, "an unknown version");
    assert_eq!(
        RuntimeHost::process(&aggregate).map(|active| active.pid),
        Some(first.pid),
        "the aggregate's own process is the active version's"
    );
    // Uptime runs on; the rest stays.
    let earlier = first.uptime;
    wait_for("the uptime to grow", || {
        aggregate
            .process("1.0.0")
            .is_some_and(|now| now.uptime > earlier && now.pid == first.pid)
    })
    .await;

    // A crash: no process until the restart, then a new one.
    let mut events = aggregate.watch_events();
    let crash = Body::RuntimeCallRequest(CallRequest {
        method: "crash".into(),
        args: Value::null(),
    });
    let _ = tokio::time::timeout(WAIT, aggregate.call(crash)).await;
    // The first start's own `Started` may still reach a receiver made just
    // after `set_version` returned (the host publishes its phase before the
    // event), so the restart's is the first `Started` after a `Stopped`.
    let mut stopped = false;
    loop {
        match support::next_event(&mut events).await {
            Event::Stopped { .. } => stopped = true,
            Event::Started { .. } if stopped => break,
            _ => continue,
        }
    }
    let restarted = aggregate.process("1.0.0").expect("1.0.0 serves again");
    assert_serving(restarted, "1.0.0");
    assert_ne!(restarted.pid, first.pid);
    assert!(restarted.started_at >= first.started_at);

    // A switch: the new version's process, and none for the old one.
    aggregate.set_version("2.0.0").await.unwrap();
    let second = aggregate.process("2.0.0").expect("2.0.0 serves");
    assert_serving(second, "2.0.0");
    assert_eq!(aggregate.process("1.0.0"), None);
    assert_eq!(
        RuntimeHost::process(&aggregate).map(|p| p.pid),
        Some(second.pid)
    );

    aggregate.stop().await;
    assert_eq!(aggregate.process("2.0.0"), None);
    assert_eq!(RuntimeHost::process(&aggregate), None);
}
