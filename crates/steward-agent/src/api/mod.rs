//! The control API: HTTP/JSON on (by default) loopback, described below
//! for its users. Every error is one JSON shape with a fitting status, and
//! with a token configured every other request needs `Authorization:
//! Bearer <token>`.
//!
//! This module must never switch or start a runtime itself: switches are
//! desired-state writes that the runtime's worker carries out.
//!
#![doc = include_str!("../../docs/api.md")]

mod error;
mod handlers;
mod sse;
pub mod types;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use metrics_exporter_prometheus::PrometheusHandle;
use steward_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

#[cfg(test)]
use error::status_of_runtime_code;
pub(crate) use error::{ApiError, MODULE};

use crate::events::EventBus;
use crate::runtimes::Registry;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Store,
    pub(crate) events: EventBus,
    pub(crate) prometheus: Option<PrometheusHandle>,
    pub(crate) token: Option<Arc<str>>,
    pub(crate) max_request_bytes: usize,
}

/// Handlers' view of the state, plus the server's shutdown signal (which
/// ends event streams, so a graceful shutdown does not wait on them).
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) api: ApiState,
    pub(crate) shutdown: CancellationToken,
}

fn router(state: AppState) -> Router {
    let max = state.api.max_request_bytes;
    Router::new()
        .route("/healthz", get(handlers::health))
        .route("/metrics", get(handlers::metrics))
        .route("/v1/runtimes", get(handlers::list))
        .route("/v1/runtimes/{id}", get(handlers::detail))
        .route("/v1/runtimes/{id}/call", post(handlers::call))
        .route("/v1/runtimes/{id}/version", put(handlers::set_version))
        .route("/v1/runtimes/{id}/abort", post(handlers::abort))
        .route("/v1/runtimes/{id}/resolve", post(handlers::resolve))
        .route("/v1/events", get(sse::events))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {} {}; the API is under /v1 (see the README)",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Checks the bearer token when one is configured (in constant time, so
/// the answer's timing says nothing about how much of a guess was right).
async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.api.token else {
        return next.run(request).await;
    };
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), token.as_bytes()) => {
            next.run(request).await
        }
        _ => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this agent requires `Authorization: Bearer <token>` (the CLI reads it from --token-file or STEWARD_TOKEN_FILE)",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the API on `listener` until `stop` fires, then stops accepting
/// and lets requests in flight finish (event streams end at once).
pub(crate) async fn serve(
    listener: TcpListener,
    state: ApiState,
    stop: CancellationToken,
) -> Result<(), steward_worker::Error> {
    let app = router(AppState {
        api: state,
        shutdown: stop.clone(),
    });
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "control API listening");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(steward_worker::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn runtime_codes_map_to_fitting_statuses() {
        use steward_protocol::ErrorBody;
        assert_eq!(status_of_runtime_code(400), StatusCode::BAD_REQUEST);
        assert_eq!(status_of_runtime_code(404), StatusCode::NOT_FOUND);
        assert_eq!(status_of_runtime_code(503), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            status_of_runtime_code(ErrorBody::CODE_UNSUPPORTED),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            status_of_runtime_code(ErrorBody::CODE_BUSY),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_of_runtime_code(ErrorBody::CODE_ABORTED),
            StatusCode::CONFLICT
        );
        assert_eq!(status_of_runtime_code(7), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
