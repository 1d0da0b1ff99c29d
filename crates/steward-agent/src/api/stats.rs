//! `GET /v1/runtimes/{id}/stats[?seconds=N]`: a runtime's calls, errors and
//! p50/p99 latency per version and second over the last minutes, as
//! columns a plotting library takes as they are (one `time` column, one
//! column per measure and version).
//!
//! This module only reads a runtime's [`crate::stats::CallStats`] (through
//! its `Hosted`); it must never record.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ApiPath, ApiQuery};
use super::openapi::RuntimeId;
use super::types::ErrorResponse;
use crate::stats::{Histogram, Second, Series, WINDOW};

/// The longest series the endpoint serves (the ring holds one second more:
/// the one filling now).
pub(super) const MAX_SECONDS: u32 = WINDOW - 1;

/// What a series is when `seconds` is not given.
const DEFAULT_SECONDS: u32 = MAX_SECONDS;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StatsQuery {
    /// How many complete seconds, up to now (default and most 299).
    #[param(minimum = 1, maximum = 299)]
    seconds: Option<u32>,
}

/// The answer: `time[i]` is the Unix second that every column's entry `i`
/// covers.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StatsResponse {
    /// The runtime.
    id: String,
    /// How many seconds the columns cover.
    seconds: u32,
    /// The Unix second each column's entry covers, oldest first.
    time: Vec<u64>,
    /// The versions with a call in the series, sorted by name.
    versions: Vec<VersionStats>,
}

/// One version's columns, and its totals over the whole series.
#[derive(Debug, Serialize, ToSchema)]
struct VersionStats {
    /// The version.
    version: String,
    /// Calls that ended in each second (failed ones too).
    calls: Vec<u64>,
    /// Failed calls in each second.
    errors: Vec<u64>,
    /// The median latency of each second, in milliseconds (`null` without calls).
    p50_ms: Vec<Option<f64>>,
    /// The 99th percentile latency of each second, in milliseconds.
    p99_ms: Vec<Option<f64>>,
    /// Over the whole series.
    total: Totals,
}

/// A version's calls over the whole series.
#[derive(Debug, Serialize, ToSchema)]
struct Totals {
    /// Calls.
    calls: u64,
    /// Failed calls.
    errors: u64,
    /// The median latency, in milliseconds (`null` without calls).
    p50_ms: Option<f64>,
    /// The 99th percentile latency, in milliseconds.
    p99_ms: Option<f64>,
}

/// A runtime's calls, errors and p50/p99 latency per version and second,
/// over the last `seconds` complete seconds.
#[utoipa::path(
    get,
    path = "/v1/runtimes/{id}/stats",
    tag = "runtimes",
    operation_id = "runtime_stats",
    params(RuntimeId, StatsQuery),
    responses(
        (status = 200, description = "The columns", body = StatsResponse),
        (status = 400, description = "`seconds` outside 1–299, an unknown query parameter, or \
            an id that is not UTF-8", body = ErrorResponse),
        (status = 404, description = "No such runtime", body = ErrorResponse),
    ),
)]
pub(super) async fn stats(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<StatsQuery>,
) -> Result<Json<StatsResponse>, ApiError> {
    let Some(hosted) = state.api.registry.get(&id) else {
        return Err(ApiError::no_runtime(&id));
    };
    let seconds = query.seconds.unwrap_or(DEFAULT_SECONDS);
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "seconds must be from 1 to {MAX_SECONDS} (the agent keeps the last {WINDOW} s), not {seconds}"
            ),
        ));
    }
    let series = hosted.call_series(seconds);
    Ok(Json(response(id, series)))
}

fn ms(ns: Option<f64>) -> Option<f64> {
    // Three significant decimals of a millisecond are a microsecond: more
    // would only be noise in the JSON.
    ns.map(|ns| (ns / 1e3).round() / 1e3)
}

fn response(id: String, series: Series) -> StatsResponse {
    let time = (0..u64::from(series.len))
        .map(|i| series.start + i)
        .collect();
    let versions = series
        .versions
        .into_iter()
        .map(|version| {
            let mut all = Histogram::default();
            let mut errors = 0;
            let column = |f: &dyn Fn(&Second) -> u64| -> Vec<u64> {
                version
                    .seconds
                    .iter()
                    .map(|s| s.as_ref().map_or(0, f))
                    .collect()
            };
            let quantile = |q: f64| -> Vec<Option<f64>> {
                version
                    .seconds
                    .iter()
                    .map(|s| ms(s.as_ref().and_then(|s| s.latency.quantile(q))))
                    .collect()
            };
            for second in version.seconds.iter().flatten() {
                all.merge(&second.latency);
                errors += second.errors;
            }
            VersionStats {
                calls: column(&Second::calls),
                errors: column(&|s| s.errors),
                p50_ms: quantile(0.5),
                p99_ms: quantile(0.99),
                total: Totals {
                    calls: all.count(),
                    errors,
                    p50_ms: ms(all.quantile(0.5)),
                    p99_ms: ms(all.quantile(0.99)),
                },
                version: version.version,
            }
        })
        .collect();
    StatsResponse {
        id,
        seconds: series.len,
        time,
        versions,
    }
}
