//! End-to-end tests of lifecycle hooks: the real binary with real shell
//! hooks in a temporary charm directory. The order of hooks on a first run
//! and on a restart, settings edits, switches, failures (retried with
//! backoff, resolved), timeouts, buffered state, a hook written for juju's
//! tools, and crashes of the agent during a hook and at each step of one.
//! Calls to the runtime keep working all along.
//!
//! Every hook appends a line to a log file in the charm dir; the tests wait
//! for lines there (and for the API's hook state), never for time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{Agent, DEADLINE, Options, eventually, is_gone, wait_gone};

/// A charm directory: `hooks/` and the log every hook appends to.
struct Charm {
    root: TempDir,
}

impl Charm {
    fn new() -> Self {
        let root = TempDir::new().unwrap();
        std::fs::create_dir(root.path().join("hooks")).unwrap();
        Self { root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn hooks(&self) -> PathBuf {
        self.path("hooks")
    }

    /// Writes hook `name`: a shell script that first logs
    /// `<hook> <version> <previous version>`, then runs `body`.
    fn hook(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let log = self.path("log");
        let script = format!(
            "#!/bin/sh\necho \"$STEWARD_HOOK $STEWARD_VERSION $STEWARD_PREVIOUS_VERSION\" >> {log:?}\n{body}\n",
            log = log.display().to_string()
        );
        let path = self.hooks().join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Writes every unit hook with just the logging line.
    fn plain_hooks(&self) {
        for hook in ["install", "config-changed", "start", "upgrade", "stop"] {
            self.hook(hook, "");
        }
    }

    /// The log's lines, trimmed.
    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("log"))
            .unwrap_or_default()
            .lines()
            .map(|line| line.trim_end().to_owned())
            .collect()
    }

    /// Waits until the log has `count` lines; returns them.
    async fn wait_log(&self, count: usize) -> Vec<String> {
        eventually(
            &format!("{count} lines in the hook log"),
            DEADLINE,
            || async move {
                let log = self.log();
                (log.len() >= count).then_some(log)
            },
        )
        .await
    }

    /// A config hosting `echo` (1.0.0 and 2.0.0) with these hooks; `extra`
    /// goes into the runtime's table (before its settings).
    fn config(&self, extra: &str, settings: &str) -> String {
        let command = serde_json::to_string(crate::support::BIN).unwrap();
        let hooks = serde_json::to_string(&self.hooks()).unwrap();
        let mut text = format!(
            "[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\"\nhooks = {hooks}\n{extra}\n[runtime.restart]\ninitial = \"100ms\"\nmax = \"1s\"\n[runtime.settings]\n{settings}\n"
        );
        for version in ["1.0.0", "2.0.0"] {
            text.push_str(&format!(
                "\n[[runtime.version]]\nversion = \"{version}\"\ncommand = {command}\nargs = [\"example-runtime\", \"echo\", \"--version\", \"{version}\"]\n"
            ));
        }
        text
    }

    /// Writes `text` as `steward.toml` in the charm's root; returns it.
    fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path("steward.toml");
        crate::support::write_atomically(&path, text);
        path
    }
}

/// The options of an agent named `a1` on `config` with its data in `data`.
fn options(data: &Path, config: &Path) -> Options {
    Options {
        name: Some("a1".to_owned()),
        ..Options::with_config(data, config)
    }
}

