//! The API's request handlers: look the runtime up, do one thing, answer
//! JSON. Switches go through desired state (see `runtimes`), never
//! straight to the aggregate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use steward_host::RuntimeHost;
use steward_protocol::{Body, CallRequest as WireCall, CallResponse as WireResult};
use tokio::sync::oneshot;
use tracing::debug;

use super::AppState;
use super::error::{ApiError, ApiPath, JsonBody};
use super::openapi::RuntimeId;
use steward_store::{FleetHealth, StoreHealth};

use super::types::{
    AbortRequest, AbortResponse, CallRequest, CallResponse, ErrorResponse, FleetConnection, Health,
    HealthStatus, Hooks, LastHook, ResolveRequest, ResolveResponse, RuntimeDetail, RuntimeInfo,
    RuntimeList, RuntimeState, RuntimeSummary, StoreProblem, VersionProcess, VersionRequest,
    VersionResponse, Workload,
};
use crate::json;
use crate::runtimes::{HookActivity, HookRequest, Hosted, RuntimeStatus};

/// How long `PUT …/version` waits for the switch before answering 504
/// (the switch itself goes on).
const SWITCH_WAIT: Duration = Duration::from_secs(120);

/// How long `POST …/resolve` waits for the hook driver to take it (it does
/// so between hooks).
const RESOLVE_WAIT: Duration = Duration::from_secs(10);

/// Whether the agent works fully.
///
/// Always 200 while the agent runs: `ok`, or `degraded` with the problem
/// (the store refuses writes, e.g. on a full disk). Never needs the token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "agent",
    operation_id = "health",
    responses((status = 200, description = "The agent runs", body = Health)),
)]
pub(super) async fn health(State(state): State<AppState>) -> Json<Health> {
    let mut health = Health {
        status: HealthStatus::Ok,
        store: None,
        fleet: None,
        fleet_since: None,
        fleet_reason: None,
    };
    if let StoreHealth::Unusable { since, reason } = state.api.store.health() {
        health.status = HealthStatus::Degraded;
        health.store = Some(StoreProblem {
            since: humantime::format_rfc3339_millis(since).to_string(),
            reason,
        });
    }
    // An agent cut off from etcd is healthy: it serves its last known
    // desired state and catches up by itself.
    if let Some(presence) = &state.api.presence {
        match presence.health() {
            FleetHealth::Connected => health.fleet = Some(FleetConnection::Connected),
            FleetHealth::Disconnected { since, reason } => {
                health.fleet = Some(FleetConnection::Disconnected);
                health.fleet_since = Some(humantime::format_rfc3339_millis(since).to_string());
                health.fleet_reason = Some(reason);
            }
        }
    }
    Json(health)
}

/// The agent's metrics in Prometheus' text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "agent",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String,
            content_type = "text/plain"),
        (status = 503, description = "Another metrics recorder is installed in this process",
            body = ErrorResponse),
    ),
)]
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    match &state.api.prometheus {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not available: another metrics recorder is installed in this process",
        )
        .into_response(),
    }
}

fn lookup(state: &AppState, id: &str) -> Result<Arc<Hosted>, ApiError> {
    state
        .api
        .registry
        .get(id)
        .ok_or_else(|| ApiError::no_runtime(id))
}

fn summary(hosted: &Hosted, status: &RuntimeStatus, desired: Option<String>) -> RuntimeSummary {
    RuntimeSummary {
        id: hosted.id.clone(),
        active_version: hosted.active_version(),
        desired_version: desired,
        versions: hosted.config().version_names(),
        state: status.state,
    }
}

fn store_error(error: steward_store::Error) -> ApiError {
    let status = match error {
        // The disk is full (or failing): 507, and the agent keeps trying.
        steward_store::Error::Unusable { .. } => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, error.to_string())
}

async fn desired_version(state: &AppState, id: &str) -> Result<Option<String>, ApiError> {
    state
        .api
        .desired
        .desired_version(id)
        .await
        .map_err(store_error)
}

