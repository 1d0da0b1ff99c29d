//! End-to-end tests of `steward run` with the built-in demo config (`echo`
//! and `kv`): startup, calls over HTTP and the CLI, version switches (also
//! under load), and the event stream.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{Agent, DEADLINE, cli_str, eventually, find_runtime, metric_value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_comes_up_with_both_runtimes() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;

    // The banner names the data dir and the runtimes, and ends with how to
    // stop.
    let banner = agent.wait_stdout("Stop with Ctrl-C.").await;
    assert!(
        banner.contains(&format!("data dir: {}", dir.path().display())),
        "{banner}"
    );
    assert!(banner.contains("runtimes: echo, kv"), "{banner}");

    let list = agent.api.list().await;
    let runtimes = list["runtimes"].as_array().expect("a runtimes array");
    assert_eq!(runtimes.len(), 2, "{list}");
    for (id, versions) in [("echo", ["1.0.0", "2.0.0"]), ("kv", ["1.0.0", "1.1.0"])] {
        let runtime = find_runtime(&list, id).unwrap_or_else(|| panic!("no {id} in {list}"));
        assert_eq!(runtime["state"], "running", "{runtime}");
        assert_eq!(runtime["active_version"], "1.0.0", "{runtime}");
        assert_eq!(runtime["desired_version"], "1.0.0", "{runtime}");
        assert_eq!(runtime["versions"], json!(versions), "{runtime}");
    }

    let detail = agent.api.detail("echo").await;
    assert_eq!(detail["id"], "echo");
    assert_eq!(detail["info"]["runtime_version"], "1.0.0", "{detail}");
    assert!(detail["info"]["protocol_version"].is_string(), "{detail}");
    assert!(detail["info"]["features"].is_array(), "{detail}");
    assert_eq!(detail["transition"], "make-before-break", "{detail}");
    assert_eq!(detail["call_timeout_ms"], 30_000, "{detail}");
    assert_eq!(detail["restarts"], 0, "{detail}");
    assert!(detail["last_error"].is_null(), "{detail}");
    assert!(detail["started_at"].is_string(), "{detail}");

    let (status, health) = agent.api.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health, json!({ "status": "ok" }));

    let metrics = agent.api.metrics().await;
    for id in ["echo", "kv"] {
        let up = metric_value(
            &metrics,
            "steward_runtime_up",
            &[&format!("runtime=\"{id}\""), "version=\"1.0.0\""],
        );
        assert_eq!(up, Some(1.0), "steward_runtime_up of {id} in:\n{metrics}");
    }

    // One process per runtime, children of the agent.
    agent.runtime_pid("echo");
    agent.runtime_pid("kv");

    // `status`: a table with a header and one row per runtime.
    let table = agent.cli(&["status"]).await;
    let table = table.success();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("RUNTIME"), "{table}");
    for (line, id, versions) in [
        (lines[1], "echo", "1.0.0,2.0.0"),
        (lines[2], "kv", "1.0.0,1.1.0"),
    ] {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cells,
            [id, "1.0.0", "1.0.0", "running", "0", versions, "-"],
            "{table}"
        );
    }

    // `status --json`: the details of both.
    let status = agent.cli(&["status", "--json"]).await;
    let status: Value = serde_json::from_str(status.success()).expect("status --json is JSON");
    let runtimes = status["runtimes"].as_array().expect("a runtimes array");
    assert_eq!(runtimes.len(), 2, "{status}");
    assert_eq!(runtimes[0]["id"], "echo");
    assert_eq!(runtimes[0]["info"]["runtime_version"], "1.0.0", "{status}");
    assert_eq!(runtimes[1]["id"], "kv");

    // STEWARD_API works like --api.
    let via_env = cli_str(&["status", "--json"], &[("STEWARD_API", &agent.url)]).await;
    let via_env: Value = serde_json::from_str(via_env.success()).expect("JSON");
    assert_eq!(via_env["runtimes"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_http_and_the_cli() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    let api = &agent.api;

    // echo returns its args unchanged, however nested.
    let nested = json!({
        "a": [1, -2, 2.5, "x", {"b": null, "c": true, "d": []}],
        "unicode": "ünïcødé ✓",
        "big": 9_007_199_254_740_993_u64,
        "empty": {},
    });
    assert_eq!(api.call_ok("echo", "echo", nested.clone()).await, nested);
    assert_eq!(
        api.call_ok("echo", "echo", json!("text")).await,
        json!("text")
    );
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("1.0.0")
    );
    // `args` may be left out: it is null.
    let (status, answer) = api
        .json(
            Method::POST,
            "/v1/runtimes/echo/call",
            Some(json!({"method": "echo"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({ "result": null }));

    // The same through the CLI, which prints the result as JSON.
    let printed = agent
        .cli(&["call", "echo", "echo", &nested.to_string()])
        .await;
    let printed: Value = serde_json::from_str(printed.success()).expect("call prints JSON");
    assert_eq!(printed, nested);
    let printed = agent.cli(&["call", "echo", "version"]).await;
    assert_eq!(printed.success().trim(), "\"1.0.0\"");
    let printed = agent.cli(&["call", "echo", "echo"]).await;
    assert_eq!(printed.success().trim(), "null");

    // kv: put over HTTP, read through the CLI and back.
    assert_eq!(
        api.call_ok("kv", "put", json!({"key": "b", "value": {"n": [1, 2]}}))
            .await,
        Value::Null
    );
    let put = agent
        .cli(&["call", "kv", "put", r#"{"key": "a", "value": "first"}"#])
        .await;
    assert_eq!(put.success().trim(), "null");
    let got = agent.cli(&["call", "kv", "get", r#"{"key": "b"}"#]).await;
    let got: Value = serde_json::from_str(got.success()).expect("JSON");
    assert_eq!(got, json!({"n": [1, 2]}));
    assert_eq!(
        api.call_ok("kv", "get", json!({"key": "a"})).await,
        json!("first")
    );
    assert_eq!(
        api.call_ok("kv", "list", Value::Null).await,
        json!(["a", "b"])
    );
    let deleted = agent
        .cli(&["call", "kv", "delete", r#"{"key": "a"}"#])
        .await;
    assert_eq!(deleted.success().trim(), "null");
    assert_eq!(
        api.call_ok("kv", "get", json!({"key": "a"})).await,
        Value::Null
    );
    assert_eq!(api.call_ok("kv", "list", Value::Null).await, json!(["b"]));
    assert_eq!(
        api.call_ok("kv", "delete", json!({"key": "b"})).await,
        Value::Null
    );
    assert_eq!(api.call_ok("kv", "list", Value::Null).await, json!([]));

    // Bad ARGS_JSON is a usage error (exit 2), sent nowhere.
    let bad = agent.cli(&["call", "echo", "echo", "{not json"]).await;
    let line = bad.one_line_error(2);
    assert!(line.contains("ARGS_JSON"), "{line}");

    // A runtime's error through the CLI: one line with module and code.
    let failed = agent
        .cli(&[
            "call",
            "echo",
            "fail",
            r#"{"code": 418, "message": "teapot"}"#,
        ])
        .await;
    let line = failed.one_line_error(1);
    assert!(
        line.contains("echo") && line.contains("418") && line.contains("teapot"),
        "{line}"
    );
    let missing = agent.cli(&["call", "nope", "echo"]).await;
    let line = missing.one_line_error(1);
    assert!(line.contains("404"), "{line}");

    // Calls are counted.
    let metrics = api.metrics().await;
    let calls = metric_value(
        &metrics,
        "steward_calls_total",
        &["runtime=\"echo\"", "version=\"1.0.0\"", "outcome=\"ok\""],
    );
    assert!(
        calls.is_some_and(|calls| calls >= 5.0),
        "steward_calls_total in:\n{metrics}"
    );
    assert!(
        metrics.contains("steward_call_duration_seconds_bucket{"),
        "no call latency histogram in:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_versions() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    let api = &agent.api;
    let old_pid = agent.runtime_pid("echo");

    let (status, answer) = api.set_version("echo", "2.0.0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"id": "echo", "version": "2.0.0", "previous": "1.0.0", "done": true, "fleet": false})
    );
    // Once the PUT answered, the new version serves.
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("2.0.0")
    );
    let detail = api.detail("echo").await;
    assert_eq!(detail["active_version"], "2.0.0", "{detail}");
    assert_eq!(detail["desired_version"], "2.0.0", "{detail}");
    assert_eq!(detail["info"]["runtime_version"], "2.0.0", "{detail}");
    // The other runtime is untouched.
    let kv = api.detail("kv").await;
    assert_eq!(kv["active_version"], "1.0.0", "{kv}");
    // The old process goes away (make-before-break stops it after).
    crate::support::wait_gone(&[old_pid], DEADLINE).await;
    assert_ne!(agent.runtime_pid("echo"), old_pid);

    let metrics = api.metrics().await;
    let switches = metric_value(
        &metrics,
        "steward_version_switches_total",
        &["runtime=\"echo\"", "outcome=\"ok\""],
    );
    assert_eq!(
        switches,
        Some(1.0),
        "steward_version_switches_total in:\n{metrics}"
    );
    // The call since the switch counts for the version that answered it.
    let calls_to = |metrics: &str, version: &str| {
        let version = format!("version=\"{version}\"");
        metric_value(
            metrics,
            "steward_calls_total",
            &["runtime=\"echo\"", &version, "outcome=\"ok\""],
        )
    };
    assert_eq!(calls_to(&metrics, "2.0.0"), Some(1.0), "{metrics}");

    // Back through the CLI.
    let switched = agent.cli(&["set-version", "echo", "1.0.0"]).await;
    assert_eq!(switched.success().trim(), "echo: now at 1.0.0 (was 2.0.0)");
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("1.0.0")
    );
    let metrics = api.metrics().await;
    assert_eq!(calls_to(&metrics, "2.0.0"), Some(1.0), "{metrics}");
    assert!(
        calls_to(&metrics, "1.0.0").is_some_and(|calls| calls >= 1.0),
        "{metrics}"
    );
    // Asking for the active version again is not a switch.
    let same = agent.cli(&["set-version", "echo", "1.0.0"]).await;
    assert_eq!(same.success().trim(), "echo: at 1.0.0");
    let (status, answer) = api.set_version("echo", "1.0.0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["version"], "1.0.0");

    // An unknown version: 404, nothing changes.
    let (status, answer) = api.set_version("echo", "9.9.9").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["error"]["module"], "steward", "{answer}");
    assert_eq!(answer["error"]["code"], 404, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("9.9.9")),
        "{answer}"
    );
    let unknown = agent.cli(&["set-version", "echo", "9.9.9"]).await;
    let line = unknown.one_line_error(1);
    assert!(line.contains("9.9.9") && line.contains("404"), "{line}");
    let detail = api.detail("echo").await;
    assert_eq!(detail["active_version"], "1.0.0", "{detail}");
    assert_eq!(detail["desired_version"], "1.0.0", "{detail}");
    assert_eq!(detail["state"], "running", "{detail}");
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("1.0.0")
    );

    // A version of another runtime is unknown too.
    let (status, answer) = api.set_version("kv", "2.0.0").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");

    let metrics = api.metrics().await;
    let switches = metric_value(
        &metrics,
        "steward_version_switches_total",
        &["runtime=\"echo\"", "outcome=\"ok\""],
    );
    assert_eq!(
        switches,
        Some(2.0),
        "steward_version_switches_total in:\n{metrics}"
    );
}

/// What the callers of [`switching_under_load`] saw.
#[derive(Default)]
struct Observed {
    calls: u64,
    /// Versions that answered since the last reset.
    versions: BTreeSet<String>,
    /// Every version that answered, with how often.
    all_versions: BTreeMap<String, u64>,
    failures: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_under_load_fails_no_call() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    let observed = Arc::new(Mutex::new(Observed::default()));
    let stop = Arc::new(AtomicBool::new(false));

    let mut callers = Vec::new();
    for caller in 0..4 {
        let api = agent.api.clone();
        let observed = observed.clone();
        let stop = stop.clone();
        callers.push(tokio::spawn(async move {
            let mut n = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Alternate methods, so both plain and echoing calls cross
                // the switches.
                let answer = if caller == 0 {
                    // Calls in flight while the versions change hands.
                    match api.call("echo", "sleep", json!({"ms": 25})).await {
                        Ok(Value::Null) => api.call("echo", "version", Value::Null).await,
                        Ok(other) => Err((StatusCode::OK, json!({"sleep answered": other}))),
                        Err(error) => Err(error),
                    }
                } else if n.is_multiple_of(2) {
                    api.call("echo", "version", Value::Null).await
                } else {
                    let args = json!({"caller": caller, "n": n});
                    match api.call("echo", "echo", args.clone()).await {
                        Ok(result) if result == args => {
                            api.call("echo", "version", Value::Null).await
                        }
                        Ok(other) => Err((StatusCode::OK, json!({"wrong echo": other}))),
                        Err(error) => Err(error),
                    }
                };
                let mut seen = observed.lock().unwrap();
                seen.calls += 1;
                match answer {
                    Ok(Value::String(version)) => {
                        seen.versions.insert(version.clone());
                        *seen.all_versions.entry(version).or_default() += 1;
                    }
                    Ok(other) => seen.failures.push(format!("version answered {other}")),
                    Err((status, body)) => seen.failures.push(format!("{status}: {body}")),
                }
            }
        }));
    }

    let wait_for_version = |version: &'static str| {
        let observed = observed.clone();
        async move {
            eventually(
                &format!("callers to see version {version}"),
                DEADLINE,
                || {
                    let seen = observed.lock().unwrap().versions.contains(version);
                    async move { seen.then_some(()) }
                },
            )
            .await;
        }
    };
    wait_for_version("1.0.0").await;
    for target in ["2.0.0", "1.0.0", "2.0.0"] {
        let (status, answer) = agent.api.set_version("echo", target).await;
        assert_eq!(status, StatusCode::OK, "switch to {target}: {answer}");
        assert_eq!(answer["version"], target);
        observed.lock().unwrap().versions.clear();
        wait_for_version(target).await;
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.expect("a caller panicked");
    }

    let observed = std::mem::take(&mut *observed.lock().unwrap());
    eprintln!(
        "{} calls during the switches, answered by {:?}",
        observed.calls, observed.all_versions
    );
    assert!(
        observed.failures.is_empty(),
        "{} of {} calls failed during the switches; first ones: {:#?}",
        observed.failures.len(),
        observed.calls,
        &observed.failures[..observed.failures.len().min(10)]
    );
    assert!(
        observed.all_versions.contains_key("1.0.0") && observed.all_versions.contains_key("2.0.0"),
        "versions seen: {:?}",
        observed.all_versions
    );
    let detail = agent.api.detail("echo").await;
    assert_eq!(detail["active_version"], "2.0.0", "{detail}");
    assert_eq!(detail["restarts"], 0, "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_over_sse_and_the_cli() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    let api = &agent.api;

    // An unknown runtime cannot be followed.
    let (status, answer) = api.get("/v1/events?runtime=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");

    let mut echo_only = api.events("/v1/events?runtime=echo").await;
    let mut all = api.events("/v1/events").await;
    // A switch of kv first: the filtered stream must not show it.
    let (status, answer) = api.set_version("kv", "1.1.0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = api.set_version("echo", "2.0.0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // The switch's events: the new version started, the switch, the old
    // version stopped (their order is not asserted: they come from
    // different tasks of the agent).
    let mut pending = vec![
        ("started", "2.0.0"),
        ("switched", "2.0.0"),
        ("stopped", "1.0.0"),
    ];
    let seen = echo_only
        .until(DEADLINE, |event| {
            pending.retain(|(kind, version)| {
                !(event["kind"] == *kind && event["version"] == *version)
            });
            pending.is_empty()
        })
        .await;
    for event in &seen {
        assert_eq!(event["runtime"], "echo", "a filtered stream showed {event}");
        assert!(event["time"].is_string(), "{event}");
        assert!(event["version"].is_string(), "{event}");
    }
    let switched = seen
        .iter()
        .find(|event| event["kind"] == "switched")
        .unwrap();
    assert_eq!(switched["message"], "from 1.0.0", "{switched}");

    // The unfiltered stream has both switches, kv's first.
    let seen = all
        .until(DEADLINE, |event| {
            event["kind"] == "switched" && event["runtime"] == "echo"
        })
        .await;
    let kv_switch = seen
        .iter()
        .position(|event| event["kind"] == "switched" && event["runtime"] == "kv");
    assert!(kv_switch.is_some(), "no kv switch in {seen:#?}");
    assert_eq!(seen[kv_switch.unwrap()]["version"], "1.1.0");

    // `steward events --json` prints one JSON object per line, and without
    // --json one line per event. They subscribe at some point after
    // starting: switch back and forth until both printed a line.
    let mut json_cli = agent.cli_streaming(&["events", "--json", "--runtime", "echo"]);
    let mut text_cli = agent.cli_streaming(&["events"]);
    let mut json_line = None;
    let mut text_line = None;
    let mut target = "1.0.0";
    let deadline = std::time::Instant::now() + DEADLINE;
    while json_line.is_none() || text_line.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "`steward events` printed nothing; json stderr {:?}, text stderr {:?}",
            json_cli.stderr.text(),
            text_cli.stderr.text()
        );
        assert!(
            json_cli.try_exit().is_none(),
            "events --json exited: {:?}",
            json_cli.stderr.text()
        );
        assert!(
            text_cli.try_exit().is_none(),
            "events exited: {:?}",
            text_cli.stderr.text()
        );
        let (status, answer) = api.set_version("echo", target).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        target = if target == "1.0.0" { "2.0.0" } else { "1.0.0" };
        if json_line.is_none() {
            json_line = json_cli.next_line(Duration::from_millis(500)).await;
        }
        if text_line.is_none() {
            text_line = text_cli.next_line(Duration::from_millis(500)).await;
        }
    }
    let json_line = json_line.unwrap();
    let event: Value = serde_json::from_str(&json_line)
        .unwrap_or_else(|error| panic!("events --json printed {json_line:?}: {error}"));
    assert_eq!(event["runtime"], "echo", "{event}");
    for field in ["version", "kind", "time"] {
        assert!(event[field].is_string(), "{field} missing in {event}");
    }
    let kinds = [
        "started",
        "stopped",
        "switched",
        "updated",
        "failed_to_start",
        "switch_failed",
    ];
    assert!(kinds.contains(&event["kind"].as_str().unwrap()), "{event}");
    let text_line = text_line.unwrap();
    assert!(
        serde_json::from_str::<Value>(&text_line).is_err(),
        "events without --json printed JSON: {text_line}"
    );
    assert!(
        text_line.contains("echo") && kinds.iter().any(|kind| text_line.contains(kind)),
        "{text_line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_without_an_agent_says_it_cannot_reach_it() {
    for args in [
        &["--api", "http://127.0.0.1:1", "status"][..],
        &["--api", "http://127.0.0.1:1", "call", "echo", "version"][..],
        &[
            "--api",
            "http://127.0.0.1:1",
            "set-version",
            "echo",
            "2.0.0",
        ][..],
    ] {
        let output = cli_str(args, &[]).await;
        let line = output.one_line_error(1);
        assert!(line.contains("cannot reach"), "{args:?}: {line}");
        assert!(line.contains("http://127.0.0.1:1"), "{args:?}: {line}");
        assert!(output.stdout.is_empty(), "{output:#?}");
    }
    // The same through STEWARD_API.
    let output = cli_str(&["status"], &[("STEWARD_API", "http://127.0.0.1:1")]).await;
    assert!(output.one_line_error(1).contains("cannot reach"));
    // A URL that is not http is a usage error.
    let output = cli_str(&["--api", "127.0.0.1:7171", "status"], &[]).await;
    assert!(output.one_line_error(2).contains("--api"));
}

/// `wait: false` answers 202 as soon as desired state says the version,
/// and the switch goes on; `set-version --no-wait` is the same from the
/// CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_that_does_not_wait_is_accepted_and_goes_on() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    let (status, answer) = agent
        .api
        .json(
            Method::PUT,
            "/v1/runtimes/echo/version",
            Some(json!({"version": "2.0.0", "wait": false})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        answer,
        json!({"id": "echo", "version": "2.0.0", "previous": "1.0.0", "done": false, "fleet": false})
    );
    assert_eq!(agent.api.detail("echo").await["desired_version"], "2.0.0");
    agent.wait_active("echo", "2.0.0").await;

    let switched = agent
        .cli(&["set-version", "echo", "1.0.0", "--no-wait"])
        .await;
    assert_eq!(
        switched.success().trim(),
        "echo: desired version 1.0.0; the switch goes on (see `steward status`)"
    );
    agent.wait_active("echo", "1.0.0").await;
    let (_, health) = agent.api.get("/healthz").await;
    assert_eq!(
        health,
        json!({"status": "ok"}),
        "no fleet fields without a fleet"
    );
}
