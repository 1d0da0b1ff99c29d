//! The manners of the command line and the API: output into a closed
//! pipe ends a command quietly, as with any Unix tool; integers beyond 64
//! bits keep every digit; a shutdown's last events reach the event
//! streams; the runtime detail shows each version's pid and uptime; shell
//! completions and the manual page come from the command line's definition.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{Agent, BIN, DEADLINE, cli_str, eventually};

/// The exit status of a command whose stdout was closed: 128 + SIGPIPE.
const EXIT_CLOSED: i32 = 141;

/// `steward <args>` with stdout a pipe whose reader has already gone (so
/// its first write fails with EPIPE, whenever it comes).
fn closed_stdout_command(args: &[&str]) -> Command {
    let (reader, writer) = std::io::pipe().expect("cannot make a pipe");
    drop(reader);
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("STEWARD_API")
        .env_remove("STEWARD_TOKEN_FILE")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    command
}

/// Asserts that a command ended as one whose reader went away: status
/// 141, nothing on stderr (no panic, no "Broken pipe", no backtrace).
fn assert_quiet_close(what: &str, output: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what}: {stderr}"
    );
    assert_eq!(stderr, "", "{what}: nothing on stderr");
    assert_eq!(
        output.status.code(),
        Some(EXIT_CLOSED),
        "{what}: exit status {:?}, stderr {stderr:?}",
        output.status
    );
}

