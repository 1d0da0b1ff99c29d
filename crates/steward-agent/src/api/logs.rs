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
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ApiPath, ApiQuery};
use super::openapi::RuntimeId;
use super::sse::live;
use super::types::ErrorResponse;
use crate::logs::{LogFilter, LogLine, LogList};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct LogsQuery {
    /// Only this version's lines (its processes', and its hooks').
    version: Option<String>,
    /// Only the last N lines kept (with `follow`, of the lines sent first).
    #[param(minimum = 0, maximum = 1_000_000)]
    tail: Option<u64>,
    /// Keep the answer open and send new lines as they come.
    follow: Option<bool>,
}

/// The most lines `tail` may ask for: more than any ring keeps.
const MAX_TAIL: u64 = 1_000_000;

/// One server-sent event as a client reads it (for the OpenAPI document:
/// each message of a `text/event-stream` answer).
#[derive(Debug, utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "only describes the stream in the OpenAPI document"
)]
pub(super) struct ServerSentEvent {
    /// The event's type: `message` (or absent) for a line, `lagged` when
    /// the follower missed lines.
    event: Option<String>,
    /// A `LogLine` as JSON, or for `lagged` a `Lagged` object.
    data: String,
}

/// What `GET /v1/runtimes/{id}/logs?follow=true` streams, for the OpenAPI
/// document (OpenAPI 3.1 has no schema for an event stream's items).
const FOLLOW: &str = "Without `follow`: the lines, as a `LogList`. With `follow=true`: a stream \
    of server-sent events (`text/event-stream`) until the agent shuts down, each `data:` line \
    a `LogLine` (`#/components/schemas/LogLine`), the kept lines first; a follower that falls \
    behind gets an `event: lagged` message whose data is a `Lagged` object, and the stream \
    carries on.";

/// A runtime's recent output lines (its versions' stdout and stderr, and
/// its hooks'), or with `follow=true` those and then each new one.
#[utoipa::path(
    get,
    path = "/v1/runtimes/{id}/logs",
    tag = "runtimes",
    operation_id = "runtime_logs",
    params(RuntimeId, LogsQuery),
    responses(
        (status = 200, description = FOLLOW, content(
            (LogList = "application/json"),
            (ServerSentEvent = "text/event-stream"),
        )),
        (status = 400, description = "A `tail` that is not a number from 0 to 1000000, a `follow` \
            that is not a boolean, an \
            unknown query parameter, or an id that is not UTF-8", body = ErrorResponse),
        (status = 404, description = "No such runtime, or no such version of it", body = ErrorResponse),
        (status = 409, description = "The runtime keeps no lines (`log-lines = 0`)", body = ErrorResponse),
    ),
)]
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
    if let Some(tail) = query.tail
        && tail > MAX_TAIL
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("tail {tail} is more than {MAX_TAIL}; ask for at most {MAX_TAIL} lines"),
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
        tail: query
            .tail
            .map(|tail| usize::try_from(tail).unwrap_or(usize::MAX)),
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
