//! End-to-end tests of `GET /v1/runtimes/{id}/stats`: the per-second
//! calls, errors and latency quantiles of each version that the web UI
//! plots, fed by real calls through the API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{Agent, DEADLINE, eventually};

/// The stats entry of `version` in a stats answer.
fn version_stats<'a>(stats: &'a Value, version: &str) -> Option<&'a Value> {
    stats["versions"]
        .as_array()?
        .iter()
        .find(|entry| entry["version"] == version)
}

/// Waits until the stats of `id` show `calls` calls of `version` (calls
/// appear once their second is complete).
async fn wait_calls(agent: &Agent, id: &str, version: &str, calls: u64) -> Value {
    let path = format!("/v1/runtimes/{id}/stats?seconds=60");
    let what = format!("{calls} calls of {id} {version} in {path}");
    eventually(&what, DEADLINE, || {
        let path = path.clone();
        async move {
            let (status, stats) = agent.api.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{stats}");
            let seen = version_stats(&stats, version)?["total"]["calls"].as_u64()?;
            assert!(seen <= calls, "more calls than were made: {stats}");
            (seen == calls).then_some(stats)
        }
    })
    .await
}

fn column(entry: &Value, name: &str) -> Vec<Value> {
    entry[name]
        .as_array()
        .unwrap_or_else(|| panic!("no column {name} in {entry}"))
        .clone()
}

fn sum(values: &[Value]) -> u64 {
    values.iter().map(|value| value.as_u64().unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_calls_errors_and_latency_per_version_and_second() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;

    // Nothing called yet: no versions, but a full time column.
    let (status, stats) = agent.api.get("/v1/runtimes/kv/stats?seconds=10").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["id"], "kv");
    assert_eq!(stats["seconds"], 10);
    assert_eq!(stats["versions"], json!([]), "{stats}");
    let time = stats["time"].as_array().unwrap();
    assert_eq!(time.len(), 10, "{stats}");
    for pair in time.windows(2) {
        assert_eq!(
            pair[1].as_u64().unwrap(),
            pair[0].as_u64().unwrap() + 1,
            "{stats}"
        );
    }
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let last = time.last().unwrap().as_u64().unwrap();
    assert!(last < unix && unix - last <= 3, "last {last}, now {unix}");

    // 20 quick calls, 3 failing ones and one slow one on 1.0.0.
    for _ in 0..20 {
        agent.api.call_ok("echo", "version", Value::Null).await;
    }
    for _ in 0..3 {
        let failed = agent
            .api
            .call(
                "echo",
                "fail",
                json!({"code": 500, "message": "on purpose"}),
            )
            .await;
        assert!(failed.is_err(), "{failed:?}");
    }
    agent.api.call_ok("echo", "sleep", json!({"ms": 40})).await;

    let stats = wait_calls(&agent, "echo", "1.0.0", 24).await;
    assert_eq!(stats["seconds"], 60);
    let entry = version_stats(&stats, "1.0.0").unwrap();
    let calls = column(entry, "calls");
    let errors = column(entry, "errors");
    let p50 = column(entry, "p50_ms");
    let p99 = column(entry, "p99_ms");
    for named in [&calls, &errors, &p50, &p99] {
        assert_eq!(named.len(), 60, "{entry}");
    }
    assert_eq!(sum(&calls), 24, "{entry}");
    assert_eq!(sum(&errors), 3, "{entry}");
    assert_eq!(entry["total"]["errors"], 3, "{entry}");
    // A second without calls has no latency; one with calls has both.
    for i in 0..60 {
        let called = calls[i].as_u64().unwrap() > 0;
        assert_eq!(p50[i].is_number(), called, "second {i}: {entry}");
        assert_eq!(p99[i].is_number(), called, "second {i}: {entry}");
    }
    // The slowest call is the p99 of all 24 (rank ⌈0.99·24⌉ = 24): within
    // the histogram's 9.1 % of 40 ms or more; the median is a quick call.
    let total_p99 = entry["total"]["p99_ms"].as_f64().unwrap();
    let total_p50 = entry["total"]["p50_ms"].as_f64().unwrap();
    assert!(total_p99 >= 40.0 * 0.909, "{entry}");
    assert!(total_p50 < 20.0, "{entry}");
    assert!(total_p50 > 0.0, "{entry}");
    assert!(version_stats(&stats, "2.0.0").is_none(), "{stats}");

    // After a switch, calls are counted for the new version, and the old
    // one's stay.
    let (status, body) = agent.api.set_version("echo", "2.0.0").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..5 {
        assert_eq!(
            agent.api.call_ok("echo", "version", Value::Null).await,
            json!("2.0.0")
        );
    }
    let stats = wait_calls(&agent, "echo", "2.0.0", 5).await;
    let versions: Vec<&str> = stats["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.0.0", "2.0.0"], "{stats}");
    assert_eq!(
        version_stats(&stats, "1.0.0").unwrap()["total"]["calls"],
        24,
        "{stats}"
    );
    assert_eq!(
        version_stats(&stats, "2.0.0").unwrap()["total"]["errors"],
        0,
        "{stats}"
    );

    // kv was never called.
    let (_, kv) = agent.api.get("/v1/runtimes/kv/stats").await;
    assert_eq!(kv["versions"], json!([]), "{kv}");
    // The default is the longest series kept.
    assert_eq!(kv["seconds"], 299, "{kv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stats_requests_get_json_errors() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    for (path, status, needle) in [
        (
            "/v1/runtimes/nope/stats",
            StatusCode::NOT_FOUND,
            "no runtime",
        ),
        (
            "/v1/runtimes/echo/stats?seconds=0",
            StatusCode::BAD_REQUEST,
            "seconds must be from 1 to 299",
        ),
        (
            "/v1/runtimes/echo/stats?seconds=300",
            StatusCode::BAD_REQUEST,
            "seconds must be from 1 to 299",
        ),
        (
            "/v1/runtimes/echo/stats?seconds=ten",
            StatusCode::BAD_REQUEST,
            "invalid query",
        ),
        (
            "/v1/runtimes/echo/stats?minutes=1",
            StatusCode::BAD_REQUEST,
            "invalid query",
        ),
    ] {
        let (got, body) = agent.api.json(Method::GET, path, None).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["error"]["module"], "steward", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{path}: {body}");
    }
    let (got, body) = agent
        .api
        .json(Method::POST, "/v1/runtimes/echo/stats", None)
        .await;
    assert_eq!(got, StatusCode::METHOD_NOT_ALLOWED, "{body}");
}
