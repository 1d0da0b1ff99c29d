//! `GET /v1/events`: the agent's events as server-sent events, one JSON
//! [`AgentEvent`] per `data:` line, optionally for one runtime; and
//! [`live`], the stream behind it and behind following a runtime's logs.
//! A reader that falls behind gets an `event: lagged` message saying how
//! many messages it missed, then carries on. Streams end when the server
//! shuts down, so they never hold a shutdown up — after the messages
//! already published (the agent stops the API after its runtimes, so
//! those are their final `stopped` events).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ApiQuery};
use super::types::{ErrorResponse, Lagged};
use crate::events::AgentEvent;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct Filter {
    /// Only this runtime's events.
    runtime: Option<String>,
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
    let runtime = filter.runtime;
    let receiver = state.api.events.subscribe();
    Ok(live(
        Vec::new(),
        receiver,
        state.shutdown.clone(),
        move |event: AgentEvent| {
            if runtime.as_ref().is_some_and(|id| *id != event.runtime) {
                return None;
            }
            Event::default().json_data(&event).ok()
        },
    ))
}

/// A stream of `first`, then of each message `receiver` gets that
/// `to_event` makes an event of (`None` skips it), with keep-alive
/// comments. It ends when the channel closes, or when `shutdown` fires
/// once the messages queued by then are out.
pub(super) fn live<T: Clone + Send + 'static>(
    first: Vec<Event>,
    receiver: broadcast::Receiver<T>,
    shutdown: CancellationToken,
    to_event: impl FnMut(T) -> Option<Event> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rest = futures_util::stream::unfold(
        (receiver, shutdown, to_event),
        |(mut receiver, shutdown, mut to_event)| async move {
            loop {
                // Queued messages first: a shutdown ends the stream only
                // once they are out.
                let received = tokio::select! {
                    biased;
                    received = receiver.recv() => received,
                    () = shutdown.cancelled() => return None,
                };
                let event = match received {
                    Ok(message) => match to_event(message) {
                        Some(event) => event,
                        None => continue,
                    },
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
                return Some((Ok(event), (receiver, shutdown, to_event)));
            }
        },
    );
    let stream = futures_util::stream::iter(first.into_iter().map(Ok)).chain(rest);
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;

    #[tokio::test]
    async fn a_reader_behind_gets_lagged_with_the_count_then_the_rest() {
        let (sender, receiver) = broadcast::channel(2);
        let shutdown = CancellationToken::new();
        let first = vec![Event::default().data("first")];
        let stream = live(first, receiver, shutdown.clone(), |n: u32| {
            (n != 4).then(|| Event::default().data(n.to_string()))
        });
        for n in 0..5 {
            sender.send(n).unwrap();
        }
        // A shutdown ends the stream once the queued messages are out.
        shutdown.cancel();
        let body = axum::body::to_bytes(stream.into_response().into_body(), 1 << 16)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        // 0..=2 were pushed out of the channel of 2; 4 is filtered out.
        assert_eq!(
            body,
            "data: first\n\nevent: lagged\ndata: {\"missed\":3}\n\ndata: 3\n\n"
        );
    }
}
