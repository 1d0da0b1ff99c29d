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
mod fleet;
mod handlers;
mod logs;
mod openapi;
mod relations;
mod server;
mod sse;
mod stats;
pub mod types;
mod ui;

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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::info;

#[cfg(test)]
use error::status_of_runtime_code;
pub(crate) use error::{ApiError, MODULE};
pub(crate) use server::ServerLimits;

use crate::events::EventBus;
use crate::runtimes::Registry;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) registry: Arc<Registry>,
    pub(crate) relations: Arc<crate::relations::Relations>,
    pub(crate) store: Store,
    /// Desired versions: the store, or the fleet's.
    pub(crate) desired: Arc<dyn steward_store::DesiredState>,
    /// The fleet's units, in fleet mode.
    pub(crate) presence: Option<Arc<dyn steward_store::Presence>>,
    pub(crate) events: EventBus,
    pub(crate) prometheus: Option<PrometheusHandle>,
    pub(crate) token: Option<Arc<str>>,
    pub(crate) max_request_bytes: usize,
    pub(crate) limits: ServerLimits,
    /// The request body bytes the handlers may hold at once, in KiB: big
    /// bodies wait their turn rather than multiply the agent's memory.
    pub(crate) body_budget: Arc<Semaphore>,
}

/// How many of the largest bodies may be held at once.
const LARGEST_BODIES_AT_ONCE: usize = 4;

impl ApiState {
    /// The body budget for `max_request_bytes`: a few bodies of the largest
    /// size, many small ones.
    pub(crate) fn body_budget(max_request_bytes: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(
            (LARGEST_BODIES_AT_ONCE * max_request_bytes.div_ceil(1024)).max(1),
        ))
    }
}

/// Handlers' view of the state, behind one `Arc`: axum clones the state
/// for every middleware layer and every `State` extractor of every
/// request, and a deep clone (a dozen `Arc`s and a cancellation token,
/// whose clone takes a lock) was the largest item the agent added per call
/// in a profile of 64 connections.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

/// What [`AppState`] shares.
pub(crate) struct Shared {
    pub(crate) api: ApiState,
    /// The server's shutdown signal (which ends event streams, so a
    /// graceful shutdown does not wait on them).
    pub(crate) shutdown: CancellationToken,
}

