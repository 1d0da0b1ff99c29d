//! End-to-end tests of the API's error answers (bad requests, unknown
//! runtimes and routes, limits, runtime errors) and of its bearer token.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{Agent, Api, Options, answer_parts};

/// Asserts an agent error answer: `status`, JSON, module `steward`, the
/// status as code, a message; returns the message.
#[track_caller]
fn assert_agent_error(
    what: &str,
    answer: &(StatusCode, String, String),
    status: StatusCode,
) -> String {
    let (got, content_type, text) = answer;
    assert_eq!(*got, status, "{what}: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content type {content_type:?}, body {text}"
    );
    let body: Value = serde_json::from_str(text)
        .unwrap_or_else(|error| panic!("{what}: not JSON ({error}): {text}"));
    assert_eq!(body["error"]["module"], "steward", "{what}: {body}");
    assert_eq!(body["error"]["code"], status.as_u16(), "{what}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: {body}");
    message.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_and_the_agent_keeps_serving() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::start(Options {
        max_request_bytes: Some(1024),
        ..Options::demo(dir.path())
    })
    .await;
    agent.wait_running(&["echo", "kv"]).await;
    let api = &agent.api;
    let raw = |method: Method, path: &'static str, body: &str| {
        let body = body.as_bytes().to_vec();
        async move { api.raw(method, path, Some(body)).await }
    };

    // Malformed JSON, or the wrong shape: 400.
    let answer = raw(
        Method::POST,
        "/v1/runtimes/echo/call",
        r#"{"method": "echo", "args":"#,
    )
    .await;
    let message = assert_agent_error("malformed JSON", &answer, StatusCode::BAD_REQUEST);
    assert!(message.contains("JSON"), "{message}");
    let answer = raw(Method::POST, "/v1/runtimes/echo/call", r#"{"args": 1}"#).await;
    let message = assert_agent_error("missing method", &answer, StatusCode::BAD_REQUEST);
    assert!(message.contains("method"), "{message}");
    let answer = raw(Method::POST, "/v1/runtimes/echo/call", r#"{"method": 7}"#).await;
    assert_agent_error("method not a string", &answer, StatusCode::BAD_REQUEST);
    let answer = raw(
        Method::PUT,
        "/v1/runtimes/echo/version",
        r#"{"versoin": "2.0.0"}"#,
    )
    .await;
    assert_agent_error("missing version", &answer, StatusCode::BAD_REQUEST);
    let answer = raw(Method::PUT, "/v1/runtimes/echo/version", "[]").await;
    assert_agent_error(
        "version body not an object",
        &answer,
        StatusCode::BAD_REQUEST,
    );
    // An array is not an object, even where serde would read one as the
    // struct's fields in order.
    let answer = raw(Method::POST, "/v1/runtimes/echo/call", r#"["echo", 1]"#).await;
    let message = assert_agent_error("an array body", &answer, StatusCode::BAD_REQUEST);
    assert!(message.contains("must be a JSON object"), "{message}");
    // A path segment that is not UTF-8, a repeated or unknown query
    // parameter: 400 in the JSON shape, not axum's text.
    for (what, path) in [
        ("a non-UTF-8 id", "/v1/runtimes/%FF"),
        ("a repeated parameter", "/v1/events?runtime=echo&runtime=kv"),
        ("an unknown parameter", "/v1/events?runtme=echo"),
    ] {
        let answer = api.raw(Method::GET, path, None).await;
        assert_agent_error(what, &answer, StatusCode::BAD_REQUEST);
    }
    // An empty call body is `{}`, which lacks `method`.
    let answer = raw(Method::POST, "/v1/runtimes/echo/call", "").await;
    assert_agent_error("empty call body", &answer, StatusCode::BAD_REQUEST);

    // Unknown runtime: 404 everywhere.
    let call = json!({"method": "echo"}).to_string();
    for (method, path, body) in [
        (Method::POST, "/v1/runtimes/nope/call", call.as_str()),
        (Method::GET, "/v1/runtimes/nope", ""),
        (
            Method::PUT,
            "/v1/runtimes/nope/version",
            r#"{"version": "1.0.0"}"#,
        ),
        (
            Method::POST,
            "/v1/runtimes/nope/abort",
            r#"{"force": false}"#,
        ),
        (Method::POST, "/v1/runtimes/nope/abort", ""),
    ] {
        let what = format!("{method} {path}");
        let answer = api.raw(method, path, Some(body.as_bytes().to_vec())).await;
        let message = assert_agent_error(&what, &answer, StatusCode::NOT_FOUND);
        assert!(message.contains("nope"), "{what}: {message}");
    }

    // Unknown routes: 404 JSON (`/` is the web UI, see `ui`).
    for path in [
        "/index.html",
        "/ui/nope",
        "/v1",
        "/v2/runtimes",
        "/v1/runtimes/echo/nothing",
        "/metrics/x",
    ] {
        let answer = api.raw(Method::GET, path, None).await;
        assert_agent_error(&format!("GET {path}"), &answer, StatusCode::NOT_FOUND);
    }

    // Wrong methods: 405 JSON.
    for (method, path) in [
        (Method::GET, "/v1/runtimes/echo/call"),
        (Method::DELETE, "/v1/runtimes"),
        (Method::POST, "/v1/runtimes/echo/version"),
        (Method::GET, "/v1/runtimes/echo/abort"),
        (Method::POST, "/healthz"),
        (Method::PUT, "/v1/events"),
    ] {
        let what = format!("{method} {path}");
        let answer = api.raw(method, path, None).await;
        assert_agent_error(&what, &answer, StatusCode::METHOD_NOT_ALLOWED);
    }

    // Over --max-request-bytes (1024): 413; at the limit: fine. The agent
    // closes the connection after a 413 (without saying `Connection:
    // close`), so each oversized request gets a client of its own: a
    // shared client could send its next request on the closing connection.
    let too_big = json!({"method": "echo", "args": "x".repeat(2000)}).to_string();
    let answer = Api::new(&agent.url, None)
        .raw(
            Method::POST,
            "/v1/runtimes/echo/call",
            Some(too_big.into_bytes()),
        )
        .await;
    let message = assert_agent_error("a big body", &answer, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(message.contains("--max-request-bytes"), "{message}");
    let skeleton = json!({"method": "echo", "args": ""}).to_string().len();
    let exactly = json!({"method": "echo", "args": "y".repeat(1024 - skeleton)}).to_string();
    assert_eq!(exactly.len(), 1024);
    let (status, _, text) = api
        .raw(
            Method::POST,
            "/v1/runtimes/echo/call",
            Some(exactly.into_bytes()),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a body of exactly the limit: {text}"
    );

    // The limit holds for a body without a length (chunked) too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(br#"{"method": "echo", "args": ""#.to_vec()),
        Ok(vec![b'z'; 1500]),
        Ok(br#""}"#.to_vec()),
    ];
    let response = Api::new(&agent.url, None)
        .builder(Method::POST, "/v1/runtimes/echo/call")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("a chunked request");
    assert_agent_error(
        "a big chunked body",
        &answer_parts(response, "a big chunked body").await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );

    // A runtime's own error keeps its module and code; 400..=599 codes are
    // the HTTP status.
    let (status, body) = api
        .call("echo", "fail", json!({"code": 418, "message": "x"}))
        .await
        .expect_err("fail fails");
    assert_eq!(status, StatusCode::IM_A_TEAPOT, "{body}");
    assert_eq!(
        body,
        json!({"error": {"module": "echo", "code": 418, "message": "x"}})
    );
    let (status, body) = api
        .call("echo", "fail", json!({"code": 503, "message": "later"}))
        .await
        .expect_err("fail fails");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["module"], "echo", "{body}");
    // Any other code is a plain 500, the code kept.
    let (status, body) = api
        .call("echo", "fail", json!({"code": 7, "message": "odd"}))
        .await
        .expect_err("fail fails");
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(
        body["error"],
        json!({"module": "echo", "code": 7, "message": "odd"})
    );
    // Unknown methods are the runtime's 404s.
    let (status, body) = api
        .call("echo", "no-such-method", Value::Null)
        .await
        .expect_err("unknown method");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["module"], "echo", "{body}");
    assert_eq!(body["error"]["code"], 404, "{body}");
    let (status, body) = api
        .call("kv", "frobnicate", Value::Null)
        .await
        .expect_err("unknown method");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["module"], "kv", "{body}");
    // Bad arguments are the runtime's too.
    let (status, body) = api
        .call("echo", "sleep", json!({"seconds": 1}))
        .await
        .expect_err("bad args");
    assert!(status.is_client_error(), "{status}: {body}");
    assert_eq!(body["error"]["module"], "echo", "{body}");

    // A big answer is fine; one beyond the protocol's frame limit is an
    // error answer, and the runtime goes on serving.
    let big = api.call_ok("echo", "big", json!({"bytes": 1000})).await;
    assert_eq!(big, json!(vec![0xab; 1000]));
    let (status, body) = api
        .call("echo", "big", json!({"bytes": 17_000_000}))
        .await
        .expect_err("an answer beyond the frame limit");
    assert!(status.is_server_error(), "{status}: {body}");
    assert!(body["error"]["message"].is_string(), "{body}");

    // Errors are counted by module and code.
    let metrics = api.metrics().await;
    let teapots = crate::support::metric_value(
        &metrics,
        "steward_call_errors_total",
        &["runtime=\"echo\"", "module=\"echo\"", "code=\"418\""],
    );
    assert_eq!(
        teapots,
        Some(1.0),
        "steward_call_errors_total in:\n{metrics}"
    );

    // After all that, the agent still serves.
    assert_eq!(
        api.call_ok("echo", "echo", json!({"ok": true})).await,
        json!({"ok": true})
    );
    assert_eq!(
        api.call_ok("kv", "version", Value::Null).await,
        json!("1.0.0")
    );
    let list = agent.wait_running(&["echo", "kv"]).await;
    for id in ["echo", "kv"] {
        let runtime = crate::support::find_runtime(&list, id).unwrap();
        assert_eq!(runtime["active_version"], "1.0.0", "{list}");
    }
    assert_eq!(api.detail("echo").await["restarts"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_requires_a_token() {
    let dir = TempDir::new().unwrap();
    let output = Options {
        listen: "0.0.0.0:0".to_owned(),
        ..Options::demo(dir.path())
    }
    .run_to_exit("`steward run` on 0.0.0.0 without a token must exit at once")
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("--token-file"), "stderr: {stderr}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("control API on"),
        "it must not serve"
    );

    // An empty token file is refused too.
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let output = Options {
        listen: "0.0.0.0:0".to_owned(),
        token_file: Some(empty),
        ..Options::demo(dir.path())
    }
    .run_to_exit("`steward run` with an empty token must exit at once")
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("empty-token"), "stderr: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_request_but_healthz_needs_it() {
    let dir = TempDir::new().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let agent = Agent::start(Options {
        token_file: Some(token_file.clone()),
        ..Options::demo(&dir.path().join("data"))
    })
    .await;
    // The support client presents the token (trimmed) from the file.
    agent.wait_running(&["echo", "kv"]).await;

    let anonymous: Api = agent.api.with_token(None);
    let wrong = agent.api.with_token(Some("s3cret-tokeN"));
    let prefix = agent.api.with_token(Some("s3cret"));
    for (what, client) in [
        ("no token", &anonymous),
        ("a wrong token", &wrong),
        ("a prefix", &prefix),
    ] {
        for (method, path, body) in [
            (Method::GET, "/v1/runtimes", None),
            (Method::GET, "/v1/runtimes/echo", None),
            (Method::GET, "/v1/runtimes/echo/stats", None),
            (Method::GET, "/metrics", None),
            (Method::GET, "/v1/events", None),
            (Method::GET, "/v1/nothing", None),
            (
                Method::POST,
                "/v1/runtimes/echo/call",
                Some(br#"{"method": "version"}"#.to_vec()),
            ),
            (
                Method::PUT,
                "/v1/runtimes/echo/version",
                Some(br#"{"version": "2.0.0"}"#.to_vec()),
            ),
        ] {
            let label = format!("{method} {path} with {what}");
            let answer = client.raw(method, path, body).await;
            assert_agent_error(&label, &answer, StatusCode::UNAUTHORIZED);
        }
    }
    // A 401 says how to authenticate.
    let response = anonymous
        .builder(Method::GET, "/v1/runtimes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    // Nothing was switched by the refused PUT.
    let detail = agent.api.detail("echo").await;
    assert_eq!(detail["desired_version"], "1.0.0", "{detail}");
    // The scheme is case-insensitive (RFC 7235): `bearer` works too.
    let lower = agent
        .api
        .builder(Method::GET, "/v1/runtimes")
        .header("authorization", "bearer s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), StatusCode::OK);

    // /healthz never needs it.
    let (status, health) = anonymous.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health, json!({"status": "ok"}));

    // The right token works.
    assert_eq!(
        agent.api.call_ok("echo", "version", Value::Null).await,
        json!("1.0.0")
    );
    let (status, _) = agent.api.get("/v1/runtimes").await;
    assert_eq!(status, StatusCode::OK);
    agent.api.metrics().await;

    // The CLI presents it with --token-file (Agent::cli adds it) or
    // STEWARD_TOKEN_FILE; without it, one line saying 401.
    let status = agent.cli(&["status", "--json"]).await;
    let status: Value = serde_json::from_str(status.success()).expect("JSON");
    assert_eq!(status["runtimes"].as_array().map(Vec::len), Some(2));
    let called = agent.cli(&["call", "echo", "version"]).await;
    assert_eq!(called.success().trim(), "\"1.0.0\"");
    let token_path = token_file.display().to_string();
    let via_env = crate::support::cli_str(
        &["--api", &agent.url, "call", "echo", "version"],
        &[("STEWARD_TOKEN_FILE", &token_path)],
    )
    .await;
    assert_eq!(via_env.success().trim(), "\"1.0.0\"");
    let refused = crate::support::cli_str(&["--api", &agent.url, "status"], &[]).await;
    let line = refused.one_line_error(1);
    assert!(line.contains("401"), "{line}");
    assert!(refused.stdout.is_empty(), "{refused:#?}");
    let missing_file = dir.path().join("no-such-token");
    let missing_path = missing_file.display().to_string();
    let unreadable = crate::support::cli_str(
        &["--api", &agent.url, "--token-file", &missing_path, "status"],
        &[],
    )
    .await;
    let line = unreadable.one_line_error(2);
    assert!(line.contains("no-such-token"), "{line}");
}
