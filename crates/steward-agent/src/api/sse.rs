//! `GET /v1/events`: the agent's events as server-sent events, one JSON
//! [`AgentEvent`](crate::events::AgentEvent) per `data:` line, optionally
//! for one runtime. A reader that falls behind gets an `event: lagged`
//! message saying how many events it missed, then carries on. Streams end
//! when the server shuts down, so they never hold a shutdown up — after
//! the events already published (the agent stops the API after its
//! runtimes, so those are their final `stopped` events).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ApiQuery};
use super::types::ErrorResponse;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct Filter {
    /// Only this runtime's events.
    runtime: Option<String>,
}

/// The data of an `event: lagged` message: the reader fell behind and
/// missed this many events.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Lagged {
    /// How many events it missed.
    missed: u64,
}

/// What `GET /v1/events` streams, for its description in the OpenAPI
/// document (OpenAPI 3.1 has no schema for an event stream's items).
pub(super) const STREAM: &str = "A stream of server-sent events (`text/event-stream`) from the \
    moment of the request until the agent shuts down. Each message without an `event:` line \
    has one `data:` line holding an `AgentEvent` (`#/components/schemas/AgentEvent`), whose \
    `kind` is one of `EventKind`. A reader that falls behind (more than 1024 events) gets an \
    `event: lagged` message whose data is a `Lagged` object, and the stream carries on. \
    Comment lines (keep-alives) come every 15 s.";

/// What happens to the runtimes, from the moment of the request, as
/// server-sent events.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    operation_id = "events",
    params(Filter),
    responses(
        (status = 200, description = STREAM, body = String, content_type = "text/event-stream"),
        (status = 400, description = "An unknown query parameter", body = ErrorResponse),
        (status = 404, description = "No such runtime", body = ErrorResponse),
    ),
)]
pub(super) async fn events(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<Filter>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if let Some(id) = &filter.runtime
        && state.api.registry.get(id).is_none()
    {
        return Err(ApiError::no_runtime(id));
    }
    let receiver = state.api.events.subscribe();
    let shutdown = state.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (receiver, shutdown, filter.runtime),
        |(mut receiver, shutdown, runtime)| async move {
            loop {
                // Queued events first: a shutdown ends the stream only
                // once they are out.
                let received = tokio::select! {
                    biased;
                    received = receiver.recv() => received,
                    () = shutdown.cancelled() => return None,
                };
                let event = match received {
                    Ok(event) => {
                        if runtime.as_ref().is_some_and(|id| *id != event.runtime) {
                            continue;
                        }
                        match Event::default().json_data(&event) {
                            Ok(sse) => sse,
                            Err(_) => continue,
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        match Event::default()
                            .event("lagged")
                            .json_data(Lagged { missed })
                        {
                            Ok(sse) => sse,
                            Err(_) => continue,
                        }
                    }
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event), (receiver, shutdown, runtime)));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