impl AppState {
    pub(crate) fn new(api: ApiState, shutdown: CancellationToken) -> Self {
        Self(Arc::new(Shared { api, shutdown }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

fn router(state: AppState) -> Router {
    let max = state.api.max_request_bytes;
    let routes = Router::new()
        .route("/healthz", get(handlers::health))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/v1/runtimes", get(handlers::list))
        .route("/v1/runtimes/{id}", get(handlers::detail))
        .route("/v1/runtimes/{id}/call", post(handlers::call))
        .route("/v1/runtimes/{id}/version", put(handlers::set_version))
        .route("/v1/runtimes/{id}/abort", post(handlers::abort))
        .route("/v1/runtimes/{id}/resolve", post(handlers::resolve))
        .route("/v1/relations", get(relations::list))
        .route("/v1/fleet", get(fleet::status))
        .route("/v1/runtimes/{id}/stats", get(stats::stats))
        .route("/v1/runtimes/{id}/logs", get(logs::logs))
        .route("/v1/events", get(sse::events))
        .route("/", get(ui::index))
        .route("/ui", get(ui::to_index))
        .route("/ui/", get(ui::index))
        .route("/ui/{*path}", get(ui::file))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    // Around the whole router once, not with `Router::layer`: that wraps
    // every route in another boxed service per layer, which costs each
    // request an allocation, a boxed future and a poll per level.
    let admitted = tower::ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(state, admit))
        .layer(DefaultBodyLimit::max(max))
        .service(routes);
    Router::new().fallback_service(admitted)
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

/// Admits a request to its handler, or answers it at once: one layer
/// rather than one per check, because each `from_fn` layer clones the
/// service behind it and boxes a future for every request. First the
/// token (a refused request never takes a share of the body budget), then
/// the body.
async fn admit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if let Some(refusal) = refuse_unauthenticated(&state, &request) {
        return refusal;
    }
    let _share = match body_share(&state, &mut request).await {
        Ok(share) => share,
        Err(refusal) => return refusal,
    };
    next.run(request).await
}

/// Checks the bearer token when one is configured (in constant time, so
/// the answer's timing says nothing about how much of a guess was right):
/// `Some(401 answer)` when the request may not go on.
fn refuse_unauthenticated(state: &AppState, request: &Request) -> Option<Response> {
    let token = state.api.token.as_ref()?;
    if is_public(request.uri().path()) {
        return None;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    if presented.is_some_and(|presented| constant_time_eq(presented.as_bytes(), token.as_bytes())) {
        return None;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "this agent requires `Authorization: Bearer <token>` (the CLI reads it from --token-file or STEWARD_TOKEN_FILE)",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Some(response)
}

/// Refuses a body announced as too large before reading it (413, and the
/// connection closes), sets the body read timeout, and takes the body's
/// share of the body budget, to be held for as long as the request is
/// handled (`None` for a request without a body, or once the budget is
/// closed at shutdown).
async fn body_share(
    state: &AppState,
    request: &mut Request,
) -> Result<Option<OwnedSemaphorePermit>, Response> {
    let max = state.api.max_request_bytes;
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    let size = match announced {
        Some(size) if size > u64::try_from(max).unwrap_or(u64::MAX) => {
            return Err(error::too_large().into_response());
        }
        Some(size) => usize::try_from(size).unwrap_or(max),
        None if chunked => max,
        None => 0,
    };
    request
        .extensions_mut()
        .insert(error::BodyTimeout(state.api.limits.header_timeout));
    let kib = u32::try_from(size.div_ceil(1024)).unwrap_or(u32::MAX);
    if kib == 0 {
        return Ok(None);
    }
    Ok(state
        .api
        .body_budget
        .clone()
        .acquire_many_owned(kib)
        .await
        .ok())
}

/// Whether `path` is served without the token: `/healthz`, and the web
/// UI's files (they hold no secrets: the page asks for the token and sends
/// it with its API calls). The OpenAPI document says so from this too.
fn is_public(path: &str) -> bool {
    path == "/healthz" || ui::is_public(path)
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 7235 §2.1), and any run of spaces may follow it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
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
    let state_limits = state.limits;
    let app = router(AppState::new(state, stop.clone()));
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, max_connections = state_limits.max_connections, "control API listening");
    }
    server::serve(listener, app, state_limits, stop).await;
    Ok(())
}

/// Serves `routes` on `listener` with the API's own HTTP stack — the
/// connection handling and limits of the agent's server (header timeout,
/// connection cap, shutdown grace) and the same request body limit — until
/// `stop` fires. It exists for one reason: the HTTP floor of
/// `examples/api_bench.rs`, which needs the stack without the agent's
/// routes, middleware and runtimes. Not part of the agent's API.
#[doc(hidden)]
pub async fn serve_bare(listener: TcpListener, routes: Router, stop: CancellationToken) {
    use nix::sys::resource::{Resource, getrlimit};
    let open_files = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    let limits = ServerLimits {
        header_timeout: crate::agent::DEFAULT_HTTP_TIMEOUT,
        ..ServerLimits::for_fd_limit(open_files)
    };
    let routes = routes.layer(DefaultBodyLimit::max(
        crate::agent::DEFAULT_MAX_REQUEST_BYTES,
    ));
    server::serve(listener, routes, limits, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

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

    #[test]
    fn a_call_cut_off_by_an_abort_is_a_conflict_not_a_gateway_error() {
        let cut_off = ApiError::from_host(steward_host::Error::Aborted {
            runtime: "echo".into(),
        });
        assert_eq!(cut_off.status, StatusCode::CONFLICT);
        assert_eq!(cut_off.detail.module, MODULE);
        assert!(cut_off.detail.message.contains("abort"), "{cut_off:?}");
        let lost = ApiError::from_host(steward_host::Error::Lost {
            runtime: "echo".into(),
            reason: "it crashed".into(),
        });
        assert_eq!(lost.status, StatusCode::BAD_GATEWAY);
    }
}
