//! Shared helpers for the host's integration tests: configs that run the
//! test runtime, and waiting for events.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use steward_host::{Event, MemoryStorage, ProcessConfig, ProcessHost};
use tokio::sync::broadcast;

/// The runtime the host's tests start (this crate's `steward-test-runtime`
/// binary, which cargo builds for its integration tests).
pub const TEST_RUNTIME: &str = env!("CARGO_BIN_EXE_steward-test-runtime");

/// A config running the test runtime as runtime `id`, version `version`,
/// with `args` (e.g. `--version 1.0.0`, `--mode garbage`), with short
/// timeouts and restart delays suited to tests.
pub fn config(id: &str, version: &str, args: &[&str]) -> ProcessConfig {
    let mut config = ProcessConfig::new(id, version, TEST_RUNTIME);
    config.args = args.iter().map(|a| a.to_string()).collect();
    config.backoff = steward_worker::Backoff::constant(Duration::from_millis(50));
    config.accept_timeout = Duration::from_secs(5);
    config.handshake_timeout = Duration::from_secs(5);
    config.shutdown_grace = Duration::from_secs(2);
    config.term_grace = Duration::from_secs(2);
    config
}

/// An `echo` host for `version`, with in-memory storage.
pub fn echo(version: &str) -> ProcessHost {
    ProcessHost::new(
        config("echo", version, &["--version", version]),
        Arc::new(MemoryStorage::new()),
    )
}

/// The next event, within 20 s of real time.
pub async fn next_event(events: &mut broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("an event within 20 s")
        .expect("event channel open")
}
