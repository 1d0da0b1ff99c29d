//! Crash points for the crash-safety tests: with the cargo feature
//! `failpoints` (off by default; the test command enables it), setting
//! `STEWARD_FAILPOINT=<point>:<name>` makes the agent abort itself — no
//! destructor, no flush, as good as a SIGKILL — the first time it reaches
//! `<point>` for `<name>` (e.g. `hook-done:install`, right after a hook's
//! done step was written). Without the feature every point is a no-op the
//! compiler removes. This module must never be used for anything but
//! deliberate crashes.

/// Aborts the process if the crash point `point` is chosen for `name`.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(point: &str, name: &str) {
    use std::sync::OnceLock;
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| std::env::var("STEWARD_FAILPOINT").ok());
    if chosen.as_deref() == Some(&format!("{point}:{name}")) {
        tracing::error!(
            point,
            name,
            "crash point reached: aborting (STEWARD_FAILPOINT)"
        );
        std::process::abort();
    }
}

/// Crash points are compiled out without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_point: &str, _name: &str) {}
