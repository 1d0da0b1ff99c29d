//! What the host's benchmarks share: finding (building) the echo runtime
//! and percentiles.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The echo runtime next to this example (`target/<profile>/`), built if
/// missing so that one `cargo run --example …` command is enough.
pub fn echo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let profile_dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .expect("target/<profile>");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", "steward-runtime-echo"]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "building the echo runtime failed");
    profile_dir.join("steward-runtime-echo")
}

/// The value at rank round(p·n), 1-based, of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64 + 0.5) as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
