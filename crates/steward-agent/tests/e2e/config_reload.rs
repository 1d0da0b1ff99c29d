//! End-to-end tests of config files: live reload of a watched `--config`
//! (runtimes and versions added and removed, invalid edits ignored), and
//! `steward config check|demo` and `steward run` with an invalid file.

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    Agent, DEADLINE, Options, TestRuntime, cli_str, config_toml, eventually, runtime_ids,
    wait_gone, write_atomically,
};

const ECHO: TestRuntime<'static> = TestRuntime {
    id: "echo",
    active: "1.0.0",
    versions: &["1.0.0", "2.0.0"],
};

const ECHO_WITH_3: TestRuntime<'static> = TestRuntime {
    id: "echo",
    active: "1.0.0",
    versions: &["1.0.0", "2.0.0", "3.0.0"],
};

const KV: TestRuntime<'static> = TestRuntime {
    id: "kv",
    active: "1.0.0",
    versions: &["1.0.0", "1.1.0"],
};

fn ids(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|&name| name.to_owned()).collect()
}

async fn wait_ids(agent: &Agent, expected: &[&str]) -> Value {
    let expected = ids(expected);
    let what = format!("the runtimes to be exactly {expected:?}");
    eventually(&what, DEADLINE, || {
        let expected = expected.clone();
        async move {
            let list = agent.api.list().await;
            (runtime_ids(&list) == expected).then_some(list)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_edits_apply_live_and_invalid_ones_are_ignored() {
    let dir = TempDir::new().unwrap();
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).unwrap();
    let path = config_dir.join("steward.toml");
    std::fs::write(&path, config_toml(&[ECHO])).unwrap();
    let agent = Agent::start(Options::with_config(&dir.path().join("data"), &path)).await;
    agent.wait_running(&["echo"]).await;
    assert_eq!(runtime_ids(&agent.api.list().await), ids(&["echo"]));
    agent.wait_stdout("runtimes: echo\n").await;
    let echo_pid = agent.runtime_pid("echo");

    // Every edit is saved atomically (a temp file renamed over the config,
    // as most editors do); see below for in-place overwrites.
    // 1. A runtime added: it starts.
    write_atomically(&path, &config_toml(&[ECHO, KV]));
    agent.wait_running(&["echo", "kv"]).await;
    let api = &agent.api;
    assert_eq!(
        api.call_ok("kv", "put", json!({"key": "a", "value": 1}))
            .await,
        Value::Null
    );
    assert_eq!(
        api.call_ok("kv", "get", json!({"key": "a"})).await,
        json!(1)
    );
    assert_eq!(
        agent.runtime_pid("echo"),
        echo_pid,
        "adding kv restarted echo"
    );

    // 2. A version added: echo gets it without a restart, and can switch
    //    to it.
    write_atomically(&path, &config_toml(&[ECHO_WITH_3, KV]));
    let detail = eventually("echo to list version 3.0.0", DEADLINE, || async move {
        let detail = api.detail("echo").await;
        (detail["versions"] == json!(["1.0.0", "2.0.0", "3.0.0"])).then_some(detail)
    })
    .await;
    assert_eq!(detail["active_version"], "1.0.0", "{detail}");
    assert_eq!(detail["state"], "running", "{detail}");
    assert_eq!(detail["restarts"], 0, "{detail}");
    assert_eq!(
        agent.runtime_pid("echo"),
        echo_pid,
        "adding a version restarted echo"
    );
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("1.0.0")
    );
    let (status, answer) = api.set_version("echo", "3.0.0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["previous"], "1.0.0", "{answer}");
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("3.0.0")
    );
    wait_gone(&[echo_pid], DEADLINE).await;
    let echo_pid = agent.runtime_pid("echo");
    let kv_pid = agent.runtime_pid("kv");

    // 3. A syntax error: ignored (logged with file:line:column), the
    //    running config stays.
    let valid = config_toml(&[ECHO_WITH_3, KV]);
    let bad_line = valid.lines().count() + 1;
    write_atomically(&path, &format!("{valid}this is = = not toml\n"));
    // The log line names the file, the line and the column.
    let location = format!("{}:{bad_line}:6: ", path.display());
    let stderr = agent.wait_stderr(&location).await;
    assert!(stderr.contains("config edit ignored"), "{stderr}");
    assert_eq!(runtime_ids(&api.list().await), ids(&["echo", "kv"]));
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("3.0.0")
    );
    assert_eq!(
        api.call_ok("kv", "get", json!({"key": "a"})).await,
        json!(1)
    );

    // 4. A valid TOML but invalid config (an unknown key): ignored too.
    write_atomically(&path, &valid.replacen("active = ", "actve = ", 1));
    let location = format!("{}:5:1: unknown field `actve`", path.display());
    agent.wait_stderr(&location).await;
    assert_eq!(runtime_ids(&api.list().await), ids(&["echo", "kv"]));
    assert_eq!(agent.runtime_pid("echo"), echo_pid);
    assert_eq!(agent.runtime_pid("kv"), kv_pid);

    // 5. A runtime removed: it disappears and its process exits; echo
    //    stays where it was.
    write_atomically(&path, &config_toml(&[ECHO_WITH_3]));
    wait_ids(&agent, &["echo"]).await;
    wait_gone(&[kv_pid], DEADLINE).await;
    assert!(agent.runtime_pids(Some("kv")).is_empty());
    let (status, answer) = api.get("/v1/runtimes/kv").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, answer) = api
        .call("kv", "get", json!({"key": "a"}))
        .await
        .expect_err("kv is gone");
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(
        agent.runtime_pid("echo"),
        echo_pid,
        "removing kv restarted echo"
    );
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("3.0.0")
    );

    // 6. Added back: its data is still in the store.
    write_atomically(&path, &config_toml(&[ECHO_WITH_3, KV]));
    agent.wait_running(&["echo", "kv"]).await;
    assert_eq!(
        api.call_ok("kv", "get", json!({"key": "a"})).await,
        json!(1)
    );
    assert_eq!(agent.runtime_pid("echo"), echo_pid);
}