/// Runs `command` to its end, within the deadline.
async fn output_of(mut command: Command) -> std::process::Output {
    tokio::time::timeout(
        DEADLINE,
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("the command did not finish")
    .unwrap()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_closed_pipe_ends_quietly_with_status_141() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    let api = agent.url.as_str();
    let commands: &[&[&str]] = &[
        &["--api", api, "status"],
        &["--api", api, "status", "--json"],
        &["--api", api, "call", "echo", "echo", "{\"a\": [1, 2, 3]}"],
        &["--api", api, "set-version", "kv", "1.0.0"],
        &["config", "demo"],
        &["--help"],
        &["status", "--help"],
        &["--version"],
        &["completions", "bash"],
        &["man"],
    ];
    for args in commands {
        let output = output_of(closed_stdout_command(args)).await;
        assert_quiet_close(&format!("steward {}", args.join(" ")), &output);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_events_into_a_closed_pipe_ends_at_the_next_event() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    let mut child = closed_stdout_command(&["--api", &agent.url, "events"])
        .spawn()
        .expect("cannot spawn `steward events`");
    // Until it has subscribed, a switch's events pass it by: switch until
    // one reaches it and its write fails.
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "`steward events` kept running with its stdout closed"
        );
        let target = if agent.api.detail("echo").await["active_version"] == "1.0.0" {
            "2.0.0"
        } else {
            "1.0.0"
        };
        let (code, answer) = agent.api.set_version("echo", target).await;
        assert_eq!(code, StatusCode::OK, "{answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = child.wait_with_output().unwrap();
    assert_eq!(status.code(), output.status.code());
    assert_quiet_close("steward events", &output);
}

/// 2^70, beyond what a `serde_json::Value` (or a JavaScript number) holds.
const TWO_TO_THE_70: &str = "1180591620717411303424";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integers_beyond_64_bits_keep_every_digit_through_a_call() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    let u128_max = u128::MAX.to_string();
    let i128_min = i128::MIN.to_string();
    let args = format!("[{TWO_TO_THE_70},-{TWO_TO_THE_70},{u128_max},{i128_min},1.5]");
    // The answer's text, not a parsed `serde_json::Value`: parsing would
    // round the very digits under test.
    let (status, _, text) = agent
        .api
        .raw(
            Method::POST,
            "/v1/runtimes/echo/call",
            Some(format!(r#"{{"method": "echo", "args": {args}}}"#).into_bytes()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(text, format!(r#"{{"result":{args}}}"#));

    // Stored by a runtime and read back: the same number.
    let (status, _, text) = agent
        .api
        .raw(
            Method::POST,
            "/v1/runtimes/kv/call",
            Some(
                format!(
                    r#"{{"method": "put", "args": {{"key": "big", "value": {TWO_TO_THE_70}}}}}"#
                )
                .into_bytes(),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let got = agent.cli(&["call", "kv", "get", r#"{"key": "big"}"#]).await;
    assert_eq!(got.success().trim(), TWO_TO_THE_70);

    // The CLI sends and prints them exactly too.
    let echoed = agent
        .cli(&[
            "call",
            "echo",
            "echo",
            &format!(r#"{{"n": -{TWO_TO_THE_70}}}"#),
        ])
        .await;
    assert_eq!(
        echoed.success(),
        format!("{{\n  \"n\": -{TWO_TO_THE_70}\n}}\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integers_beyond_128_bits_are_refused_with_a_reason() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    // 2^128: one more than the API carries.
    let too_big = "340282366920938463463374607431768211456";
    let (status, _, text) = agent
        .api
        .raw(
            Method::POST,
            "/v1/runtimes/echo/call",
            Some(format!(r#"{{"method": "echo", "args": {{"n": {too_big}}}}}"#).into_bytes()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(too_big) && message.contains("send it as a string"),
        "{message}"
    );
    // The runtime never saw it, and still serves.
    let ok = agent
        .api
        .call_ok("echo", "echo", serde_json::json!(1))
        .await;
    assert_eq!(ok, serde_json::json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_deliver_the_final_stopped_events_of_a_shutdown() {
    let dir = TempDir::new().unwrap();
    let mut agent = Agent::demo(dir.path()).await;
    let mut events = agent.api.events("/v1/events").await;
    let mut follower = agent.cli_streaming(&["events", "--json"]);
    // The follower is subscribed once it has seen an event.
    let (status, answer) = agent.api.set_version("echo", "2.0.0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let switched = |line: &str| line.contains("\"switched\"");
    loop {
        let line = follower
            .next_line(DEADLINE)
            .await
            .expect("`steward events` printed no switch");
        if switched(&line) {
            break;
        }
    }

    let status = agent.stop_with(Signal::SIGTERM, DEADLINE).await;
    assert_eq!(status.code(), Some(0));
    let mut seen = Vec::new();
    while let Some(event) = events.next(DEADLINE).await {
        seen.push(event);
    }
    let stopped = |events: &[Value], runtime: &str, version: &str| {
        events.iter().any(|event| {
            event["kind"] == "stopped"
                && event["runtime"] == runtime
                && event["version"] == version
                && event["message"] == "exit status: 0"
        })
    };
    for (runtime, version) in [("echo", "2.0.0"), ("kv", "1.0.0")] {
        assert!(
            stopped(&seen, runtime, version),
            "no final `stopped` of {runtime} {version} before the stream ended: {seen:#?}"
        );
    }

    // `steward events` prints them too, before it says the stream closed.
    let mut lines = Vec::new();
    while let Some(line) = follower.next_line(DEADLINE).await {
        lines.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    for (runtime, version) in [("echo", "2.0.0"), ("kv", "1.0.0")] {
        assert!(
            stopped(&lines, runtime, version),
            "`steward events` printed no final `stopped` of {runtime} {version}: {lines:#?}"
        );
    }
    assert!(
        follower.stderr.text().contains("closed the event stream"),
        "{}",
        follower.stderr.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_detail_shows_pid_and_uptime_per_version() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    let pid = agent.runtime_pid("echo");
    let detail = agent.api.detail("echo").await;
    let processes = detail["processes"].as_array().expect("processes").clone();
    assert_eq!(processes.len(), 1, "{detail}");
    assert_eq!(processes[0]["version"], "1.0.0", "{detail}");
    assert_eq!(processes[0]["pid"], pid, "the real process: {detail}");
    assert!(processes[0]["started_at"].is_string(), "{detail}");
    let uptime = processes[0]["uptime_ms"].as_u64().expect("uptime_ms");
    eventually("the uptime to grow", DEADLINE, || async {
        let later = agent.api.detail("echo").await;
        (later["processes"][0]["uptime_ms"].as_u64()? > uptime).then_some(())
    })
    .await;

    // After a switch: the new version's process only (the old one is gone).
    let (status, answer) = agent.api.set_version("echo", "2.0.0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let new_pid = agent.runtime_pid("echo");
    let detail = agent.api.detail("echo").await;
    assert_eq!(
        detail["processes"],
        serde_json::json!([{
            "version": "2.0.0",
            "pid": new_pid,
            "started_at": detail["processes"][0]["started_at"],
            "uptime_ms": detail["processes"][0]["uptime_ms"],
        }]),
        "{detail}"
    );

    // `steward status echo`: every version, with the pid of the one that runs.
    let text = agent.cli(&["status", "echo"]).await;
    let text = text.success();
    assert!(text.starts_with("runtime:    echo\n"), "{text}");
    let row = |version: &str| {
        text.lines()
            .find(|line| line.starts_with(version))
            .unwrap_or_else(|| panic!("no row for {version}: {text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("1.0.0")[..3], ["1.0.0", "-", "-"], "{text}");
    assert_eq!(
        row("2.0.0")[..3],
        ["2.0.0".to_owned(), "active".to_owned(), new_pid.to_string()],
        "{text}"
    );
    let json = agent.cli(&["status", "echo", "--json"]).await;
    let json: Value = serde_json::from_str(json.success()).unwrap();
    assert_eq!(json["processes"][0]["pid"], new_pid, "{json}");
    let unknown = agent.cli(&["status", "nope"]).await;
    assert!(unknown.one_line_error(1).contains("nope"), "{unknown:?}");
}

/// The commands a user types (the hidden ones are the agent's own).
const COMMANDS: &[&str] = &[
    "run",
    "status",
    "call",
    "set-version",
    "resolve",
    "abort",
    "events",
    "config",
    "completions",
    "man",
    "hook-tool",
];
const HIDDEN: &[&str] = &["hook-leader", "example-runtime"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_offer_every_command_and_no_hidden_one() {
    for shell in ["bash", "zsh", "fish"] {
        let output = cli_str(&["completions", shell], &[]).await;
        let script = output.success();
        for command in COMMANDS {
            assert!(script.contains(command), "{shell}: no {command}");
        }
        for hidden in HIDDEN {
            assert!(!script.contains(hidden), "{shell} offers {hidden}");
        }
    }
    // Loaded into a real bash, it completes `steward st` to `status`.
    let dir = TempDir::new().unwrap();
    let script = dir.path().join("steward.bash");
    std::fs::write(
        &script,
        cli_str(&["completions", "bash"], &[]).await.success(),
    )
    .unwrap();
    let completed = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$0"; COMP_WORDS=(steward st); COMP_CWORD=1; COMP_LINE="steward st"; COMP_POINT=10; _steward steward st steward; echo "${COMPREPLY[@]}""#,
        )
        .arg(&script)
        .output()
        .expect("bash runs");
    assert_eq!(
        String::from_utf8_lossy(&completed.stdout).trim(),
        "status",
        "{completed:?}"
    );
    let bad = cli_str(&["completions", "tcsh"], &[]).await;
    assert_eq!(bad.code, Some(2), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manual_page_is_roff_from_the_command_line() {
    let output = cli_str(&["man"], &[]).await;
    let page = output.success();
    // After groff's two-line preamble (`.ie`/`.el`), the title.
    let first = page
        .lines()
        .find(|line| line.starts_with('.') && !line.starts_with(".ie") && !line.starts_with(".el"))
        .unwrap();
    assert!(first.starts_with(".TH steward 1 "), "{first}");
    let sections: Vec<&str> = page
        .lines()
        .filter(|line| line.starts_with(".SH "))
        .collect();
    assert_eq!(
        sections[..4],
        [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS"],
        "{page}"
    );
    for command in COMMANDS {
        assert!(
            page.contains(&format!("steward\\-{}(1)", command.replace('-', "\\-"))),
            "no steward-{command}(1) in {page}"
        );
    }
    for hidden in HIDDEN {
        assert!(
            !page.contains(&hidden.replace('-', "\\-")),
            "{hidden} in {page}"
        );
    }
    assert!(page.contains("\\-\\-token\\-file"), "{page}");

    // A page per command into a directory.
    let dir = TempDir::new().unwrap();
    cli_str(&["man", "--dir", dir.path().to_str().unwrap()], &[])
        .await
        .success();
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(files.contains(&"steward.1".to_owned()), "{files:?}");
    for command in COMMANDS {
        assert!(files.contains(&format!("steward-{command}.1")), "{files:?}");
    }
    assert!(
        !files
            .iter()
            .any(|file| HIDDEN.iter().any(|hidden| file.contains(hidden))),
        "{files:?}"
    );
    let status = std::fs::read_to_string(dir.path().join("steward-status.1")).unwrap();
    let title = format!(
        ".TH steward-status 1  \"steward {}\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        status.lines().any(|line| line.trim_end() == title),
        "{status}"
    );
}
