//! End-to-end tests of faults and lifecycle: a runtime process killed or
//! crashing, the agent killed or stopped gracefully, and what survives an
//! agent restart (the runtimes' data and their desired versions).

use std::time::Duration;

use nix::sys::signal::Signal;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    Agent, Api, DEADLINE, Options, cmdline, eventually, metric_value, send_signal, wait_gone,
};

/// How long the agent's graceful shutdown may take (its grace period is
/// 30 s; it normally takes milliseconds).
const SHUTDOWN: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runtime_process_is_restarted() {
    let dir = TempDir::new().unwrap();
    let agent = Agent::demo(dir.path()).await;
    let api = &agent.api;
    let echo_pid = agent.runtime_pid("echo");
    let kv_pid = agent.runtime_pid("kv");
    assert_eq!(
        api.call_ok("kv", "put", json!({"key": "k", "value": 1}))
            .await,
        Value::Null
    );

    let mut events = api.events("/v1/events?runtime=echo").await;
    send_signal(echo_pid, Signal::SIGKILL);
    // kv does not notice.
    assert_eq!(
        api.call_ok("kv", "get", json!({"key": "k"})).await,
        json!(1)
    );

    let seen = events
        .until(DEADLINE, |event| event["kind"] == "started")
        .await;
    let stopped = seen
        .iter()
        .position(|event| event["kind"] == "stopped")
        .unwrap_or_else(|| panic!("no `stopped` before `started`: {seen:#?}"));
    assert_eq!(seen[stopped]["version"], "1.0.0", "{seen:#?}");
    assert!(
        seen[stopped]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "a stopped event says why: {seen:#?}"
    );
    assert_eq!(seen.last().unwrap()["version"], "1.0.0", "{seen:#?}");

    let detail = agent.wait_active("echo", "1.0.0").await;
    assert!(
        detail["restarts"].as_u64().is_some_and(|n| n >= 1),
        "{detail}"
    );
    assert!(detail["last_error"].is_string(), "{detail}");
    assert_eq!(detail["info"]["runtime_version"], "1.0.0", "{detail}");
    let new_pid = agent.runtime_pid("echo");
    assert_ne!(new_pid, echo_pid);
    assert!(crate::support::is_gone(echo_pid));
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("1.0.0")
    );
    assert_eq!(
        api.call_ok("echo", "echo", json!([1, 2])).await,
        json!([1, 2])
    );

    // kv was never touched.
    assert_eq!(agent.runtime_pid("kv"), kv_pid);
    let kv = api.detail("kv").await;
    assert_eq!(kv["restarts"], 0, "{kv}");
    assert_eq!(kv["state"], "running", "{kv}");

    let metrics = api.metrics().await;
    let restarts = metric_value(
        &metrics,
        "steward_runtime_restarts_total",
        &["runtime=\"echo\""],
    );
    assert!(
        restarts.is_some_and(|n| n >= 1.0),
        "steward_runtime_restarts_total in:\n{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "steward_runtime_restarts_total",
            &["runtime=\"kv\""]
        ),
        None,
        "{metrics}"
    );

    // A call that crashes the process answers an error (it does not hang),
    // and the runtime comes back again.
    let (status, body) = api
        .call("echo", "crash", Value::Null)
        .await
        .expect_err("crash cannot answer");
    assert!(status.is_server_error(), "{status}: {body}");
    assert_eq!(body["error"]["module"], "steward", "{body}");
    eventually("echo to restart after the crash", DEADLINE, || async move {
        let detail = api.detail("echo").await;
        (detail["state"] == "running" && detail["restarts"].as_u64() >= Some(2)).then_some(())
    })
    .await;
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("1.0.0")
    );

    // `abort --force` kills and restarts the process.
    let crashed_pid = agent.runtime_pid("echo");
    let aborted = agent.cli(&["abort", "echo", "--force"]).await;
    assert_eq!(aborted.success().trim(), "echo: killed and restarting");
    wait_gone(&[crashed_pid], DEADLINE).await;
    agent.wait_active("echo", "1.0.0").await;
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("1.0.0")
    );
    let aborted = agent.cli(&["abort", "echo"]).await;
    assert_eq!(
        aborted.success().trim(),
        "echo: aborted its work in progress"
    );

    // A plain abort ends a call in flight with the runtime's `aborted`
    // error (409), without a restart. The call may not have reached the
    // runtime when an abort comes: abort until it ends.
    let pid = agent.runtime_pid("echo");
    let sleeper = {
        let api = api.clone();
        tokio::spawn(async move { api.call("echo", "sleep", json!({"ms": 60_000})).await })
    };
    let deadline = std::time::Instant::now() + DEADLINE;
    while !sleeper.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "aborts did not end the sleep"
        );
        assert_eq!(gentle_abort(api, "echo").await, "abandoned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = sleeper.await.unwrap().expect_err("an aborted sleep fails");
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["module"], "echo", "{body}");
    assert_eq!(agent.runtime_pid("echo"), pid);
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("1.0.0")
    );

    // A runtime that cannot answer a plain abort (stopped) is killed after
    // the abort timeout, and the answer says so rather than claiming the
    // work was abandoned.
    send_signal(pid, Signal::SIGSTOP);
    assert_eq!(gentle_abort(api, "echo").await, "killed");
    wait_gone(&[pid], DEADLINE).await;
    agent.wait_active("echo", "1.0.0").await;
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("1.0.0")
    );
    assert_eq!(agent.runtime_pid("kv"), kv_pid);
}

