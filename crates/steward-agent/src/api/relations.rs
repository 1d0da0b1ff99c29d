//! The relations as the API shows them: `GET /v1/relations`, and each
//! runtime's relations in its detail. This module only reads; it must
//! never create, end or change a relation (the config does).

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::types::{RelationEnd, RelationList, RelationSummary, RuntimeRelation};
use crate::config::Endpoint;
use crate::relations::{Relation, Relations};

/// Every relation, by id, with its two ends and their units.
#[utoipa::path(
    get,
    path = "/v1/relations",
    tag = "relations",
    operation_id = "list_relations",
    responses((status = 200, description = "The relations", body = RelationList)),
)]
pub(super) async fn list(State(state): State<AppState>) -> Json<RelationList> {
    let relations = &state.api.relations;
    let list = relations
        .all()
        .values()
        .map(|relation| RelationSummary {
            id: relation.id,
            state: relation.life,
            peer: relation.is_peer(),
            endpoints: relation
                .ends()
                .iter()
                .map(|end| end_of(relations, relation, end))
                .collect(),
        })
        .collect();
    Json(RelationList { relations: list })
}

/// The relations of `runtime`, for its detail.
pub(super) async fn of_runtime(relations: &Relations, runtime: &str) -> Vec<RuntimeRelation> {
    let unit = relations.unit(runtime);
    let mut found = Vec::new();
    for relation in relations.of_runtime(runtime) {
        let (Some(own), Some(remote)) =
            (relation.endpoint_of(runtime), relation.remote_of(runtime))
        else {
            continue;
        };
        // Settings that cannot be read show as none: the detail is for
        // looking, and must not fail because one record is unreadable.
        let settings = relations
            .source()
            .settings(relation.id, &unit)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        found.push(RuntimeRelation {
            id: relation.id,
            endpoint: own.name.clone(),
            state: relation.life,
            remote: end_of(relations, &relation, remote),
            settings,
        });
    }
    found
}

/// `end` of `relation`, with its units in the relation's scope.
fn end_of(relations: &Relations, relation: &Relation, end: &Endpoint) -> RelationEnd {
    RelationEnd {
        runtime: end.runtime.clone(),
        endpoint: end.name.clone(),
        units: relations
            .source()
            .members(relation.id)
            .into_iter()
            .filter(|member| member.runtime == end.runtime)
            .map(|member| member.unit)
            .collect(),
    }
}
