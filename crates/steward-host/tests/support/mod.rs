//! Shared helpers for the host's integration tests: locating (and if need
//! be building) the example runtimes, and waiting for events.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use steward_host::{Event, MemoryStorage, ProcessConfig, ProcessHost};
use tokio::sync::broadcast;

/// Where cargo put this test's binaries (`target/<profile>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// The path of a runtime binary of this workspace, built on first use if
/// `cargo test` did not build it (e.g. `cargo test -p steward-host`).
pub fn runtime_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let path = target_dir().join(name);
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap();
    if !built.iter().any(|n| n == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command.args(["build", "--quiet", "-p", name, "--bin", name]);
        if target_dir().ends_with("release") {
            command.arg("--release");
        }
        let status = command.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
        built.push(name.to_owned());
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A config running `runtime` (echo, kv, faulty) as `version`, with short
/// timeouts and restart delays suited to tests.
pub fn config(id: &str, runtime: &str, version: &str, args: &[&str]) -> ProcessConfig {
    let mut config = ProcessConfig::new(
        id,
        version,
        runtime_binary(&format!("steward-runtime-{runtime}")),
    );
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
        config("echo", "echo", version, &["--version", version]),
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
