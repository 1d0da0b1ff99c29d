//! End-to-end tests of runtime logs: the demo's output lines in
//! `steward logs` and `GET /v1/runtimes/{id}/logs` (time, version,
//! stream), `-f` following new lines, the version filter across a switch,
//! hook output marked as a hook's, and the bad-input answers.
//!
//! Lines are made on demand with the echo runtime's `print` method, and
//! waited for with deadlines, never for time.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{Agent, BIN, DEADLINE, Options, eventually};

/// `steward logs ARGS` once `check` accepts its output; returns it.
async fn logs_until(
    agent: &Agent,
    args: &[&str],
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let mut full = vec!["logs"];
    full.extend_from_slice(args);
    let full = &full;
    let check = &check;
    eventually(what, DEADLINE, || async move {
        let out = agent.cli(full).await;
        let text = out.success().to_owned();
        check(&text).then_some(text)
    })
    .await
}

/// The line of `text` that contains `needle`.
fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_output_is_in_steward_logs_with_time_version_and_stream() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    agent.wait_running(&["echo", "kv"]).await;

    // The line each echo process prints on start, on its stdout.
    let text = logs_until(&agent, &["echo"], "echo's start line", |text| {
        text.contains("echo 1.0.0 starting")
    })
    .await;
    let fields: Vec<&str> = line_with(&text, "echo 1.0.0 starting")
        .split_whitespace()
        .collect();
    assert!(
        humantime::parse_rfc3339(fields[0]).is_ok(),
        "a time first: {text}"
    );
    assert_eq!(fields[1..3], ["1.0.0", "stdout"], "{text}");

    agent
        .api
        .call_ok(
            "echo",
            "print",
            json!({"text": "a line on stderr", "stream": "stderr"}),
        )
        .await;
    let text = logs_until(&agent, &["echo", "-n", "1"], "the stderr line", |text| {
        text.contains("a line on stderr")
    })
    .await;
    assert_eq!(text.lines().count(), 1, "-n 1 prints one line: {text}");
    assert!(
        text.trim_end()
            .ends_with("1.0.0      stderr  a line on stderr"),
        "{text}"
    );
    // Besides the logs, the agent's own log has it.
    agent.wait_stderr("a line on stderr").await;

    // The API: the same line as JSON.
    let (status, body) = agent.api.get("/v1/runtimes/echo/logs?tail=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let line = &body["lines"][0];
    assert_eq!(line["text"], "a line on stderr", "{body}");
    assert_eq!(line["version"], "1.0.0", "{body}");
    assert_eq!(line["stream"], "stderr", "{body}");
    assert_eq!(line["source"], "runtime", "{body}");
    assert!(line["seq"].is_u64() && line["time"].is_string(), "{body}");

    // `--version` filters; after a switch each version has its own lines.
    let out = agent.cli(&["logs", "echo", "--version", "2.0.0"]).await;
    assert_eq!(out.success(), "", "2.0.0 never ran yet");
    let (status, body) = agent.api.set_version("echo", "2.0.0").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    agent
        .api
        .call_ok("echo", "print", json!({"text": "printed by 2.0.0"}))
        .await;
    let text = logs_until(
        &agent,
        &["echo", "--version", "2.0.0"],
        "2.0.0's lines",
        |text| text.contains("printed by 2.0.0"),
    )
    .await;
    assert!(text.contains("echo 2.0.0 starting"), "{text}");
    assert!(
        text.lines().all(|line| line.contains(" 2.0.0 ")),
        "only 2.0.0's lines: {text}"
    );
    let old = agent.cli(&["logs", "echo", "--version", "1.0.0"]).await;
    let old = old.success();
    assert!(old.contains("a line on stderr"), "{old}");
    assert!(!old.contains("2.0.0"), "{old}");

    // `--json`: one object per line.
    let out = agent.cli(&["logs", "echo", "-n", "1", "--json"]).await;
    let line: Value = serde_json::from_str(out.success().trim()).unwrap();
    assert_eq!(line["text"], "printed by 2.0.0", "{line}");
    assert_eq!(line["version"], "2.0.0", "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steward_logs_follow_prints_new_lines_as_they_come() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    agent.wait_running(&["echo"]).await;
    agent
        .api
        .call_ok("echo", "print", json!({"text": "before following"}))
        .await;
    logs_until(&agent, &["echo"], "the first line", |text| {
        text.contains("before following")
    })
    .await;

    let mut follow = agent.cli_streaming(&["logs", "echo", "-f", "-n", "1"]);
    // The tail first: once it is there, the follower is subscribed.
    let first = follow.next_line(DEADLINE).await.expect("the tail line");
    assert!(first.ends_with("stdout  before following"), "{first}");
    for i in 0..3 {
        let text = format!("live line {i}");
        agent
            .api
            .call_ok("echo", "print", json!({"text": text}))
            .await;
        let line = follow.next_line(DEADLINE).await.expect("a live line");
        assert!(
            line.ends_with(&format!("1.0.0      stdout  {text}")),
            "{line}"
        );
    }
    assert!(follow.try_exit().is_none(), "-f keeps following");

    // The SSE answer behind it: `data:` lines of the JSON lines.
    let response = agent
        .api
        .builder(
            reqwest::Method::GET,
            "/v1/runtimes/echo/logs?follow=true&tail=1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
}

/// A config hosting `echo` 1.0.0 with hooks in `hooks` whose install hook
/// prints a line on stdout and one on stderr.
fn hook_config(root: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let hooks = root.join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let install = hooks.join("install");
    std::fs::write(
        &install,
        "#!/bin/sh\necho \"installing $STEWARD_VERSION\"\necho \"install warning\" >&2\n",
    )
    .unwrap();
    std::fs::set_permissions(&install, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        "[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\"\nhooks = {hooks}\n\n[[runtime.version]]\nversion = \"1.0.0\"\ncommand = {command}\nargs = [\"example-runtime\", \"echo\", \"--version\", \"1.0.0\"]\n",
        hooks = serde_json::to_string(&hooks).unwrap(),
        command = serde_json::to_string(BIN).unwrap(),
    );
    let path = root.join("steward.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_output_is_in_the_logs_marked_with_the_hooks_name() {
    let root = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let config = hook_config(root.path());
    let agent = Agent::start(Options {
        name: Some("a1".to_owned()),
        ..Options::with_config(data.path(), &config)
    })
    .await;

    let text = logs_until(&agent, &["echo"], "the install hook's lines", |text| {
        // The runtime starts after its install hook.
        ["installing 1.0.0", "install warning", "echo 1.0.0 starting"]
            .iter()
            .all(|needle| text.contains(needle))
    })
    .await;
    let out = line_with(&text, "installing 1.0.0");
    assert!(
        out.contains(" hook:install ") && out.contains(" stdout  installing 1.0.0"),
        "{text}"
    );
    let err = line_with(&text, "install warning");
    assert!(
        err.contains(" hook:install ") && err.contains(" stderr  install warning"),
        "{text}"
    );
    // The runtime's own lines are not marked.
    let start = line_with(&text, "echo 1.0.0 starting");
    assert!(!start.contains("hook:"), "{text}");

    let (status, body) = agent.api.get("/v1/runtimes/echo/logs").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hook_line = body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["text"] == "installing 1.0.0")
        .unwrap_or_else(|| panic!("no hook line in {body}"));
    assert_eq!(hook_line["source"], "hook", "{body}");
    assert_eq!(hook_line["hook"], "install", "{body}");
    assert_eq!(hook_line["version"], "1.0.0", "{body}");
    assert_eq!(hook_line["stream"], "stdout", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_log_requests_get_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    agent.wait_running(&["echo"]).await;

    let (status, body) = agent.api.get("/v1/runtimes/nope/logs").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("nope"),
        "{body}"
    );
    let (status, body) = agent.api.get("/v1/runtimes/echo/logs?version=9.9.9").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no version \"9.9.9\"") && message.contains("1.0.0, 2.0.0"),
        "{body}"
    );
    for tail in ["x", "-1", "1.5", "1000001", "115096246571782563713515520"] {
        let (status, body) = agent
            .api
            .get(&format!("/v1/runtimes/echo/logs?tail={tail}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "tail={tail}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("tail"),
            "{body}"
        );
    }
    let (status, body) = agent.api.get("/v1/runtimes/echo/logs?lines=3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The CLI: one line naming the problem, exit status 1.
    let out = agent.cli(&["logs", "nope"]).await;
    assert!(
        out.one_line_error(1).contains("no runtime \"nope\""),
        "{out:?}"
    );
    let out = agent.cli(&["logs", "echo", "--version", "9.9.9"]).await;
    assert!(
        out.one_line_error(1).contains("no version \"9.9.9\""),
        "{out:?}"
    );
    let out = agent.cli(&["logs", "echo", "-n", "many"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");

    // The agent keeps serving.
    agent
        .api
        .call_ok("echo", "print", json!({"text": "still here"}))
        .await;
    logs_until(
        &agent,
        &["echo", "-n", "1"],
        "a line after the errors",
        |text| text.contains("still here"),
    )
    .await;
}
