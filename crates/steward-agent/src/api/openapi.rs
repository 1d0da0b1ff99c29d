//! The control API's OpenAPI 3.1 document, served at `GET /openapi.json`
//! and checked in as `docs/openapi.json`: derived with `utoipa` from the
//! handlers' own `#[utoipa::path]` attributes and the request and answer
//! types they use, so a changed type or handler changes the document.
//!
//! What the attributes cannot say is added here from the code that
//! decides it: which paths need the token (the same [`super::is_public`]
//! the auth middleware asks) and so may answer 401. This module must
//! never describe an endpoint the router does not serve; the tests below
//! compare the two, and the document with the checked-in copy.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use steward_hooks::WorkloadState;
use utoipa::openapi::path::Operation;
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder, Schema};
use utoipa::{IntoParams, Modify, OpenApi};

use super::types::ErrorResponse;

/// The name of the bearer token's security scheme.
const BEARER: &str = "bearer";

/// The `{id}` path parameter of the runtime endpoints.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(
    dead_code,
    reason = "only describes the parameter in the OpenAPI document"
)]
pub(super) struct RuntimeId {
    /// The runtime's id (`GET /v1/runtimes` lists them).
    #[param(example = "echo")]
    id: String,
}

/// Every workload state, in the order the schema lists them. The match
/// below fails to compile when steward-hooks adds one, so the list (and the
/// schema) cannot miss it.
const WORKLOAD_STATES: [WorkloadState; 6] = [
    WorkloadState::Maintenance,
    WorkloadState::Blocked,
    WorkloadState::Waiting,
    WorkloadState::Active,
    WorkloadState::Unknown,
    WorkloadState::Error,
];

const _: () = {
    const fn listed(state: WorkloadState) {
        match state {
            WorkloadState::Maintenance
            | WorkloadState::Blocked
            | WorkloadState::Waiting
            | WorkloadState::Active
            | WorkloadState::Unknown
            | WorkloadState::Error => {}
        }
    }
    listed(WorkloadState::Active);
};

/// The schema of [`WorkloadState`] (a type of steward-hooks, which does
/// not depend on utoipa), by its wire names.
pub(super) fn workload_state() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(WORKLOAD_STATES.map(WorkloadState::as_str)))
        .description(Some(
            "A workload state: `maintenance`, `blocked`, `waiting` or `active` as a hook set it \
             with `status-set`, `unknown` before any did, `error` when a hook failed.",
        ))
        .build()
}

/// The document's parts that are not handlers: the security scheme, and a
/// 401 answer on each operation that needs the token.
#[derive(Debug)]
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Only when the agent was started with `--token-file FILE`: the file's \
                         content, trimmed, as `Authorization: Bearer <token>`. An agent without \
                         a token needs none.",
                    ))
                    .build(),
            ),
        );
        openapi.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        let unauthorized = error_response(
            "The agent has a token and the request did not present it (with \
             `WWW-Authenticate: Bearer`)",
        )
        .header(
            "WWW-Authenticate",
            utoipa::openapi::HeaderBuilder::new()
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::Type::String),
                ))
                .description(Some("`Bearer`"))
                .build(),
        )
        .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let public = super::is_public(path);
            for operation in operations(item) {
                if public {
                    // An empty list: no authentication, whatever the
                    // document-wide requirement says.
                    operation.security = Some(Vec::new());
                } else {
                    operation
                        .responses
                        .responses
                        .insert("401".to_owned(), unauthorized.clone().into());
                }
            }
        }
    }
}

/// An answer whose body is an [`ErrorResponse`].
fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(
                <ErrorResponse as utoipa::ToSchema>::name(),
            )))
            .build(),
    )
}

/// The operations of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// A body may be left out where its type has no required field: the API
/// reads an empty body as `{}` (see [`super::error::JsonBody`]).
#[derive(Debug)]
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = &openapi.components else {
            return;
        };
        let takes_empty = |body: &RequestBody| {
            body.content.values().all(|content| {
                let RefOr::T(content) = content else {
                    return false;
                };
                let Some(RefOr::Ref(schema)) = &content.schema else {
                    return false;
                };
                let name = schema.ref_location.rsplit('/').next().unwrap_or_default();
                matches!(
                    components.schemas.get(name),
                    Some(RefOr::T(Schema::Object(object))) if object.required.is_empty()
                )
            })
        };
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                if let Some(RefOr::T(body)) = operation.request_body.as_mut()
                    && takes_empty(body)
                {
                    body.required = Some(Required::False);
                    body.description = Some("Optional: an empty body reads as `{}`".to_owned());
                }
            }
        }
    }
}

