//! The web UI's files, built into the binary (`crates/steward-agent/ui/`)
//! and served at `/` and under `/ui/`: a page of plain HTML, CSS and
//! JavaScript modules that drives the same API as the CLI, with the same
//! token.
//!
//! The files hold no secrets, so they are served without the token (the
//! page then asks for it and sends it with every API call); this module
//! must never serve anything but these files, and never with a looser
//! Content-Security-Policy than [`CSP`] (same origin only: no inline
//! script or style, no other host).

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::error::{ApiError, ApiPath};
use super::types::ErrorResponse;

/// What the page may load and where it may connect: its own origin only.
/// uPlot styles its elements through the CSSOM (`element.style`), which
/// `style-src` does not restrict, so no `'unsafe-inline'` is needed.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The page's files, relative to `ui/`, with their content types.
macro_rules! assets {
    ($($path:literal => $content_type:expr,)*) => {
        &[$(Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)),
        },)*]
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// One file of the page.
#[derive(Debug)]
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

static ASSETS: &[Asset] = assets! {
    "index.html" => HTML,
    "app.css" => CSS,
    "favicon.svg" => "image/svg+xml",
    "js/api.js" => JS,
    "js/dom.js" => JS,
    "js/events.js" => JS,
    "js/fleet.js" => JS,
    "js/logs.js" => JS,
    "js/main.js" => JS,
    "js/overview.js" => JS,
    "js/parts.js" => JS,
    "js/plots.js" => JS,
    "js/relations.js" => JS,
    "js/runtime.js" => JS,
    "vendor/uplot/uPlot.esm.js" => JS,
    "vendor/uplot/uPlot.min.css" => CSS,
    "vendor/uplot/LICENSE" => "text/plain; charset=utf-8",
    "vendor/uplot/README.md" => "text/markdown; charset=utf-8",
};

/// A file with its entity tag, a hash of its bytes (so it changes when
/// the file does, and only then).
#[derive(Debug)]
struct Served {
    asset: &'static Asset,
    etag: HeaderValue,
}

static SERVED: LazyLock<HashMap<&'static str, Served>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let etag = HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(asset.body)))
                .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
            (asset.path, Served { asset, etag })
        })
        .collect()
});

/// 64-bit FNV-1a: a content hash for entity tags (not a security
/// boundary: the files are public).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether `path` is one of the page's (public) paths.
pub(crate) fn is_public(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// `GET /` and `GET /ui/`: the page.
#[utoipa::path(
    get,
    path = "/",
    tag = "ui",
    operation_id = "ui_index",
    params(("If-None-Match" = Option<String>, Header, description = "Entity tags of copies the client has (`*` for any)")),
    responses(
        (status = 200, description = "The web UI's page", body = String, content_type = "text/html",
            headers(("ETag" = String, description = "A hash of the file"))),
        (status = 304, description = "The `If-None-Match` tag is the file's: it did not change"),
    ),
)]
pub(super) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /ui`: to `/ui/`, so that the page's URL is the same either way.
#[utoipa::path(
    get,
    path = "/ui",
    tag = "ui",
    operation_id = "ui_redirect",
    responses(
        (status = 308, description = "To `/ui/`", headers(("Location" = String, description = "`/ui/`"))),
    ),
)]
pub(super) async fn to_index() -> Redirect {
    Redirect::permanent("/ui/")
}

/// `GET /ui/{*path}`: a file of the page.
#[utoipa::path(
    get,
    path = "/ui/{path}",
    tag = "ui",
    operation_id = "ui_file",
    params(
        ("path" = String, Path, description = "The file, relative to the UI's root (`/ui/` itself is the page)",
            example = "js/main.js"),
        ("If-None-Match" = Option<String>, Header, description = "Entity tags of copies the client has (`*` for any)"),
    ),
    responses(
        (status = 200, description = "The file (HTML, JavaScript, CSS, SVG or text)",
            content(("text/html"), ("text/javascript"), ("text/css"), ("image/svg+xml"),
                ("text/plain"), ("text/markdown")),
            headers(("ETag" = String, description = "A hash of the file"))),
        (status = 304, description = "The `If-None-Match` tag is the file's: it did not change"),
        (status = 400, description = "The path is not UTF-8", body = ErrorResponse),
        (status = 404, description = "The web UI has no such file", body = ErrorResponse),
    ),
)]
pub(super) async fn file(ApiPath(path): ApiPath<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(served) = SERVED.get(path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            format!("the web UI has no file {path:?}; it starts at /"),
        )
        .into_response();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| matches_etag(tags, &served.etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(served.asset.content_type),
            )],
            served.asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, served.etag.clone());
    // Revalidated on every load (a 304 costs a round trip on loopback),
    // so a new agent's page is never mixed with an old one's files.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Whether an `If-None-Match` list names `etag` (or is `*`); weak tags
/// compare by their opaque part (RFC 9110 §13.1.2).
fn matches_etag(list: &str, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_ui_is_served_with_its_type() {
        // A file added to ui/ but not to ASSETS would be missing from the
        // page at run time; this finds it at test time.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let relative = path.strip_prefix(&root).unwrap();
                    on_disk.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        served.sort();
        assert_eq!(on_disk, served);
        for asset in ASSETS {
            let expected = match asset.path.rsplit_once('.').map(|(_, ext)| ext) {
                Some("html") => HTML,
                Some("js") => JS,
                Some("css") => CSS,
                Some("svg") => "image/svg+xml",
                Some("md") => "text/markdown; charset=utf-8",
                _ => "text/plain; charset=utf-8",
            };
            assert_eq!(asset.content_type, expected, "{}", asset.path);
        }
    }

    #[test]
    fn etags_differ_by_content_and_match_weakly() {
        let tags: std::collections::HashSet<_> =
            SERVED.values().map(|served| served.etag.clone()).collect();
        assert_eq!(tags.len(), ASSETS.len());
        let etag = HeaderValue::from_static("\"00000000000000ab\"");
        assert!(matches_etag("\"00000000000000ab\"", &etag));
        assert!(matches_etag("W/\"00000000000000ab\"", &etag));
        assert!(matches_etag("\"x\", \"00000000000000ab\"", &etag));
        assert!(matches_etag("*", &etag));
        assert!(!matches_etag("\"00000000000000ac\"", &etag));
        assert!(!matches_etag("", &etag));
    }

    #[test]
    fn only_the_page_is_public() {
        for path in ["/", "/ui", "/ui/", "/ui/js/main.js"] {
            assert!(is_public(path), "{path}");
        }
        for path in ["/v1/runtimes", "/metrics", "/uix", "/v1/ui/x", ""] {
            assert!(!is_public(path), "{path}");
        }
    }

    #[test]
    fn fnv1a_is_the_reference_function() {
        // Test vectors of the FNV reference (draft-eastlake-fnv).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