/// Every runtime, sorted by id.
#[utoipa::path(
    get,
    path = "/v1/runtimes",
    tag = "runtimes",
    operation_id = "list_runtimes",
    responses(
        (status = 200, description = "The runtimes", body = RuntimeList, links(
            ("detail" = (operation_id = "runtime_detail",
                parameters(("id" = "$response.body#/runtimes/0/id")),
                description = "The first runtime in detail")),
            ("call" = (operation_id = "call",
                parameters(("id" = "$response.body#/runtimes/0/id")),
                description = "A call to the first runtime")),
            ("stats" = (operation_id = "runtime_stats",
                parameters(("id" = "$response.body#/runtimes/0/id")),
                description = "The first runtime's call statistics")),
        )),
    ),
)]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<RuntimeList>, ApiError> {
    // What runs is worth showing even when the store cannot be read (its
    // problem is in /healthz).
    let mut desired = state
        .api
        .desired
        .desired_versions()
        .await
        .unwrap_or_else(|error| {
            debug!(%error, "cannot read desired versions for the list");
            Default::default()
        });
    let runtimes = state
        .api
        .registry
        .all()
        .iter()
        .map(|hosted| summary(hosted, &hosted.status(), desired.remove(&hosted.id)))
        .collect();
    Ok(Json(RuntimeList { runtimes }))
}

/// One runtime in detail: versions, state, the active version's
/// handshake, restarts, processes, hooks and relations.
#[utoipa::path(
    get,
    path = "/v1/runtimes/{id}",
    tag = "runtimes",
    operation_id = "runtime_detail",
    params(RuntimeId),
    responses(
        (status = 200, description = "The runtime", body = RuntimeDetail, links(
            ("switch" = (operation_id = "set_version",
                parameters(("id" = "$response.body#/id")),
                request_body = json!({"version": "$response.body#/versions/0"}),
                description = "A switch to the runtime's first version")),
            ("abort" = (operation_id = "abort",
                parameters(("id" = "$response.body#/id")),
                description = "Abort the runtime's calls in progress")),
            ("resolve" = (operation_id = "resolve",
                parameters(("id" = "$response.body#/id")),
                description = "Resolve the runtime's failed hook")),
        )),
        (status = 400, description = "The id is not UTF-8", body = ErrorResponse),
        (status = 404, description = "No such runtime", body = ErrorResponse),
    ),
)]
pub(super) async fn detail(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RuntimeDetail>, ApiError> {
    let hosted = lookup(&state, &id)?;
    let desired = desired_version(&state, &id).await.unwrap_or_else(|error| {
        debug!(error = %error.detail.message, "cannot read the desired version for the detail");
        None
    });
    let status = hosted.status();
    let config = hosted.config();
    let (workload, hooks) = hooks_status(&hosted);
    Ok(Json(RuntimeDetail {
        summary: summary(&hosted, &status, desired),
        transition: config.transition,
        call_timeout_ms: u64::try_from(config.call_timeout.as_millis()).unwrap_or(u64::MAX),
        info: status.info.as_ref().map(|info| RuntimeInfo {
            protocol_version: info.protocol_version.to_string(),
            runtime_version: info.runtime_version.clone(),
            features: info.features.clone(),
        }),
        restarts: status.restarts,
        last_error: status.last_error.clone(),
        started_at: status
            .started_at
            .map(|at| humantime::format_rfc3339_millis(at).to_string()),
        processes: processes(&hosted),
        workload,
        hooks,
        relations: super::relations::of_runtime(&state.api.relations, &id).await,
    }))
}

/// The processes serving a runtime's versions, in the order of `versions`.
fn processes(hosted: &Hosted) -> Vec<VersionProcess> {
    let Some(aggregate) = hosted.aggregate() else {
        return Vec::new();
    };
    hosted
        .config()
        .version_names()
        .into_iter()
        .filter_map(|version| {
            let process = aggregate.process(&version)?;
            Some(VersionProcess {
                version,
                pid: process.pid,
                started_at: humantime::format_rfc3339_millis(process.started_at).to_string(),
                uptime_ms: u64::try_from(process.uptime.as_millis()).unwrap_or(u64::MAX),
            })
        })
        .collect()
}

/// A runtime's workload status and hooks, as the API shows them.
fn hooks_status(hosted: &Hosted) -> (Option<Workload>, Option<Hooks>) {
    let status = hosted.hook_status();
    let workload = status.workload.as_ref().map(|workload| Workload {
        status: workload.status,
        message: workload.message.clone(),
    });
    if hosted.config().hooks.is_none() {
        return (workload, None);
    }
    let state = status.activity.state();
    let (hook, message) = match &status.activity {
        HookActivity::Idle => (None, None),
        HookActivity::Running(hook) => (Some(hook.clone()), None),
        HookActivity::Error { hook, message } => (Some(hook.clone()), Some(message.clone())),
    };
    let last = status.last.as_ref().map(|last| LastHook {
        hook: last.hook.clone(),
        succeeded: last.succeeded,
        outcome: last.outcome.clone(),
        exit_code: last.exit_code,
        duration_ms: last.duration_ms,
        finished_at: humantime::format_rfc3339_millis(last.finished_at).to_string(),
    });
    let hooks = Hooks {
        state,
        hook,
        message,
        installed: status.installed == Some(true),
        last,
    };
    (workload, Some(hooks))
}

/// Resolves a runtime's failed hook: runs it again now (`retry`, the
/// default) or marks it done without running it.
#[utoipa::path(
    post,
    path = "/v1/runtimes/{id}/resolve",
    tag = "runtimes",
    operation_id = "resolve",
    params(RuntimeId),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "The hook in error is retried or marked done",
            body = ResolveResponse),
        (status = 400, description = "A malformed body, or an id that is not UTF-8",
            body = ErrorResponse),
        (status = 404, description = "No such runtime", body = ErrorResponse),
        (status = 409, description = "The runtime has no hooks, or none is in error",
            body = ErrorResponse),
        (status = 503, description = "The runtime's hooks are restarting", body = ErrorResponse),
        (status = 504, description = "A hook is running and did not let the request in within 10 s",
            body = ErrorResponse),
    ),
)]
pub(super) async fn resolve(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    JsonBody(request): JsonBody<ResolveRequest>,
) -> Result<Json<ResolveResponse>, ApiError> {
    let hosted = lookup(&state, &id)?;
    if hosted.config().hooks.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("runtime {id} has no hooks, so no hook can be in error"),
        ));
    }
    let (reply, answer) = oneshot::channel();
    let asked = hosted
        .request_hooks(HookRequest::Resolve {
            retry: request.retry,
            reply,
        })
        .await;
    let gone = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the hooks of runtime {id} are restarting; try again"),
        )
    };
    if !asked {
        return Err(gone());
    }
    match tokio::time::timeout(RESOLVE_WAIT, answer).await {
        Ok(Ok(Ok(hook))) => Ok(Json(ResolveResponse {
            id,
            hook,
            retried: request.retry,
        })),
        Ok(Ok(Err(nothing))) => Err(ApiError::new(StatusCode::CONFLICT, nothing)),
        Ok(Err(_)) => Err(gone()),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the hooks of runtime {id} did not take the request within {} (a hook is running); try again when it ends",
                humantime::format_duration(RESOLVE_WAIT)
            ),
        )),
    }
}

