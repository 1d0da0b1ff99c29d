//! Shared helpers for the host's integration tests: configs that run the
//! test runtime, and waiting for events.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use steward_host::{Event, MemoryStorage, OutputLine, ProcessConfig, ProcessHost, RuntimeHost};
use steward_protocol::{Body, CallRequest, Value};
use tokio::sync::{broadcast, mpsc};

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

/// How long [`call`], [`started`] and [`next_line`] wait.
const WAIT: Duration = Duration::from_secs(20);

/// A host for `config`, with in-memory storage.
pub fn host(config: ProcessConfig) -> ProcessHost {
    ProcessHost::new(config, Arc::new(MemoryStorage::new()))
}

/// Starts `host` and waits for its `Started` event.
pub async fn started(host: &ProcessHost) {
    let mut events = host.watch_events();
    host.start().unwrap();
    match next_event(&mut events).await {
        Event::Started { .. } => {}
        other => panic!("expected Started, got {other:?}"),
    }
}

/// Calls `method` with `args`; it must be answered within 20 s.
pub async fn call(host: &ProcessHost, method: &str, args: serde_json::Value) -> Body {
    let body = Body::RuntimeCallRequest(CallRequest {
        method: method.into(),
        args: Value::encode(&args).unwrap(),
    });
    tokio::time::timeout(WAIT, host.call(body))
        .await
        .unwrap_or_else(|_| panic!("{method} not answered within {WAIT:?}"))
        .unwrap_or_else(|error| panic!("{method} failed: {error}"))
}

/// Calls the test runtime's `print` (see its docs for `args`), which must
/// succeed.
pub async fn print(host: &ProcessHost, args: serde_json::Value) {
    match call(host, "print", args).await {
        Body::RuntimeCallResponse(_) => {}
        other => panic!("print answered {other:?}"),
    }
}

/// Prints `text` on `stream` (`stdout` or `stderr`).
pub async fn print_line(host: &ProcessHost, stream: &str, text: &str) {
    print(host, json!({"stream": stream, "text": text})).await;
}

/// The next line of an output sink, within 20 s.
pub async fn next_line(lines: &mut mpsc::Receiver<OutputLine>) -> OutputLine {
    tokio::time::timeout(WAIT, lines.recv())
        .await
        .expect("a line within 20 s")
        .expect("the sink is open")
}
