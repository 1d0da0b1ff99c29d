//! The runner's serialisable snapshot. Plain data only: this module must
//! never hold a lock or a handle to a live worker.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// What a runner is doing, as returned by [`Runner::report`](crate::Runner::report).
///
/// Serialises to JSON such as:
///
/// ```json
/// {"name":"agent","state":"running","workers":{"api":{"state":"running",
///  "restarts":0,"last_error":null,"started_at":"2026-11-21T13:00:00.000Z",
///  "next_restart_at":null}}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerReport {
    /// The runner's name (see [`RunnerBuilder::name`](crate::RunnerBuilder::name)).
    pub name: String,
    /// Whether the runner accepts work.
    pub state: RunnerState,
    /// Every worker the runner knows, by id.
    pub workers: BTreeMap<String, WorkerReport>,
}

/// The runner's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerState {
    /// Accepting and supervising workers.
    Running,
    /// Killed or hit a fatal error; stopping its workers.
    Stopping,
    /// Finished; `wait` has its result.
    Stopped,
}

/// One worker id's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Where the worker is in its life.
    pub state: WorkerState,
    /// How many times this id was restarted after a failure.
    pub restarts: u64,
    /// The error of its most recent failure, if it ever failed.
    pub last_error: Option<String>,
    /// When the current (or last) instance started; RFC 3339 in JSON.
    #[serde(with = "rfc3339")]
    pub started_at: Option<SystemTime>,
    /// When it will be restarted, while backing off; RFC 3339 in JSON.
    #[serde(with = "rfc3339")]
    pub next_restart_at: Option<SystemTime>,
}

/// Where one worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Its start function is running.
    Starting,
    /// An instance is running.
    Running,
    /// It failed and waits for its restart delay.
    BackingOff,
    /// It was asked to stop and has not finished yet.
    Stopping,
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        time: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => s.collect_str(&humantime::format_rfc3339_millis(*time)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}
