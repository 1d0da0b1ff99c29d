//! Prometheus metrics: names, labels and the recorder behind `/metrics`.
//! Recording goes through the `metrics` facade, so code that records never
//! knows whether an exporter is installed (in unit tests it is not); this
//! module must never render or serve anything but the text format.
//!
//! The metrics and their labels are listed in the API reference
//! ([`crate::api`], "Metrics").

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

const CALLS: &str = "steward_calls_total";
const CALL_ERRORS: &str = "steward_call_errors_total";
const CALL_DURATION: &str = "steward_call_duration_seconds";
const RESTARTS: &str = "steward_runtime_restarts_total";
const START_FAILURES: &str = "steward_runtime_start_failures_total";
const UP: &str = "steward_runtime_up";
const SWITCHES: &str = "steward_version_switches_total";
const HOOKS: &str = "steward_hooks_total";
const HOOK_DURATION: &str = "steward_hook_duration_seconds";

/// Call latency buckets, seconds: from a loopback round trip (~50 µs) to
/// the default call deadline.
const CALL_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Hook duration buckets, seconds: from a missing hook (microseconds) to
/// the default hook timeout.
const HOOK_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Installs the process-wide Prometheus recorder and returns the handle
/// that renders it. `None` if a recorder is already installed (then
/// `/metrics` says so instead of serving someone else's numbers).
pub(crate) fn install() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(CALL_DURATION.to_owned()), CALL_BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full(HOOK_DURATION.to_owned()), HOOK_BUCKETS)
        .ok()?
        .install_recorder()
        .ok()?;
    metrics::describe_counter!(CALLS, "Calls made through the agent, by outcome.");
    metrics::describe_counter!(CALL_ERRORS, "Calls that failed, by error module and code.");
    metrics::describe_histogram!(
        CALL_DURATION,
        metrics::Unit::Seconds,
        "Latency of calls made through the agent."
    );
    metrics::describe_counter!(
        RESTARTS,
        "Unexpected exits of a runtime process (each is followed by a restart)."
    );
    metrics::describe_counter!(
        START_FAILURES,
        "Failed attempts to start a runtime process."
    );
    metrics::describe_gauge!(UP, "1 while the runtime version's process serves, else 0.");
    metrics::describe_counter!(SWITCHES, "Version switches, by outcome.");
    metrics::describe_counter!(HOOKS, "Hook runs, by hook and outcome.");
    metrics::describe_histogram!(HOOK_DURATION, metrics::Unit::Seconds, "How long hooks ran.");
    Some(handle)
}

/// Keeps histogram storage bounded (the exporter leaves it to its user),
/// until `stop`.
pub(crate) async fn upkeep(
    handle: PrometheusHandle,
    stop: CancellationToken,
) -> Result<(), steward_worker::Error> {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}

/// The metric handles of one runtime version's calls. Looking a metric up
/// by name copies its labels and hashes them, on every call; a runtime
/// keeps these for the version its calls go to instead (the recorder
/// keeps what they point to, so nothing is lost when they are dropped).
pub(crate) struct CallMetrics {
    version: String,
    duration: metrics::Histogram,
    ok: metrics::Counter,
}

impl CallMetrics {
    /// Looks up `runtime`'s metrics for `version`, in the recorder
    /// installed now (none: they record nothing).
    pub(crate) fn new(runtime: &str, version: &str) -> Self {
        let labels = [
            ("runtime", runtime.to_owned()),
            ("version", version.to_owned()),
        ];
        Self {
            version: version.to_owned(),
            duration: metrics::histogram!(CALL_DURATION, &labels),
            ok: metrics::counter!(CALLS, "runtime" => runtime.to_owned(), "version" => version.to_owned(), "outcome" => "ok"),
        }
    }

    /// The version they count.
    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    /// Records one call of `runtime` to this version; `error` is the
    /// error's (module, code). Errors are rare: they take the lookup.
    pub(crate) fn record(&self, runtime: &str, elapsed: Duration, error: Option<(&str, u32)>) {
        self.duration.record(elapsed.as_secs_f64());
        let Some((module, code)) = error else {
            self.ok.increment(1);
            return;
        };
        let version = self.version.as_str();
        metrics::counter!(CALLS, "runtime" => runtime.to_owned(), "version" => version.to_owned(), "outcome" => "error")
            .increment(1);
        metrics::counter!(CALL_ERRORS, "runtime" => runtime.to_owned(), "version" => version.to_owned(), "module" => module.to_owned(), "code" => code.to_string())
            .increment(1);
    }
}

impl std::fmt::Debug for CallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMetrics")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Records an unexpected exit of a runtime process.
pub(crate) fn record_restart(runtime: &str, version: &str) {
    metrics::counter!(RESTARTS, "runtime" => runtime.to_owned(), "version" => version.to_owned())
        .increment(1);
}

/// Records a failed start attempt.
pub(crate) fn record_start_failure(runtime: &str, version: &str) {
    metrics::counter!(START_FAILURES, "runtime" => runtime.to_owned(), "version" => version.to_owned())
        .increment(1);
}

/// Records whether a version's process serves.
pub(crate) fn record_up(runtime: &str, version: &str, up: bool) {
    metrics::gauge!(UP, "runtime" => runtime.to_owned(), "version" => version.to_owned())
        .set(if up { 1.0 } else { 0.0 });
}

/// Records a version switch.
pub(crate) fn record_switch(runtime: &str, ok: bool) {
    metrics::counter!(SWITCHES, "runtime" => runtime.to_owned(), "outcome" => if ok { "ok" } else { "error" })
        .increment(1);
}

/// Records one hook run.
pub(crate) fn record_hook(runtime: &str, hook: &str, ok: bool, elapsed: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!(HOOKS, "runtime" => runtime.to_owned(), "hook" => hook.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(HOOK_DURATION, "runtime" => runtime.to_owned(), "hook" => hook.to_owned())
        .record(elapsed.as_secs_f64());
}
