//! A runtime's output lines go to the host's log (tracing, within the
//! runtime's span) as well as to its [`OutputSink`], with the real test
//! runtime. A binary of its own: it installs the process-wide subscriber.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

mod support;

use std::sync::{Arc, Mutex};

use steward_host::{OutputSink, RuntimeHost};

use support::{host, next_line, print_line, started};

/// A writer into a shared buffer, for a tracing subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide subscriber: the only test of this binary, so that no
/// other test's logging mixes in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_gets_every_line_too_with_the_runtime_and_version() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let (sink, mut lines) = OutputSink::channel(8);
    let mut config = support::config("logged", "1.0.0", &[]);
    config.output = Some(sink);
    let host = host(config);
    started(&host).await;
    print_line(&host, "stderr", "to both").await;
    assert_eq!(next_line(&mut lines).await.text, "to both");
    host.stop().await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|line| line.contains("to both"))
        .unwrap_or_else(|| panic!("not in the log:\n{log}"));
    assert!(
        line.contains("INFO runtime{id=logged version=1.0.0}")
            && line.ends_with("to both stream=\"stderr\""),
        "{line}"
    );
}
