//! `GET /v1/runtimes/{id}/logs[?version=V&tail=N&follow=true]`: a
//! runtime's recent output lines ([`LogLine`]s: its versions' stdout and
//! stderr, and its hooks'), as `{"lines": [...]}`, or with `follow=true`
//! as server-sent events: the same lines first, then each new one as the
//! agent reads it (a follower that falls behind gets `event: lagged` with
//! how many lines it missed, as on `/v1/events`).
//!
//! This module only reads the runtime's logs; it must never keep lines.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ApiPath, ApiQuery};
use super::sse::live;
use crate::logs::{LogFilter, LogLine, LogList};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsQuery {
    /// Only this version's lines (its processes', and its hooks').
    version: Option<String>,
    /// Only the last N lines kept (with `follow`, of the lines sent first).
    tail: Option<usize>,
    /// Keep the answer open and send new lines as they come.
    follow: Option<bool>,
}

pub(super) async fn logs(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> Result<Response, ApiError> {
    let hosted = state
        .api
        .registry
        .get(&id)
        .ok_or_else(|| ApiError::no_runtime(&id))?;
    let config = hosted.config();
    if let Some(version) = &query.version
        && config.version(version).is_none()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "runtime {id} has no version {version:?} (known: {})",
                config.version_names().join(", ")
            ),
        ));
    }
    let logs = hosted.logs();
    if !logs.keeps_lines() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "runtime {id} keeps no output lines (its config says log-lines = 0); they are in the agent's own log"
            ),
        ));
    }
    let filter = LogFilter {
        version: query.version,
        tail: query.tail,
    };
    if !query.follow.unwrap_or(false) {
        let lines = logs.lines(&filter);
        return Ok(Json(LogList {
            lines: lines.iter().map(|line| (**line).clone()).collect(),
        })
        .into_response());
    }
    let (tail, receiver) = logs.follow(&filter);
    let first = tail.iter().filter_map(|line| event(line)).collect();
    let stream = live(first, receiver, state.shutdown.clone(), move |line| {
        filter.matches(&line).then(|| event(&line)).flatten()
    });
    Ok(stream.into_response())
}

fn event(line: &LogLine) -> Option<Event> {
    Event::default().json_data(line).ok()
}