/// Waits until runtime `id`'s hooks are in `state` (`idle`, `running`,
/// `error`); returns its detail.
async fn wait_hooks(agent: &Agent, id: &str, state: &str) -> Value {
    let what = format!("the hooks of {id} {state}");
    eventually(&what, DEADLINE, || async move {
        let (status, detail) = agent.api.get(&format!("/v1/runtimes/{id}")).await;
        (status == StatusCode::OK && detail["hooks"]["state"] == state).then_some(detail)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_installs_configures_and_starts_and_a_restart_only_configures() {
    let charm = Charm::new();
    charm.plain_hooks();
    charm.hook(
        "start",
        "status-set active \"serving $STEWARD_UNIT\"\njuju-log started",
    );
    let config = charm.write_config(&charm.config("", "port = 8080"));
    let data = TempDir::new().unwrap();
    let mut agent = Agent::start(options(data.path(), &config)).await;
    agent.wait_active("echo", "1.0.0").await;
    assert_eq!(
        charm.wait_log(3).await,
        ["install 1.0.0", "config-changed 1.0.0", "start 1.0.0"]
    );
    let detail = wait_hooks(&agent, "echo", "idle").await;
    assert_eq!(
        detail["workload"],
        json!({"status": "active", "message": "serving echo/a1"})
    );
    assert_eq!(detail["hooks"]["installed"], true);
    assert_eq!(detail["hooks"]["last"]["hook"], "start");
    assert_eq!(detail["hooks"]["last"]["succeeded"], true);
    assert_eq!(detail["hooks"]["last"]["exit_code"], 0);
    assert!(
        agent.stderr.text().contains("started"),
        "juju-log went to the log"
    );
    assert_eq!(agent.api.call_ok("echo", "echo", json!(1)).await, json!(1));
    let status = agent.cli(&["status"]).await;
    let table = status.success();
    assert!(table.contains("WORKLOAD"), "{table}");
    assert!(table.contains("active: serving echo/a1  idle"), "{table}");

    agent.stop_with(Signal::SIGTERM, DEADLINE).await;
    let agent = Agent::start(options(data.path(), &config)).await;
    agent.wait_active("echo", "1.0.0").await;
    assert_eq!(charm.wait_log(4).await[3], "config-changed 1.0.0");
    wait_hooks(&agent, "echo", "idle").await;
    assert_eq!(
        charm.log().len(),
        4,
        "nothing but config-changed on a restart"
    );
    // The workload status survived the restart.
    assert_eq!(
        agent.api.detail("echo").await["workload"]["message"],
        "serving echo/a1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_edit_runs_config_changed_and_a_switch_runs_upgrade() {
    let charm = Charm::new();
    charm.plain_hooks();
    let port = charm.path("port");
    charm.hook(
        "config-changed",
        &format!("config-get port > {:?}", port.display().to_string()),
    );
    let config = charm.write_config(&charm.config("", "port = 8080"));
    let data = TempDir::new().unwrap();
    let agent = Agent::start(options(data.path(), &config)).await;
    agent.wait_active("echo", "1.0.0").await;
    charm.wait_log(3).await;
    wait_hooks(&agent, "echo", "idle").await;
    assert_eq!(std::fs::read_to_string(&port).unwrap(), "8080\n");
    let pid = agent.runtime_pid("echo");

    charm.write_config(&charm.config("", "port = 9090"));
    assert_eq!(charm.wait_log(4).await[3], "config-changed 1.0.0");
    wait_hooks(&agent, "echo", "idle").await;
    assert_eq!(std::fs::read_to_string(&port).unwrap(), "9090\n");
    assert_eq!(
        agent.runtime_pid("echo"),
        pid,
        "a settings edit restarts nothing"
    );

    let (status, body) = agent.api.set_version("echo", "2.0.0").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(charm.wait_log(5).await[4], "upgrade 2.0.0 1.0.0");
    wait_hooks(&agent, "echo", "idle").await;
    assert_eq!(
        agent.api.call_ok("echo", "version", Value::Null).await,
        "2.0.0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_hook_is_retried_with_backoff_and_can_be_resolved() {
    let charm = Charm::new();
    charm.plain_hooks();
    let flag = charm.path("fail");
    std::fs::write(&flag, "").unwrap();
    charm.hook(
        "config-changed",
        &format!("[ -e {:?} ] && exit 3\nexit 0", flag.display().to_string()),
    );
    let extra =
        "on-hook-failure = \"retry\"\n[runtime.hook-retry]\ninitial = \"100ms\"\nmax = \"200ms\"";
    let config = charm.write_config(&charm.config(extra, ""));
    let data = TempDir::new().unwrap();
    let agent = Agent::start(options(data.path(), &config)).await;
    // install succeeded, so the runtime serves while config-changed fails.
    agent.wait_active("echo", "1.0.0").await;
    let detail = wait_hooks(&agent, "echo", "error").await;
    assert_eq!(detail["hooks"]["hook"], "config-changed");
    assert_eq!(
        detail["hooks"]["message"],
        "hook \"config-changed\" failed: exit status 3"
    );
    // Retried with backoff: more attempts come by themselves.
    charm.wait_log(4).await;
    assert!(
        charm.log()[1..]
            .iter()
            .all(|line| line == "config-changed 1.0.0"),
        "{:?}",
        charm.log()
    );
    assert!(
        !charm.log().contains(&"start 1.0.0".to_owned()),
        "later hooks wait"
    );
    assert_eq!(agent.api.call_ok("echo", "echo", json!("up")).await, "up");
    let table = agent.cli(&["status"]).await;
    assert!(
        table
            .success()
            .contains("error: hook \"config-changed\" failed: exit status 3"),
        "{}",
        table.success()
    );

    let skipped = agent.cli(&["resolve", "echo", "--skip"]).await;
    assert_eq!(
        skipped.success().trim(),
        "echo: hook \"config-changed\" marked done without running it"
    );
    // Then the hooks go on: start runs.
    eventually("start to run", DEADLINE, || async {
        charm
            .log()
            .contains(&"start 1.0.0".to_owned())
            .then_some(())
    })
    .await;
    wait_hooks(&agent, "echo", "idle").await;
    let nothing = agent.cli(&["resolve", "echo"]).await;
    assert!(
        nothing
            .one_line_error(1)
            .contains("no hook of runtime echo is in error"),
        "{nothing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_hook_waits_for_resolve_retry_and_its_state_commits_only_on_success() {
    let charm = Charm::new();
    charm.plain_hooks();
    let flag = charm.path("fail");
    std::fs::write(&flag, "").unwrap();
    let seen = charm.path("seen");
    charm.hook(
        "config-changed",
        &format!(
            "echo \"[$(state-get attempt)]\" >> {seen:?}\nstate-set attempt=$STEWARD_HOOK\n[ -e {flag:?} ] && exit 1\nexit 0",
            seen = seen.display().to_string(),
            flag = flag.display().to_string()
        ),
    );
    let config = charm.write_config(&charm.config("on-hook-failure = \"block\"", ""));
    let data = TempDir::new().unwrap();
    let agent = Agent::start(options(data.path(), &config)).await;
    wait_hooks(&agent, "echo", "error").await;
    assert_eq!(
        charm.log().len(),
        2,
        "a blocked hook is not retried by itself"
    );

    std::fs::remove_file(&flag).unwrap();
    let retried = agent.cli(&["resolve", "echo", "--retry"]).await;
    assert_eq!(
        retried.success().trim(),
        "echo: running hook \"config-changed\" again"
    );
    charm.wait_log(4).await; // config-changed again, then start
    wait_hooks(&agent, "echo", "idle").await;
    // The failed run's state-set left no trace; the succeeding one did.
    let seen_lines = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(seen_lines, "[]\n[]\n");
    let edited = charm.config("on-hook-failure = \"block\"", "x = 1");
    charm.write_config(&edited);
    charm.wait_log(5).await;
    wait_hooks(&agent, "echo", "idle").await;
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "[]\n[]\n[config-changed]\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_past_its_timeout_is_killed_with_its_children() {
    let charm = Charm::new();
    charm.plain_hooks();
    let pids = charm.path("pids");
    charm.hook(
        "install",
        &format!(
            "sleep 300 &\necho $! >> {pids:?}\necho $$ >> {pids:?}\nwait",
            pids = pids.display().to_string()
        ),
    );
    let config =
        charm.write_config(&charm.config("hook-timeout = \"1s\"\non-hook-failure = \"block\"", ""));
    let data = TempDir::new().unwrap();
    let agent = Agent::start(options(data.path(), &config)).await;
    let detail = wait_hooks(&agent, "echo", "error").await;
    let message = detail["hooks"]["message"].as_str().unwrap();
    assert!(message.contains("timed out after 1s"), "{message}");
    assert_eq!(detail["state"], "installing", "no start before install");
    let (status, body) = agent
        .api
        .call("echo", "echo", json!(1))
        .await
        .expect_err("no calls before install");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("install hook"),
        "{body}"
    );
    let pids: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|pid| pid.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    wait_gone(&pids, DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_written_for_juju_runs_unchanged() {
    let charm = Charm::new();
    charm.plain_hooks();
    let out = charm.path("out");
    // Bash, juju's variable names and tools, and their JSON output.
    charm.hook(
        "config-changed",
        &format!(
            "exec /bin/bash -c 'set -eu\n\
             port=$(config-get --format=json port)\n\
             title=$(config-get title)\n\
             juju-log -l WARNING \"unit $JUJU_UNIT_NAME hook $JUJU_HOOK_NAME in $CHARM_DIR\"\n\
             status-set maintenance \"configuring $title\"\n\
             echo \"$port $title $(config-get --format=json)\" > {out:?}'",
            out = out.display().to_string()
        ),
    );
    let config = charm.write_config(&charm.config("", "port = 8080\ntitle = \"hello\""));
    let data = TempDir::new().unwrap();
    let agent = Agent::start(options(data.path(), &config)).await;
    charm.wait_log(3).await;
    let detail = wait_hooks(&agent, "echo", "idle").await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "8080 hello {\"port\":8080,\"title\":\"hello\"}\n"
    );
    assert_eq!(detail["workload"]["status"], "maintenance");
    let logs = agent
        .wait_stderr(&format!(
            "unit echo/a1 hook config-changed in {}",
            charm.root.path().display()
        ))
        .await;
    assert!(logs.contains("WARN"), "juju-log -l WARNING logs a warning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_a_hook_leaves_no_hook_process_and_the_hook_failed() {
    let charm = Charm::new();
    charm.plain_hooks();
    let pids = charm.path("pids");
    let hang = charm.path("hang");
    std::fs::write(&hang, "").unwrap();
    charm.hook(
        "install",
        &format!(
            "if [ -e {hang:?} ]; then sleep 300 & echo $! >> {pids:?}; echo $$ >> {pids:?}; wait; fi",
            hang = hang.display().to_string(),
            pids = pids.display().to_string()
        ),
    );
    let config = charm.write_config(&charm.config("on-hook-failure = \"block\"", ""));
    let data = TempDir::new().unwrap();
    let mut agent = Agent::start(options(data.path(), &config)).await;
    let pids_text = eventually("the hook's processes", DEADLINE, || async {
        let text = std::fs::read_to_string(&pids).unwrap_or_default();
        (text.lines().count() == 2).then_some(text)
    })
    .await;
    let pids: Vec<u32> = pids_text.lines().map(|pid| pid.parse().unwrap()).collect();
    agent.stop_with(Signal::SIGKILL, DEADLINE).await;
    // The hook and its child die with the agent, by themselves.
    wait_gone(&pids, Duration::from_secs(3)).await;
    assert!(pids.iter().all(|&pid| is_gone(pid)));

    std::fs::remove_file(&hang).unwrap();
    let agent = Agent::start(options(data.path(), &config)).await;
    let detail = wait_hooks(&agent, "echo", "error").await;
    assert_eq!(detail["hooks"]["hook"], "install");
    assert!(
        detail["hooks"]["message"]
            .as_str()
            .unwrap()
            .contains("the agent stopped while the hook ran"),
        "{detail}"
    );
    agent.cli(&["resolve", "echo"]).await.success();
    agent.wait_active("echo", "1.0.0").await;
    let log = charm.wait_log(4).await;
    assert_eq!(
        log,
        [
            "install 1.0.0",
            "install 1.0.0",
            "config-changed 1.0.0",
            "start 1.0.0"
        ]
    );
}

/// A crash right after a step of a hook's operation was written (a crash
/// point of the `failpoints` build): after `pending` (before its process
/// started) the hook counts as failed and, with retry, runs again; after
/// `done` it is committed at the next start, and after the commit nothing
/// is left to do; in no case does it run twice or lose its state-set.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_each_step_of_a_hook_is_recovered_exactly() {
    for (point, failed_first) in [
        ("hook-pending", true),
        ("hook-done", false),
        ("hook-committed", false),
    ] {
        let charm = Charm::new();
        charm.plain_hooks();
        charm.hook("install", "state-set installed=yes");
        charm.hook(
            "start",
            &format!(
                "state-get installed > {:?}",
                charm.path("state").display().to_string()
            ),
        );
        let extra = "[runtime.hook-retry]\ninitial = \"100ms\"\nmax = \"200ms\"";
        let config = charm.write_config(&charm.config(extra, ""));
        let data = TempDir::new().unwrap();
        // Not `Agent::start`: the crash may come before the banner.
        let crashed = Options {
            env: vec![("STEWARD_FAILPOINT".to_owned(), format!("{point}:install"))],
            ..options(data.path(), &config)
        }
        .run_to_exit("the agent aborts at its crash point")
        .await;
        assert!(
            !crashed.status.success(),
            "{point}: the agent aborted ({})",
            crashed.status
        );

        let agent = Agent::start(options(data.path(), &config)).await;
        agent.wait_active("echo", "1.0.0").await;
        wait_hooks(&agent, "echo", "idle").await;
        let log = charm.wait_log(3).await;
        let ran_install = log.iter().filter(|line| *line == "install 1.0.0").count();
        assert_eq!(ran_install, 1, "{point}: install ran exactly once: {log:?}");
        assert_eq!(
            agent.stderr.text().contains("it counts as failed"),
            failed_first,
            "{point}: a pending hook, and only a pending one, counts as failed"
        );
        assert_eq!(
            std::fs::read_to_string(charm.path("state")).unwrap(),
            "yes\n",
            "{point}: install's state-set is committed exactly once"
        );
    }
}