/// `POST /v1/runtimes/{id}/abort` without `force`: the answer's `outcome`.
async fn gentle_abort(api: &Api, id: &str) -> String {
    let (status, answer) = api
        .json(
            reqwest::Method::POST,
            &format!("/v1/runtimes/{id}/abort"),
            Some(json!({"force": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["id"], id, "{answer}");
    assert_eq!(answer["force"], false, "{answer}");
    answer["outcome"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtimes_exit_when_the_agent_is_killed() {
    let dir = TempDir::new().unwrap();
    let mut agent = Agent::demo(dir.path()).await;
    let pids = agent.runtime_pids(None);
    assert_eq!(pids.len(), 2, "one process per runtime: {pids:?}");

    let status = agent.stop_with(Signal::SIGKILL, DEADLINE).await;
    assert!(!status.success());
    // Orphaned, they notice their host is gone and exit by themselves.
    wait_gone(&pids, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_everything_gracefully() {
    let dir = TempDir::new().unwrap();
    let mut agent = Agent::demo(dir.path()).await;
    let mut events = agent.api.events("/v1/events").await;
    // A `steward events` client, known to be subscribed once it printed
    // the events of a switch.
    let mut follower = agent.cli_streaming(&["events", "--json"]);
    let deadline = std::time::Instant::now() + DEADLINE;
    for target in ["2.0.0", "1.0.0"].into_iter().cycle() {
        assert!(
            std::time::Instant::now() < deadline,
            "`steward events` printed nothing: {:?}",
            follower.stderr.text()
        );
        let (status, answer) = agent.api.set_version("echo", target).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        if follower
            .next_line(Duration::from_millis(500))
            .await
            .is_some()
        {
            break;
        }
    }
    let pids = agent.runtime_pids(None);
    assert_eq!(pids.len(), 2, "one process per runtime: {pids:?}");

    let status = agent.stop_with(Signal::SIGTERM, SHUTDOWN).await;
    assert_eq!(status.code(), Some(0), "SIGTERM exits with status 0");
    // The agent stops its runtimes before exiting (and reaps them).
    wait_gone(&pids, Duration::from_secs(5)).await;
    // Event streams end instead of holding the shutdown up.
    assert!(
        events.ended(Duration::from_secs(10)).await,
        "the event stream did not end"
    );
    let exit = eventually("`steward events` to exit", DEADLINE, || {
        let exit = follower.try_exit();
        async move { exit }
    })
    .await;
    let stderr = follower.stderr.text();
    assert_eq!(exit.code(), Some(1), "stderr: {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("closed"),
        "{stderr:?}"
    );
    agent.wait_stderr("SIGTERM received").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_data_survives_switches_and_agent_restarts() {
    let dir = TempDir::new().unwrap();
    let options = Options::demo(dir.path());
    let mut agent = Agent::start(options.clone()).await;
    agent.wait_running(&["echo", "kv"]).await;
    let value = json!({"colour": "teal", "sizes": [1, 2, 3]});
    assert_eq!(
        agent
            .api
            .call_ok("kv", "put", json!({"key": "config", "value": value}))
            .await,
        Value::Null
    );

    let (status, answer) = agent.api.set_version("kv", "1.1.0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        agent.api.call_ok("kv", "version", Value::Null).await,
        json!("1.1.0")
    );
    assert_eq!(
        agent
            .api
            .call_ok("kv", "get", json!({"key": "config"}))
            .await,
        value
    );
    assert_eq!(
        agent
            .api
            .call_ok(
                "kv",
                "put",
                json!({"key": "later", "value": "1.1.0 wrote this"})
            )
            .await,
        Value::Null
    );

    let status = agent.stop_with(Signal::SIGTERM, SHUTDOWN).await;
    assert_eq!(status.code(), Some(0));
    drop(agent);

    let agent = Agent::start(options).await;
    agent.wait_running(&["echo", "kv"]).await;
    let kv = agent.api.detail("kv").await;
    assert_eq!(kv["active_version"], "1.1.0", "{kv}");
    let api = &agent.api;
    assert_eq!(
        api.call_ok("kv", "get", json!({"key": "config"})).await,
        value
    );
    assert_eq!(
        api.call_ok("kv", "get", json!({"key": "later"})).await,
        json!("1.1.0 wrote this")
    );
    assert_eq!(
        api.call_ok("kv", "list", Value::Null).await,
        json!(["config", "later"])
    );
    // And back to 1.0.0: same data.
    let (status, answer) = api.set_version("kv", "1.0.0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        api.call_ok("kv", "get", json!({"key": "config"})).await,
        value
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_versions_survive_an_agent_restart() {
    let dir = TempDir::new().unwrap();
    let options = Options::demo(dir.path());
    let mut agent = Agent::start(options.clone()).await;
    agent.wait_running(&["echo", "kv"]).await;
    let (status, answer) = agent.api.set_version("echo", "2.0.0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // SIGINT (Ctrl-C) is a graceful stop too.
    let status = agent.stop_with(Signal::SIGINT, SHUTDOWN).await;
    assert_eq!(status.code(), Some(0), "SIGINT exits with status 0");
    drop(agent);

    let agent = Agent::start(options).await;
    let list = agent.wait_running(&["echo", "kv"]).await;
    // Without any request, echo came back at 2.0.0 and kv at 1.0.0.
    let echo = crate::support::find_runtime(&list, "echo").unwrap();
    assert_eq!(echo["active_version"], "2.0.0", "{list}");
    assert_eq!(echo["desired_version"], "2.0.0", "{list}");
    let kv = crate::support::find_runtime(&list, "kv").unwrap();
    assert_eq!(kv["active_version"], "1.0.0", "{list}");
    let detail = agent.api.detail("echo").await;
    assert_eq!(detail["info"]["runtime_version"], "2.0.0", "{detail}");
    assert_eq!(
        agent.api.call_ok("echo", "version", Value::Null).await,
        json!("2.0.0")
    );
    // It started 2.0.0 directly: the one echo process is 2.0.0's.
    let pid = agent.runtime_pid("echo");
    assert_eq!(
        cmdline(pid).last().map(String::as_str),
        Some("2.0.0"),
        "{:?}",
        cmdline(pid)
    );
    let status = agent.cli(&["status"]).await;
    let row = status
        .success()
        .lines()
        .find(|line| line.starts_with("echo "))
        .expect("an echo row")
        .split_whitespace()
        .take(4)
        .collect::<Vec<_>>();
    assert_eq!(row, ["echo", "2.0.0", "2.0.0", "running"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_switch_keeps_the_old_version_serving() {
    let dir = TempDir::new().unwrap();
    let path = write_broken_config(dir.path());
    let options = Options::with_config(&dir.path().join("data"), &path);
    let mut agent = Agent::start(options.clone()).await;
    agent.wait_running(&["echo"]).await;
    let api = &agent.api;
    let echo_pid = agent.runtime_pid("echo");
    let mut events = api.events("/v1/events?runtime=echo").await;

    for (version, reason) in [("4.0.0", "9.9.9"), ("5.0.0", "failed to start")] {
        let (status, answer) = api.set_version("echo", version).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
        assert_eq!(answer["error"]["module"], "steward", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(version) && message.contains(reason),
            "{answer}"
        );
        // (Its `failed_to_start` is not awaited here: the agent may lose
        // it, see `every_failed_start_is_reported`.)
        let seen = events
            .until(DEADLINE, |event| event["kind"] == "switch_failed")
            .await;
        let failed = seen.last().unwrap();
        assert_eq!(failed["version"], version, "{seen:#?}");
        assert!(
            failed["message"]
                .as_str()
                .is_some_and(|message| message.contains(reason)),
            "{failed}"
        );
        // The old version serves on, and desired state is back to it.
        let detail = api.detail("echo").await;
        assert_eq!(detail["active_version"], "1.0.0", "{detail}");
        assert_eq!(detail["desired_version"], "1.0.0", "{detail}");
        assert_eq!(detail["state"], "running", "{detail}");
        assert!(
            detail["last_error"]
                .as_str()
                .is_some_and(|error| error.contains(version)),
            "{detail}"
        );
        assert_eq!(
            api.call_ok("echo", "version", Value::Null).await,
            json!("1.0.0")
        );
        assert_eq!(agent.runtime_pid("echo"), echo_pid);
    }
    let failed = agent.cli(&["set-version", "echo", "4.0.0"]).await;
    let line = failed.one_line_error(1);
    assert!(line.contains("502") && line.contains("9.9.9"), "{line}");
    let metrics = api.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "steward_version_switches_total",
            &["runtime=\"echo\"", "outcome=\"error\""]
        ),
        Some(3.0),
        "{metrics}"
    );

    // A good switch still works; then the agent restarts on a config that
    // no longer has that version: it starts the config's `active`.
    let (status, answer) = api.set_version("echo", "2.0.0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let status = agent.stop_with(Signal::SIGTERM, SHUTDOWN).await;
    assert_eq!(status.code(), Some(0));
    drop(agent);
    let without_2 = crate::support::config_toml(&[crate::support::TestRuntime {
        id: "echo",
        active: "1.0.0",
        versions: &["1.0.0"],
    }]);
    std::fs::write(&path, without_2).unwrap();
    let agent = Agent::start(options).await;
    agent.wait_running(&["echo"]).await;
    let detail = agent.api.detail("echo").await;
    assert_eq!(detail["active_version"], "1.0.0", "{detail}");
    assert_eq!(detail["desired_version"], "1.0.0", "{detail}");
    agent
        .wait_stderr("the desired version is not in the config")
        .await;
}

/// Writes `<dir>/config/steward.toml`: runtime `echo` at 1.0.0 with good
/// versions 1.0.0 and 2.0.0, 4.0.0 that reports another version in its
/// handshake, and 5.0.0 that exits at once (no such example runtime).
fn write_broken_config(dir: &std::path::Path) -> std::path::PathBuf {
    let config_dir = dir.join("config");
    std::fs::create_dir(&config_dir).unwrap();
    let path = config_dir.join("steward.toml");
    let command = serde_json::to_string(crate::support::BIN).unwrap();
    let good = crate::support::config_toml(&[crate::support::TestRuntime {
        id: "echo",
        active: "1.0.0",
        versions: &["1.0.0", "2.0.0"],
    }]);
    let broken = format!(
        "{good}\n[[runtime.version]]\nversion = \"4.0.0\"\ncommand = {command}\nargs = [\"example-runtime\", \"echo\", \"--version\", \"9.9.9\"]\n\n[[runtime.version]]\nversion = \"5.0.0\"\ncommand = {command}\nargs = [\"example-runtime\", \"no-such-runtime\"]\n"
    );
    std::fs::write(&path, broken).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_start_is_reported() {
    // Each failed switch to 5.0.0 (whose process exits at once) is one
    // failed start: one `failed_to_start` event, counted once.
    const SWITCHES: usize = 40;
    let dir = TempDir::new().unwrap();
    let path = write_broken_config(dir.path());
    let agent = Agent::start(Options::with_config(&dir.path().join("data"), &path)).await;
    agent.wait_running(&["echo"]).await;
    let api = &agent.api;
    let mut events = api.events("/v1/events?runtime=echo").await;
    for _ in 0..SWITCHES {
        let (status, answer) = api.set_version("echo", "5.0.0").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    }
    let counted = eventually(
        "every failed start to be counted",
        Duration::from_secs(10),
        || async move {
            let metrics = api.metrics().await;
            let failures = metric_value(
                &metrics,
                "steward_runtime_start_failures_total",
                &["runtime=\"echo\"", "version=\"5.0.0\""],
            );
            (failures == Some(SWITCHES as f64)).then_some(())
        },
    );
    let (mut failed_to_start, mut switch_failed) = (0, 0);
    let mut last = None;
    while let Some(event) = events.next(Duration::from_secs(2)).await {
        match event["kind"].as_str() {
            Some("failed_to_start") => failed_to_start += 1,
            Some("switch_failed") => switch_failed += 1,
            _ => {}
        }
        last = Some(event);
        if failed_to_start == SWITCHES && switch_failed == SWITCHES {
            break;
        }
    }
    assert_eq!(switch_failed, SWITCHES, "last event: {last:?}");
    assert_eq!(
        failed_to_start, SWITCHES,
        "`failed_to_start` events for {SWITCHES} failed starts"
    );
    counted.await;
}

/// A runtime whose host died with an answer unread, and whose stderr pipe
/// is closed, still exits by itself, with status 0: closing never depends
/// on logging. (Seen from outside: the reset was logged as a warning
/// before the connection closed, the write to the dead pipe failed, the
/// logger panicked, and the runtime lived on, or exited with 101.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_exits_when_its_host_dies_even_with_its_stderr_gone() {
    use std::process::Stdio;

    use steward_protocol::{
        Body, Kind, Message, PROTOCOL_VERSION, RuntimeInfoRequest, encode_message,
    };
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixListener;

    let dir = TempDir::new().unwrap();
    let socket = dir.path().join("host.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let mut runtime = tokio::process::Command::new(crate::support::BIN)
        .args(["example-runtime", "echo", "--version", "1.0.0"])
        .env_clear()
        .env("RUST_LOG", "info")
        .env("STEWARD_HOST", &socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (mut host, _) = tokio::time::timeout(DEADLINE, listener.accept())
        .await
        .expect("the runtime connects")
        .unwrap();
    let handshake = encode_message(&Message {
        id: 1,
        kind: Kind::Request,
        body: Body::RuntimeInfoRequest(RuntimeInfoRequest {
            runtime_id: "echo".to_owned(),
            protocol_version: PROTOCOL_VERSION,
            expected_version: "1.0.0".to_owned(),
        }),
    })
    .unwrap();
    let length = u32::try_from(handshake.len()).unwrap().to_be_bytes();
    host.write_all(&length).await.unwrap();
    host.write_all(&handshake).await.unwrap();
    // The answer has arrived (and stays unread).
    tokio::time::timeout(DEADLINE, host.readable())
        .await
        .expect("the runtime answers the handshake")
        .unwrap();
    // The host dies: its end of the stderr pipe closes, and its socket is
    // closed with unread data, which resets the runtime's side.
    drop(runtime.stderr.take());
    drop(host);

    let status = tokio::time::timeout(DEADLINE, runtime.wait())
        .await
        .unwrap_or_else(|_| panic!("the runtime outlived its host by {DEADLINE:?}"))
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
}

/// A runtime stopped with SIGSTOP answers nothing, not even pings: with
/// `[runtime.liveness]` the agent finds it hung, kills it, restarts it and
/// says so (before, it stayed `running` and every call waited for its call
/// timeout, forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_runtime_is_found_by_its_pings_killed_and_restarted() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("steward.toml");
    let text = crate::support::config_toml(&[crate::support::TestRuntime {
        id: "echo",
        active: "1.0.0",
        versions: &["1.0.0"],
    }])
    .replacen(
        "\n[runtime.restart]",
        "\ncall-timeout = \"30s\"\n[runtime.liveness]\ninterval = \"100ms\"\ntimeout = \"200ms\"\nfailures = 3\n[runtime.restart]",
        1,
    );
    crate::support::write_atomically(&config, &text);
    let agent = Agent::start(Options::with_config(&dir.path().join("data"), &config)).await;
    agent.wait_running(&["echo"]).await;
    let api = &agent.api;
    let pid = agent.runtime_pid("echo");
    let mut events = api.events("/v1/events?runtime=echo").await;
    send_signal(pid, Signal::SIGSTOP);
    // A call in flight fails saying why, long before its 30 s timeout.
    let started = std::time::Instant::now();
    let (status, body) = api
        .call("echo", "echo", json!("hello"))
        .await
        .expect_err("a hung runtime cannot answer");
    assert!(status.is_server_error(), "{status}: {body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the call waited {:?}",
        started.elapsed()
    );
    let seen = events
        .until(DEADLINE, |event| event["kind"] == "started")
        .await;
    let stopped = seen
        .iter()
        .find(|event| event["kind"] == "stopped")
        .unwrap_or_else(|| panic!("no `stopped` before `started`: {seen:#?}"));
    let message = stopped["message"].as_str().unwrap_or_default();
    assert!(message.contains("hung"), "{stopped}");
    let detail = agent.wait_active("echo", "1.0.0").await;
    assert_eq!(detail["restarts"], 1, "{detail}");
    assert!(
        detail["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("hung")),
        "{detail}"
    );
    wait_gone(&[pid], DEADLINE).await;
    assert_ne!(agent.runtime_pid("echo"), pid);
    assert_eq!(
        api.call_ok("echo", "echo", json!("again")).await,
        json!("again")
    );
}

/// The second line behind runtimes that exit with their agent: an agent
/// that starts kills what an agent of the same data dir left running with
/// one of its sockets (here a stand-in, `sleep` with a runtime's
/// variable), with its process group, and removes its leftover socket
/// dirs; processes of other data dirs are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_cleans_up_what_an_agent_of_its_data_dir_left_behind() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let dir = TempDir::new().unwrap();
    let mut agent = Agent::demo(dir.path()).await;
    let environ = std::fs::read(format!("/proc/{}/environ", agent.runtime_pid("echo"))).unwrap();
    let host = environ
        .split(|byte| *byte == 0)
        .find_map(|variable| variable.strip_prefix(b"STEWARD_HOST="))
        .map(|value| std::path::PathBuf::from(String::from_utf8(value.to_vec()).unwrap()))
        .expect("a runtime has STEWARD_HOST");
    // <run dir>/steward-XXXXXX/host.sock
    let run_dir = host.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        run_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("steward-run-"),
        "{}",
        run_dir.display()
    );
    agent.stop_with(Signal::SIGKILL, DEADLINE).await;
    drop(agent);

    std::fs::create_dir_all(run_dir.join("steward-stale1")).unwrap();
    let sleeper = |socket: std::path::PathBuf| {
        Command::new("sleep")
            .arg("300")
            .env("STEWARD_HOST", socket)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let mut leftover = sleeper(run_dir.join("steward-stale1/host.sock"));
    let mut unrelated = sleeper(dir.path().join("not-an-agent/host.sock"));

    let agent = Agent::demo(dir.path()).await;
    let status = tokio::task::spawn_blocking(move || leftover.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the leftover was killed"
    );
    assert!(!run_dir.join("steward-stale1").exists());
    assert!(
        agent.stderr.text().contains("stopped without cleaning up"),
        "the agent says what it cleaned up"
    );
    assert_eq!(unrelated.try_wait().unwrap(), None);
    unrelated.kill().unwrap();
    unrelated.wait().unwrap();
    // The new agent's own runtimes run in the same directory.
    agent.wait_running(&["echo", "kv"]).await;
}