/// Calls a method of the runtime's active version.
///
/// Errors the runtime answers keep its module and code and get the status
/// that fits the code: a code of 400–599 is used as it is; 1 (unsupported)
/// is 501, 2 (not ready) 503, 4 (aborted) 409, 5 (busy) 429, any other 500.
#[utoipa::path(
    post,
    path = "/v1/runtimes/{id}/call",
    tag = "runtimes",
    operation_id = "call",
    params(RuntimeId),
    request_body = CallRequest,
    responses(
        (status = 200, description = "The runtime's answer", body = CallResponse),
        (status = 400, description = "A malformed body, arguments with an integer outside \
            -2^127 … 2^128-1, or the runtime's own code 400", body = ErrorResponse),
        (status = 404, description = "No such runtime, or the runtime's own code 404 (an \
            example runtime's unknown method)", body = ErrorResponse),
        (status = 409, description = "The call was aborted: abandoned by the runtime (its code \
            4), or cut off by an abort that killed the process", body = ErrorResponse),
        (status = 429, description = "The runtime is busy (runtime code 5)", body = ErrorResponse),
        (status = 500, description = "The runtime failed (runtime code 3 or another code), or \
            an unexpected host failure", body = ErrorResponse),
        (status = 501, description = "The runtime does not support it (runtime code 1)",
            body = ErrorResponse),
        (status = 502, description = "The runtime's connection was lost or broke the protocol, \
            or it answered an integer beyond 128 bits", body = ErrorResponse),
        (status = 503, description = "The runtime is not running (it is restarted \
            automatically), not installed yet, or the call was cut off by a switch",
            body = ErrorResponse),
        (status = 504, description = "No answer within the runtime's `call-timeout`",
            body = ErrorResponse),
        (status = "4XX", description = "Another code of 400–499 the runtime answered",
            body = ErrorResponse),
        (status = "5XX", description = "Another code of 500–599 the runtime answered",
            body = ErrorResponse),
    ),
)]
pub(super) async fn call(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    JsonBody(request): JsonBody<CallRequest>,
) -> Result<Json<CallResponse>, ApiError> {
    let hosted = lookup(&state, &id)?;
    let args = json::to_cbor(request.args.as_deref())
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
    let aggregate = hosted.aggregate().ok_or_else(|| not_running(&hosted))?;
    let deadline = hosted.config().call_timeout;
    let version = aggregate.active_version().unwrap_or_default();
    let started = Instant::now();
    let body = Body::RuntimeCallRequest(WireCall {
        method: request.method,
        args,
    });
    let answer = tokio::time::timeout(deadline, aggregate.call_within(body, deadline)).await;
    let result = match answer {
        Ok(Ok(Body::RuntimeCallResponse(WireResult { result }))) => json::to_raw_json(&result)
            .map_err(|message| ApiError::new(StatusCode::BAD_GATEWAY, message)),
        Ok(Ok(other)) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "runtime {id} answered a call with {} instead of a call response",
                other.name()
            ),
        )),
        Ok(Err(error)) => Err(ApiError::from_host(error)),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "runtime {id} did not answer within its call timeout ({}); raise `call-timeout` in the config if that is expected",
                humantime::format_duration(deadline)
            ),
        )),
    };
    let error = result
        .as_ref()
        .err()
        .map(|error| (error.detail.module.as_str(), error.detail.code));
    let elapsed = started.elapsed();
    hosted.record_call(&version, elapsed, error);
    result.map(|result| Json(CallResponse { result }))
}

