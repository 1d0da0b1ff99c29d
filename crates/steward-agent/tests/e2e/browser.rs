//! The web UI in a real headless Chromium: starts two demo agents (one
//! with a token), one whose runtime has a failing hook, one whose runtimes
//! are related (with a config the script edits), and two demo agents in a
//! fleet on a real etcd, and runs `tests/browser/ui.test.mjs`, a Node
//! script that drives Chromium with playwright-core (and `sse.test.mjs`,
//! the unit tests of the page's event-stream parser). Screenshots land in
//! `<target>/browser-artifacts/`.
//!
//! What it needs beyond cargo (Chromium, Node.js, playwright-core) is
//! installed by `scripts/browser-deps`, and etcd by `scripts/etcd-deps`;
//! without them this test fails and says so, it never passes without
//! having run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use steward_etcd::testing::EtcdServer;
use tempfile::TempDir;

use crate::support::{Agent, Options, demo_relations_config};

/// The browser tests' own directory (package.json, the script).
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where screenshots go: beside the test binaries, under the target dir.
fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(
            || PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
            Path::to_path_buf,
        )
        .join("browser-artifacts")
}

const INSTALL: &str = "run ./scripts/browser-deps from the repository root (it installs Debian's chromium, \
     Node.js if missing, and the pinned playwright-core)";

/// The Chromium to drive: `STEWARD_CHROMIUM`, else `chromium` on `PATH`.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("STEWARD_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "STEWARD_CHROMIUM is {}, which does not exist: {INSTALL}, and unset STEWARD_CHROMIUM",
            path.display()
        );
        return path;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("the browser tests need Chromium, which is not installed: {INSTALL}")
        })
}

/// Checks Node.js and playwright-core, with a message saying how to get
/// them.
fn check_node_deps() {
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(output) if output.status.success() => {}
        _ => panic!("the browser tests need Node.js (`node`), which is not installed: {INSTALL}"),
    }
    let installed = browser_dir().join("node_modules/playwright-core/package.json");
    let lock = std::fs::read_to_string(browser_dir().join("package-lock.json"))
        .expect("tests/browser/package-lock.json is part of the repository");
    let lock: serde_json::Value = serde_json::from_str(&lock).expect("package-lock.json is JSON");
    let wanted = lock["packages"]["node_modules/playwright-core"]["version"].clone();
    let have = std::fs::read_to_string(&installed)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .map(|package| package["version"].clone());
    if have.as_ref() != Some(&wanted) {
        panic!(
            "the browser tests need playwright-core {wanted} in {} (found {}): {INSTALL}",
            installed.parent().unwrap().display(),
            have.map_or_else(|| "none".to_owned(), |have| have.to_string())
        );
    }
}

/// A config hosting `echo` with hooks in `dir/hooks`: `install` and
/// `start` set a workload status, `config-changed` always fails (so the
/// page has a hook in error to show and to skip).
fn hooks_config(dir: &Path) -> PathBuf {
    let hooks = dir.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    for (hook, body) in [
        ("install", "status-set active installed"),
        ("config-changed", "echo 'no config for you' >&2; exit 1"),
        ("start", "status-set active ready"),
    ] {
        let path = hooks.join(hook);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let command = serde_json::to_string(crate::support::BIN).unwrap();
    let mut text = format!(
        "[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\"\nhooks = {}\n",
        serde_json::to_string(&hooks).unwrap()
    );
    for version in ["1.0.0", "2.0.0"] {
        text.push_str(&format!(
            "\n[[runtime.version]]\nversion = \"{version}\"\ncommand = {command}\nargs = [\"example-runtime\", \"echo\", \"--version\", \"{version}\"]\n"
        ));
    }
    let config = dir.join("steward.toml");
    std::fs::write(&config, text).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_headless_chromium() {
    let chromium = chromium();
    check_node_deps();

    let dir = TempDir::new().unwrap();
    let open = Agent::start(Options::demo(&dir.path().join("open"))).await;
    let token = "ui-test-token-0f3a";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let protected = Agent::start(Options {
        token_file: Some(token_file),
        ..Options::demo(&dir.path().join("protected"))
    })
    .await;
    let charm = dir.path().join("charm");
    let hooked = Agent::start(Options {
        name: Some("ui".to_owned()),
        ..Options::with_config(&dir.path().join("hooked"), &hooks_config(&charm))
    })
    .await;
    let relations_dir = dir.path().join("relations");
    std::fs::create_dir_all(&relations_dir).unwrap();
    let relations_file = relations_dir.join("steward.toml");
    std::fs::write(&relations_file, demo_relations_config(true)).unwrap();
    // The script moves this over the config (atomically) to remove the
    // relation while the page is open.
    let unrelated_file = relations_dir.join("unrelated.toml");
    std::fs::write(&unrelated_file, demo_relations_config(false)).unwrap();
    let related = Agent::start(Options {
        name: Some("ui".to_owned()),
        ..Options::with_config(&dir.path().join("related"), &relations_file)
    })
    .await;

    // Two demo agents in one fleet, on an etcd of their own (the script
    // freezes it to see the page's disconnection banner).
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap_or_else(|error| panic!("cannot start etcd for the fleet page's test: {error}"));
    let mut fleet = Vec::new();
    for name in ["ui-a", "ui-b"] {
        fleet.push(
            Agent::start(Options {
                name: Some(name.to_owned()),
                fleet: Some(etcd.endpoint()),
                ..Options::demo(&dir.path().join(name))
            })
            .await,
        );
    }
    open.wait_running(&["echo", "kv"]).await;
    protected.wait_running(&["echo", "kv"]).await;
    hooked.wait_running(&["echo"]).await;
    related.wait_running(&["echo", "kv"]).await;
    for agent in &fleet {
        agent.wait_running(&["echo", "kv"]).await;
    }
    let etcd_pid = etcd.pid().expect("etcd runs").to_string();

    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).unwrap();
    let log_path = artifacts.join("node-output.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = Command::new("node");
    command
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg("--test-timeout=120000")
        .arg("sse.test.mjs")
        .arg("ui.test.mjs")
        .current_dir(browser_dir())
        .env("STEWARD_URL", &open.url)
        .env("STEWARD_TOKEN_URL", &protected.url)
        .env("STEWARD_TOKEN", token)
        .env("STEWARD_HOOKS_URL", &hooked.url)
        .env("STEWARD_RELATIONS_URL", &related.url)
        .env("STEWARD_RELATIONS_CONFIG", &relations_file)
        .env("STEWARD_RELATIONS_UNRELATED", &unrelated_file)
        .env("STEWARD_FLEET_URL", &fleet[0].url)
        .env("STEWARD_ETCD_PID", &etcd_pid)
        .env("STEWARD_CHROMIUM", &chromium)
        .env("STEWARD_ARTIFACTS", &artifacts)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("cannot start node");
        // The script bounds each of its waits; this bounds the whole run.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(status) = child.try_wait().expect("cannot wait for node") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    // The script resumes etcd after freezing it, but not if it died between.
    etcd.resume();
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!(
        "{output}\nbrowser tests took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        artifacts.display()
    );
    match status {
        Some(status) => assert!(
            status.success(),
            "the browser tests failed ({status}):\n{output}\nscreenshots and this output are in {}",
            artifacts.display()
        ),
        None => panic!("the browser tests did not finish within 300 s:\n{output}"),
    }
}
