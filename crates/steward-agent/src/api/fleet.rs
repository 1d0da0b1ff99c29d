//! `GET /v1/fleet`: every unit of the fleet as its agent last published
//! it, read from etcd (so any agent answers for all of them). This module
//! only reads; it must never publish or change a unit.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ApiQuery};
use super::types::{ErrorResponse, FleetStatus};
use crate::fleet::fleet_unit;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct FleetQuery {
    /// Only this runtime's units.
    runtime: Option<String>,
}

/// Every unit of the fleet: agent, runtime, active and desired version,
/// state, hooks, error, and when its agent was last heard from.
#[utoipa::path(
    get,
    path = "/v1/fleet",
    tag = "fleet",
    operation_id = "fleet_status",
    params(FleetQuery),
    responses(
        (status = 200, description = "The units, sorted by name", body = FleetStatus),
        (status = 400, description = "An unknown query parameter", body = ErrorResponse),
        (status = 404, description = "This agent is not in a fleet (it runs without --fleet)",
            body = ErrorResponse),
        (status = 503, description = "etcd cannot be reached now", body = ErrorResponse),
    ),
)]
pub(super) async fn status(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<FleetQuery>,
) -> Result<Json<FleetStatus>, ApiError> {
    let Some(presence) = &state.api.presence else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this agent is not in a fleet; start it with --fleet URL (or a [fleet] table in its config)",
        ));
    };
    let records = presence.units().await.map_err(|error| {
        let status = match error {
            steward_store::Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    })?;
    let units = records
        .iter()
        .filter(|record| {
            query
                .runtime
                .as_ref()
                .is_none_or(|runtime| *runtime == record.runtime)
        })
        .map(fleet_unit)
        .collect();
    Ok(Json(FleetStatus { units }))
}