fn not_running(hosted: &Hosted) -> ApiError {
    let status = hosted.status();
    if status.state == RuntimeState::Installing {
        let why = match hosted.hook_status().activity {
            HookActivity::Error { message, .. } => format!("; {message} (see `steward resolve`)"),
            HookActivity::Running(hook) => format!("; {hook} is running"),
            HookActivity::Idle => String::new(),
        };
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "runtime {} is not started yet: it starts once its install hook has succeeded{why}",
                hosted.id
            ),
        );
    }
    let mut message = format!("runtime {} is not running", hosted.id);
    if let Some(error) = status.last_error {
        message.push_str(&format!(" (last error: {error})"));
    }
    message.push_str("; it is restarted automatically");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
}

/// Switches a runtime to one of its configured versions, and answers once
/// the switch is done.
///
/// The desired version is written to the store and the runtime's worker
/// carries the switch out. Asking for the active version answers at once.
#[utoipa::path(
    put,
    path = "/v1/runtimes/{id}/version",
    tag = "runtimes",
    operation_id = "set_version",
    params(RuntimeId),
    request_body = VersionRequest,
    responses(
        (status = 200, description = "The switch completed", body = VersionResponse),
        (status = 202, description = "With `wait: false`: desired state says the version; the \
            switch goes on (on every agent, in a fleet)", body = VersionResponse),
        (status = 400, description = "A malformed body, or an id that is not UTF-8",
            body = ErrorResponse),
        (status = 404, description = "No such runtime, or no such version of it",
            body = ErrorResponse),
        (status = 409, description = "A later request for another version superseded it",
            body = ErrorResponse),
        (status = 500, description = "The store failed", body = ErrorResponse),
        (status = 502, description = "The switch failed; the previous version stays active",
            body = ErrorResponse),
        (status = 503, description = "The runtime is not running, or stopped during the switch",
            body = ErrorResponse),
        (status = 504, description = "Not done within 120 s; the switch goes on in the background",
            body = ErrorResponse),
        (status = 507, description = "The store refuses writes (a full or failing disk)",
            body = ErrorResponse),
    ),
)]
pub(super) async fn set_version(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    JsonBody(request): JsonBody<VersionRequest>,
) -> Result<(StatusCode, Json<VersionResponse>), ApiError> {
    let hosted = lookup(&state, &id)?;
    let version = request.version;
    let fleet = state.api.presence.is_some();
    let answer = |version: String, previous: Option<String>, done: bool| {
        let status = if done {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        Ok((
            status,
            Json(VersionResponse {
                id: id.clone(),
                version,
                previous,
                done,
                fleet,
            }),
        ))
    };
    let config = hosted.config();
    if config.version(&version).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "runtime {id} has no version {version:?} (known: {})",
                config.version_names().join(", ")
            ),
        ));
    }
    if request.wait && hosted.aggregate().is_none() {
        return Err(not_running(&hosted));
    }
    let previous = hosted.active_version();
    // Subscribed before the write, so the outcome of the switch it causes
    // cannot be missed.
    let mut outcomes = hosted.outcomes();
    let seen = outcomes.borrow_and_update().generation;
    state
        .api
        .desired
        .set_desired_version(&id, &version)
        .await
        .map_err(store_error)?;
    if previous.as_deref() == Some(version.as_str()) {
        // Already there (the write only made desired state say so too).
        return answer(version, previous, true);
    }
    if !request.wait {
        return answer(version, previous, false);
    }
    let waited = tokio::time::timeout(SWITCH_WAIT, async {
        loop {
            if outcomes.changed().await.is_err() {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("runtime {id} stopped before the switch to {version} finished"),
                ));
            }
            let outcome = outcomes.borrow_and_update().clone();
            if outcome.generation <= seen {
                continue;
            }
            if outcome.version == version {
                return Ok(outcome);
            }
            // A switch to another version finished first: ours is next,
            // unless a later request replaced it.
            let desired = desired_version(&state, &id).await?;
            if desired.as_deref() != Some(version.as_str()) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "the switch of runtime {id} to {version} was superseded by a request for {}",
                        desired.as_deref().unwrap_or("no version")
                    ),
                ));
            }
        }
    })
    .await;
    match waited {
        Ok(Ok(outcome)) => match outcome.error {
            None => answer(version, previous, true),
            Some(error) => Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "switching runtime {id} to {version} failed, {} stays active: {error}",
                    previous.as_deref().unwrap_or("no version")
                ),
            )),
        },
        Ok(Err(error)) => Err(error),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the switch of runtime {id} to {version} did not finish within {}; it goes on in the background (see `steward status`)",
                humantime::format_duration(SWITCH_WAIT)
            ),
        )),
    }
}

