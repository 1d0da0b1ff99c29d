//! What the host's benchmarks share: the echo runtime they host, and
//! percentiles.
//!
//! A benchmark binary is also its own runtime: started with
//! [`AS_RUNTIME`] first, it runs the example `echo` runtime (the SDK's,
//! as users deploy it) instead of the benchmark, so one `cargo run
//! --example …` is all it takes, with no second build.

use std::path::PathBuf;
use std::time::Duration;

/// The first argument that makes a benchmark binary the echo runtime.
pub(crate) const AS_RUNTIME: &str = "--as-echo-runtime";

/// Runs the echo runtime and exits, if this process was started as one
/// (the first thing a benchmark's `main` does).
pub(crate) fn serve_if_runtime() {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_default();
    if args.next().is_some_and(|first| first == AS_RUNTIME) {
        let code = steward_runtime_echo::main_from(std::iter::once(program).chain(args));
        std::process::exit(i32::from(code != std::process::ExitCode::SUCCESS));
    }
}

/// The program that runs the echo runtime when its arguments start with
/// [`AS_RUNTIME`]: this very benchmark.
pub(crate) fn echo_binary() -> PathBuf {
    std::env::current_exe().expect("own path")
}

/// The value at rank round(p·n), 1-based, of sorted samples.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64 + 0.5) as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
