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
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::error::{ApiError, ApiQuery};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Filter {
    runtime: Option<String>,
}

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
                    Err(RecvError::Lagged(missed)) => Event::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{missed}}}")),
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event), (receiver, shutdown, runtime)));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