/// How many times the agent applied a changed config, from its log.
fn reloads(agent: &Agent) -> usize {
    agent
        .stderr
        .text()
        .matches("config changed: applying it")
        .count()
}

/// Starts an agent on a config holding `runtimes`, in `dir`; returns it
/// and the config's path.
async fn agent_with_config(
    dir: &Path,
    runtimes: &[TestRuntime<'_>],
) -> (Agent, std::path::PathBuf) {
    let config_dir = dir.join("config");
    std::fs::create_dir(&config_dir).unwrap();
    let path = config_dir.join("steward.toml");
    std::fs::write(&path, config_toml(runtimes)).unwrap();
    let agent = Agent::start(Options::with_config(&dir.join("data"), &path)).await;
    let ids: Vec<&str> = runtimes.iter().map(|runtime| runtime.id).collect();
    agent.wait_running(&ids).await;
    (agent, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_overwrites_are_applied() {
    // Plain overwrites (truncate, then write), as `>` in a shell does.
    // Only the end states are asserted here: the agent may catch the file
    // empty and stop every runtime for a moment (see
    // `an_in_place_save_never_stops_the_other_runtimes`).
    let dir = TempDir::new().unwrap();
    let (agent, path) = agent_with_config(dir.path(), &[ECHO]).await;
    let api = &agent.api;

    std::fs::write(&path, config_toml(&[ECHO, KV])).unwrap();
    agent.wait_running(&["echo", "kv"]).await;
    assert_eq!(
        api.call_ok("kv", "put", json!({"key": "k", "value": "v"}))
            .await,
        Value::Null
    );

    std::fs::write(&path, config_toml(&[ECHO_WITH_3, KV])).unwrap();
    eventually(
        "echo to run with version 3.0.0 listed",
        DEADLINE,
        || async move {
            // Not `detail`, which insists on a 200: echo may be gone for
            // a moment.
            let (status, detail) = api.get("/v1/runtimes/echo").await;
            (status == StatusCode::OK
                && detail["state"] == "running"
                && detail["versions"] == json!(["1.0.0", "2.0.0", "3.0.0"]))
            .then_some(())
        },
    )
    .await;
    let (status, answer) = api.set_version("echo", "3.0.0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("3.0.0")
    );

    let kv_pid = agent.runtime_pid("kv");
    std::fs::write(&path, config_toml(&[ECHO_WITH_3])).unwrap();
    wait_ids(&agent, &["echo"]).await;
    wait_gone(&[kv_pid], DEADLINE).await;
    agent.wait_active("echo", "3.0.0").await;
    assert_eq!(
        api.call_ok("echo", "version", Value::Null).await,
        json!("3.0.0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_config_is_not_reloaded() {
    let dir = TempDir::new().unwrap();
    let (agent, path) = agent_with_config(dir.path(), &[ECHO]).await;
    // Nothing edits the file: over a while, nothing is reloaded. (An
    // absence can only be observed over a window.)
    let before = reloads(&agent);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(
        reloads(&agent),
        before,
        "the agent reloaded a config nobody changed"
    );
    // Reading the file is not changing it.
    for _ in 0..3 {
        std::fs::read_to_string(&path).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(
        reloads(&agent),
        before,
        "reading the config made the agent reload it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_save_never_stops_the_other_runtimes() {
    // A slow in-place save: the file is empty for a moment (longer than
    // the watcher's debounce) before its new content lands. The agent
    // documents that a file caught half-written is skipped; an empty
    // file must not stop every runtime.
    let dir = TempDir::new().unwrap();
    let (agent, path) = agent_with_config(dir.path(), &[ECHO, KV]).await;
    let echo_pid = agent.runtime_pid("echo");
    let kv_pid = agent.runtime_pid("kv");
    let looked = |agent: &Agent| {
        let text = agent.stderr.text();
        text.matches("config changed: applying it").count()
            + text.matches("config edit ignored").count()
            + text.matches("cannot read the config").count()
    };
    let before = looked(&agent);
    let file = std::fs::File::create(&path).unwrap(); // truncates
    eventually("the agent to look at the emptied config", DEADLINE, || {
        let seen = looked(&agent) > before;
        async move { seen.then_some(()) }
    })
    .await;
    let list = agent.api.list().await;
    assert_eq!(runtime_ids(&list), ids(&["echo", "kv"]), "{list}");
    assert_eq!(agent.runtime_pids(Some("echo")), [echo_pid]);
    assert_eq!(agent.runtime_pids(Some("kv")), [kv_pid]);
    {
        use std::io::Write;
        let mut file = file;
        file.write_all(config_toml(&[ECHO_WITH_3, KV]).as_bytes())
            .unwrap();
    }
    eventually("echo to list version 3.0.0", DEADLINE, || async {
        let detail = agent.api.detail("echo").await;
        (detail["versions"] == json!(["1.0.0", "2.0.0", "3.0.0"])).then_some(())
    })
    .await;
    assert_eq!(agent.runtime_pids(Some("echo")), [echo_pid]);
    assert_eq!(agent.runtime_pids(Some("kv")), [kv_pid]);
    assert_eq!(agent.api.detail("echo").await["restarts"], 0);
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_demo_and_run_with_an_invalid_file() {
    let dir = TempDir::new().unwrap();

    let two = write(dir.path(), "two.toml", &config_toml(&[ECHO, KV]));
    let checked = cli_str(&["config", "check", &two], &[]).await;
    assert_eq!(checked.success().trim(), format!("{two}: ok (2 runtimes)"));
    assert!(checked.stderr.is_empty(), "{checked:#?}");
    let one = write(dir.path(), "one.toml", &config_toml(&[ECHO]));
    let checked = cli_str(&["config", "check", &one], &[]).await;
    assert_eq!(checked.success().trim(), format!("{one}: ok (1 runtime)"));

    // A syntax error: one line, file:line:column.
    let syntax = write(
        dir.path(),
        "syntax.toml",
        "[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\"\nthis is = = not toml\n",
    );
    let checked = cli_str(&["config", "check", &syntax], &[]).await;
    let line = checked.one_line_error(2);
    assert!(
        line.starts_with(&format!("error: {syntax}:4:6: ")),
        "{line}"
    );
    assert!(checked.stdout.is_empty(), "{checked:#?}");

    // Validation errors: every one, each with its position, in file order.
    let valid = config_toml(&[ECHO]);
    let invalid_text = valid.replacen(
        "active = \"1.0.0\"",
        "active = \"9.9.9\"\ncolour = \"blue\"",
        1,
    );
    let invalid = write(dir.path(), "invalid.toml", &invalid_text);
    let checked = cli_str(&["config", "check", &invalid], &[]).await;
    assert_eq!(checked.code, Some(2), "{checked:#?}");
    let lines: Vec<&str> = checked.stderr.lines().collect();
    assert!(!lines.is_empty(), "{checked:#?}");
    for line in &lines {
        let position = line
            .strip_prefix(&format!("error: {invalid}:"))
            .unwrap_or_else(|| panic!("not `error: FILE:…`: {line}"));
        let mut parts = position.splitn(3, ':');
        let line_number: usize = parts.next().unwrap().parse().expect("a line number");
        let column: usize = parts.next().unwrap().parse().expect("a column");
        assert!(line_number >= 1 && column >= 1, "{line}");
    }
    assert!(checked.stderr.contains("colour"), "{checked:#?}");

    // A missing file.
    let missing = dir.path().join("missing.toml").display().to_string();
    let checked = cli_str(&["config", "check", &missing], &[]).await;
    assert!(checked.one_line_error(2).contains(&missing));

    // The demo config checks fine (its command is found next to steward).
    let demo = cli_str(&["config", "demo"], &[]).await;
    let demo_text = demo.success();
    assert!(demo_text.contains("[[runtime]]"), "{demo_text}");
    let demo_path = write(dir.path(), "demo.toml", demo_text);
    let checked = cli_str(&["config", "check", &demo_path], &[]).await;
    assert_eq!(
        checked.success().trim(),
        format!("{demo_path}: ok (2 runtimes)")
    );

    // `run` with an invalid config: exit 2 at once, the same errors.
    for (file, expected) in [
        (&syntax, format!("{syntax}:4:6: ")),
        (&missing, format!("{missing}:1:1: ")),
    ] {
        let data = dir.path().join("data");
        let output = Options::with_config(&data, Path::new(file))
            .run_to_exit("`steward run` with an invalid config must exit at once")
            .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
        assert!(stderr.contains(&expected), "no {expected} in {stderr}");
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains("control API on"),
            "it must not serve"
        );
    }
}