/// What can go wrong with any request body, on each operation that takes
/// one: it arrives too slowly (408) or is too large (413). Both come from
/// the server's limits, not from a handler.
#[derive(Debug)]
struct BodyLimits;

impl Modify for BodyLimits {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let too_slow = error_response("The body did not arrive within `--http-timeout`").build();
        let too_large = error_response("The body is larger than `--max-request-bytes`").build();
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                if operation.request_body.is_some() {
                    let responses = &mut operation.responses.responses;
                    responses.insert("408".to_owned(), too_slow.clone().into());
                    responses.insert("413".to_owned(), too_large.clone().into());
                }
            }
        }
    }
}

/// `/ui/` serves the page that `/` does: the same operation under a second
/// path (an operation id must be unique, so it gets its own).
#[derive(Debug)]
struct UiSlash;

impl Modify for UiSlash {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(mut item) = openapi.paths.paths.get("/").cloned() else {
            return;
        };
        if let Some(get) = item.get.as_mut() {
            get.operation_id = Some("ui_index_slash".to_owned());
        }
        openapi.paths.paths.insert("/ui/".to_owned(), item);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Steward control API",
        description = "The HTTP/JSON API of a Steward agent (see `docs/api.md`). Request bodies \
            are JSON objects; `Content-Type` is not required and an empty body reads as `{}`. \
            Every error answer is `{\"error\": {\"module\", \"code\", \"message\"}}`: module \
            `steward` and the HTTP status as code for the agent's own errors, the runtime's \
            module and code for a runtime's. Any path the API does not have is 404, a method an \
            endpoint does not take is 405 (with `Allow`), and a body announced larger than \
            `--max-request-bytes` is 413 on any endpoint.",
    ),
    paths(
        super::handlers::health,
        super::handlers::metrics,
        document,
        super::handlers::list,
        super::handlers::detail,
        super::handlers::call,
        super::handlers::set_version,
        super::handlers::abort,
        super::handlers::resolve,
        super::stats::stats,
        super::logs::logs,
        super::relations::list,
        super::fleet::status,
        super::sse::events,
        super::ui::index,
        super::ui::to_index,
        super::ui::file,
    ),
    components(schemas(crate::events::AgentEvent, super::types::Lagged)),
    modifiers(&Security, &OptionalBodies, &BodyLimits, &UiSlash),
    tags(
        (name = "agent", description = "The agent itself"),
        (name = "runtimes", description = "The hosted runtimes: calls, switches, aborts, hooks"),
        (name = "relations", description = "Relations between runtimes"),
        (name = "fleet", description = "The fleet's units, in fleet mode (`--fleet`)"),
        (name = "events", description = "What happens, as it happens"),
        (name = "ui", description = "The web UI's files (HTML, JavaScript, CSS); never need the token"),
    ),
)]
struct ApiDoc;

