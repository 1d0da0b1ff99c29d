//! Every error the API answers, as one JSON shape with a fitting status:
//! `{"error": {"module": "...", "code": N, "message": "..."}}`.
//!
//! Errors of the agent itself have module `steward` and the HTTP status as
//! their code; a runtime's own errors keep the runtime's module and code.
//! This module must never log or retry: it only translates.

use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use steward_protocol::ErrorBody;

use super::types::{ErrorDetail, ErrorResponse};

/// The module of errors raised by the agent itself.
pub(crate) const MODULE: &str = "steward";

/// An error answer.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// The error body.
    pub(crate) detail: ErrorDetail,
}

impl ApiError {
    /// An error of the agent itself.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            detail: ErrorDetail {
                module: MODULE.to_owned(),
                code: u32::from(status.as_u16()),
                message: message.into(),
            },
        }
    }

    /// 404 for a runtime id the config does not have.
    pub(crate) fn no_runtime(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("no runtime {id:?}; `GET /v1/runtimes` lists them"),
        )
    }

    /// An error a runtime answered, with the status that fits its code.
    pub(crate) fn from_runtime(body: ErrorBody) -> Self {
        let status = status_of_runtime_code(body.code);
        Self {
            status,
            detail: ErrorDetail {
                module: body.module,
                code: body.code,
                message: body.message,
            },
        }
    }

    /// A failure of the host (not of the runtime's own logic).
    pub(crate) fn from_host(error: steward_host::Error) -> Self {
        use steward_host::Error as Host;
        match error {
            Host::Protocol(steward_protocol::Error::Remote(body)) => Self::from_runtime(body),
            Host::NoSuchVersion { .. } => Self::new(StatusCode::NOT_FOUND, error.to_string()),
            Host::NoActiveVersion { .. }
            | Host::Stopped { .. }
            | Host::FailedToStart { .. }
            | Host::Drained { .. } => Self::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
            // Cut off on request, as when the runtime itself abandons a
            // call on an abort (its code 4): not a failure of the runtime.
            Host::Aborted { .. } => Self::new(StatusCode::CONFLICT, error.to_string()),
            Host::Lost { .. } | Host::Protocol(_) => {
                Self::new(StatusCode::BAD_GATEWAY, error.to_string())
            }
            other => Self::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

/// The HTTP status for a runtime's error code: codes that are HTTP error
/// statuses (400–599) are used as they are, which is the convention the
/// example runtimes follow; the protocol's own codes map to their meaning;
/// any other code is the runtime's business and reads as a plain failure.
pub(crate) fn status_of_runtime_code(code: u32) -> StatusCode {
    match code {
        400..=599 => u16::try_from(code)
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        ErrorBody::CODE_UNSUPPORTED => StatusCode::NOT_IMPLEMENTED,
        ErrorBody::CODE_NOT_READY => StatusCode::SERVICE_UNAVAILABLE,
        ErrorBody::CODE_ABORTED => StatusCode::CONFLICT,
        ErrorBody::CODE_BUSY => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let too_large = self.status == StatusCode::PAYLOAD_TOO_LARGE;
        let mut response =
            (self.status, Json(ErrorResponse { error: self.detail })).into_response();
        if too_large {
            // The rest of the oversized body was not read, so the
            // connection cannot carry another request: say so, rather than
            // let the client reuse it and fail.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

/// A JSON request body whose every failure is an [`ApiError`]: too large
/// → 413, too slow to arrive → 408, not JSON, not an object or the wrong
/// shape → 400 naming the problem. Unlike axum's `Json` it does not insist
/// on a `Content-Type` (so `curl -d` works), and an empty body reads as
/// `{}` (so optional bodies can be left out). Every request body of the
/// API is an object: an array is refused, not read as a struct's fields
/// in order (which serde would otherwise accept).
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let timeout = request
            .extensions()
            .get::<BodyTimeout>()
            .map_or(DEFAULT_BODY_TIMEOUT, |timeout| timeout.0);
        let read = tokio::time::timeout(timeout, Bytes::from_request(request, state)).await;
        let bytes = match read {
            Ok(read) => read.map_err(|rejection| {
                let status = rejection.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::new(status, rejection.body_text())
                }
            })?,
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {}",
                        humantime::format_duration(timeout)
                    ),
                ));
            }
        };
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        let bytes: &[u8] = match first {
            None => b"{}",
            Some(b'{') => &bytes,
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid JSON request body: it must be a JSON object, e.g. {\"method\": \"echo\", \"args\": 1}",
                ));
            }
        };
        serde_json::from_slice(bytes)
            .map(JsonBody)
            .map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid JSON request body: {error}"),
                )
            })
    }
}

/// 413, the same whether the size was announced or found while reading.
pub(crate) fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request body is larger than the agent accepts (see `steward run --max-request-bytes`)",
    )
}

/// How long a request body may take to arrive (a request extension the
/// server sets; [`DEFAULT_BODY_TIMEOUT`] without it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimeout(pub(crate) std::time::Duration);

/// The body timeout when the server set none.
pub(crate) const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// A path parameter whose every failure is an [`ApiError`] (axum's own
/// answers `text/plain`): a segment that is not UTF-8 cannot name a
/// runtime, so it is 400 with the error shape of every other answer.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid path: {}", rejection.body_text()),
                )
            })
    }
}

/// Query parameters whose every failure is an [`ApiError`] (a repeated or
/// unknown parameter is 400 in the API's error shape).
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid query: {}", rejection.body_text()),
                )
            })
    }
}
