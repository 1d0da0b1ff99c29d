//! End-to-end tests of how the agent serves the web UI's files: at `/`
//! and under `/ui/`, with their content types, entity tags (304 on a
//! match), no-cache and a strict Content-Security-Policy; public even on a
//! token-protected agent, whose API stays closed.

use std::os::unix::fs::PermissionsExt;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{Agent, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_types_etags_and_a_strict_csp() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::start(Options::demo(dir.path())).await;

    let mut index = None;
    for path in ["/", "/ui/"] {
        let response = agent.api.builder(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("content-type"), "text/html; charset=utf-8", "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        let etag = header("etag");
        assert!(etag.starts_with('"') && etag.len() > 2, "{path}: {etag:?}");
        let body = response.text().await.unwrap();
        assert!(body.contains(r#"<script type="module" src="/ui/js/main.js">"#));
        // The same page either way.
        match &index {
            None => index = Some((etag, body)),
            Some(first) => assert_eq!(first, &(etag, body), "{path}"),
        }
    }
    let (etag, _) = index.unwrap();

    // A matching entity tag is 304 without a body; another one is 200.
    let fresh = agent
        .api
        .builder(Method::GET, "/")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(fresh.headers()["etag"].to_str().unwrap(), etag);
    assert!(fresh.bytes().await.unwrap().is_empty());
    let stale = agent
        .api
        .builder(Method::GET, "/")
        .header("if-none-match", "\"0000000000000000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);

    for (path, content_type, needle) in [
        ("/ui/js/main.js", "text/javascript; charset=utf-8", "import"),
        ("/ui/app.css", "text/css; charset=utf-8", ":root"),
        (
            "/ui/vendor/uplot/uPlot.esm.js",
            "text/javascript; charset=utf-8",
            "uPlot.js (μPlot)",
        ),
        (
            "/ui/vendor/uplot/LICENSE",
            "text/plain; charset=utf-8",
            "MIT",
        ),
        ("/ui/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let (status, got, body) = agent.api.raw(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(got, content_type, "{path}");
        assert!(body.contains(needle), "{path}");
    }

    // `/ui` leads to `/ui/`.
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = http.get(format!("{}/ui", agent.url)).send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()["location"], "/ui/");

    // An unknown file is a 404 in the API's error shape.
    let (status, content_type, body) = agent.api.raw(Method::GET, "/ui/nope.js", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the web UI has no file \"nope.js\""),
        "{body}"
    );
    let (status, _, _) = agent.api.raw(Method::POST, "/", Some(b"{}".to_vec())).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_page_is_public_and_the_api_is_not() {
    let dir = TempDir::new().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "ui-secret\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let agent = Agent::start(Options {
        token_file: Some(token_file),
        ..Options::demo(&dir.path().join("data"))
    })
    .await;
    let anonymous = agent.api.with_token(None);
    for path in ["/", "/ui/", "/ui/js/api.js", "/ui/app.css"] {
        let (status, _, body) = anonymous.raw(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!body.contains("ui-secret"), "{path} holds the token");
    }
    for path in [
        "/v1/runtimes",
        "/v1/runtimes/echo/stats",
        "/v1/events",
        "/uix",
    ] {
        let (status, _, _) = anonymous.raw(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}