/// The document as the agent serves it and `docs/openapi.json` holds it:
/// pretty JSON with every object's keys sorted, and a final newline.
pub(crate) fn json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        let mut value = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        value.sort_all_objects();
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    });
    &JSON
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "agent",
    operation_id = "openapi",
    responses((status = 200, description = "This OpenAPI 3.1 document", body = Object)),
)]
pub(super) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use serde_json::Value;

    use super::*;

    /// The checked-in copy.
    const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

    /// The environment variable that rewrites the checked-in copy.
    const UPDATE: &str = "STEWARD_UPDATE_OPENAPI";

    fn document() -> Value {
        serde_json::from_str(json()).unwrap()
    }

    #[test]
    fn openapi_document_matches_the_checked_in_copy() {
        let generated = json();
        if std::env::var_os(UPDATE).is_some_and(|value| value == "1") {
            std::fs::write(CHECKED_IN, generated).unwrap();
            eprintln!("wrote {CHECKED_IN}");
            return;
        }
        let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
        if checked_in != generated {
            let line = checked_in
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
            panic!(
                "crates/steward-agent/docs/openapi.json differs from the document the API \
                 generates (first at line {}: checked in {:?}, generated {:?}). If the API \
                 change is meant, regenerate it with `{UPDATE}=1 cargo test -p steward-agent \
                 --lib openapi` and commit it with the change.",
                line + 1,
                checked_in.lines().nth(line).unwrap_or("<end>"),
                generated.lines().nth(line).unwrap_or("<end>"),
            );
        }
    }

    #[test]
    fn openapi_document_is_openapi_3_1_with_every_operation_named() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "{method} {path}: {id} twice");
                assert!(
                    operation["responses"]
                        .as_object()
                        .is_some_and(|r| !r.is_empty()),
                    "{method} {path} has no responses"
                );
            }
        }
    }

    /// The `(method, path)` of every `.route(…)` in `router` (mod.rs),
    /// with axum's `{*path}` as OpenAPI's `{path}`.
    fn routed() -> BTreeSet<(String, String)> {
        let source =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/mod.rs"))
                .unwrap();
        let body = source
            .split_once("fn router(")
            .and_then(|(_, rest)| rest.split_once("\n}\n"))
            .map(|(body, _)| body)
            .expect("mod.rs has fn router");
        let mut routes = BTreeSet::new();
        for call in body.split(".route(").skip(1) {
            let (path, rest) = call
                .strip_prefix('"')
                .and_then(|call| call.split_once('"'))
                .expect("a route's path is a string literal");
            let handlers = rest.split_once("\n").map_or(rest, |(line, _)| line);
            for method in ["get", "post", "put", "patch", "delete"] {
                if handlers.contains(&format!(" {method}("))
                    || handlers.contains(&format!(".{method}("))
                {
                    routes.insert((method.to_owned(), path.replace("{*", "{")));
                }
            }
        }
        assert!(routes.len() > 10, "found only {routes:?} in mod.rs");
        routes
    }

    #[test]
    fn openapi_document_describes_every_route_and_no_other() {
        let doc = document();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(|method| (method.clone(), path.clone()))
            })
            .collect();
        let routed = routed();
        assert_eq!(
            routed, documented,
            "the router (left) and the OpenAPI document (right) differ: a new endpoint needs \
             #[utoipa::path] on its handler and a line in ApiDoc's paths(…) in src/api/openapi.rs"
        );
    }

    #[test]
    fn only_public_paths_do_without_the_token() {
        let doc = document();
        assert_eq!(doc["security"], serde_json::json!([{BEARER: []}]));
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let public = operation["security"] == serde_json::json!([]);
                assert_eq!(public, super::super::is_public(path), "{method} {path}");
                assert_eq!(
                    operation["responses"].get("401").is_some(),
                    !public,
                    "{method} {path}"
                );
            }
        }
        for public in ["/healthz", "/", "/ui", "/ui/", "/ui/{path}"] {
            assert!(
                doc["paths"][public]["get"]["security"] == serde_json::json!([]),
                "{public}"
            );
        }
    }

    #[test]
    fn schemas_follow_the_code() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        // The stats endpoint's bound is the ring's.
        let seconds = doc["paths"]["/v1/runtimes/{id}/stats"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "seconds")
            .unwrap()
            .clone();
        assert_eq!(
            seconds["schema"]["maximum"],
            serde_json::json!(super::super::stats::MAX_SECONDS)
        );
        // Enums list their serde wire names.
        let names = |schema: &Value| -> Vec<String> {
            schema["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("no enum in {schema}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let workload: Vec<String> = WORKLOAD_STATES.iter().map(wire).collect();
        assert_eq!(
            names(&schemas["Workload"]["properties"]["status"]),
            workload
        );
        let kinds = names(&schemas["EventKind"]);
        assert!(kinds.len() >= 12, "{kinds:?}");
        for kind in kinds {
            let parsed: crate::events::EventKind =
                serde_json::from_value(Value::String(kind.clone())).unwrap();
            assert_eq!(parsed.as_str(), kind);
        }
        assert_eq!(
            names(&schemas["Transition"]),
            crate::config::Transition::ALL.map(|t| t.as_str().to_owned())
        );
    }

    /// `value`'s serde wire name.
    fn wire<T: serde::Serialize>(value: &T) -> String {
        serde_json::to_value(value)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }
}