/// Aborts the calls in progress of a runtime's active version: asks it to
/// abandon them, or (with `force`, or when it does not answer within 1 s)
/// kills and restarts its process.
#[utoipa::path(
    post,
    path = "/v1/runtimes/{id}/abort",
    tag = "runtimes",
    operation_id = "abort",
    params(RuntimeId),
    request_body = AbortRequest,
    responses(
        (status = 200, description = "Done", body = AbortResponse),
        (status = 400, description = "A malformed body, or an id that is not UTF-8",
            body = ErrorResponse),
        (status = 404, description = "No such runtime", body = ErrorResponse),
        (status = 500, description = "An unexpected host failure", body = ErrorResponse),
        (status = 503, description = "The runtime is not running, or has no active version",
            body = ErrorResponse),
    ),
)]
pub(super) async fn abort(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    JsonBody(request): JsonBody<AbortRequest>,
) -> Result<Json<AbortResponse>, ApiError> {
    let hosted = lookup(&state, &id)?;
    let aggregate = hosted.aggregate().ok_or_else(|| not_running(&hosted))?;
    let aborted = aggregate
        .abort(request.force)
        .await
        .map_err(ApiError::from_host)?;
    Ok(Json(AbortResponse {
        id,
        force: request.force,
        outcome: aborted.into(),
    }))
}
