//! A whole hook run the way the agent drives one: one tool server, a
//! context per run, the environment from the registration, the tools
//! directory first on PATH, the runner (under the leader), and the changes
//! committed only if the hook succeeded (juju's
//! `TestRunHookRelationFlushing`, for unit state).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

mod support;

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use steward_hooks::runner::{
    HookOutcome, HookReport, HookSpec, LeaderCommand, OutputStream, run_hook,
};
use steward_hooks::test_util::{LogRecord, MemoryBackend};
use steward_hooks::tool::{ServerOptions, ToolServer, create_tools_dir};
use steward_hooks::{HookContext, HookInfo, LogLevel, UnitInfo, WorkloadState, WorkloadStatus};
use support::write_hook;

const BIN: &str = env!("CARGO_BIN_EXE_steward-hooks-test");

struct Agent {
    server: ToolServer,
    backend: MemoryBackend,
    tools: tempfile::TempDir,
    _sockets: tempfile::TempDir,
}

impl Agent {
    async fn start() -> Self {
        let sockets = tempfile::tempdir().unwrap();
        let server = ToolServer::builtin(ServerOptions {
            parent_dir: Some(sockets.path().to_path_buf()),
            ..ServerOptions::default()
        })
        .await
        .unwrap();
        let tools = tempfile::tempdir().unwrap();
        create_tools_dir(tools.path(), Path::new(BIN)).unwrap();
        let backend = MemoryBackend::new()
            .with_state([("counter", "1")])
            .with_runtime(|method, args| Ok(json!({"called": method, "with": args})));
        Self {
            server,
            backend,
            tools,
            _sockets: sockets,
        }
    }

    /// Runs `hook` from `hooks`, committing its changes if it succeeded.
    async fn run(&self, hooks: &Path, hook: &str) -> (HookReport, Vec<(OutputStream, String)>) {
        let unit = UnitInfo {
            runtime: "kv".into(),
            unit: "kv/agent-1".into(),
            version: "2.0".into(),
        };
        let settings = json!({"title": "My Title", "port": 8080});
        let context = HookContext::new(
            unit,
            HookInfo::unit(hook.parse().unwrap()),
            None,
            Arc::new(self.backend.clone()),
        )
        .unwrap()
        .with_settings(settings.as_object().unwrap().clone());
        let registration = self.server.register(context);

        let mut spec = HookSpec::new(hooks, hook, hooks, Duration::from_secs(60));
        let path: OsString = format!("{}:/usr/bin:/bin", self.tools.path().display()).into();
        spec.env = vec![("PATH".into(), path), ("STEWARD_HOOK".into(), hook.into())];
        spec.env.extend(
            registration
                .env()
                .into_iter()
                .map(|(name, value)| (name.into(), value.into())),
        );
        spec.leader = Some(LeaderCommand {
            program: BIN.into(),
            args: vec!["hook-leader".into()],
        });
        let mut lines = Vec::new();
        let report = run_hook(&spec, &Default::default(), |line| {
            lines.push((line.stream, line.line))
        })
        .await;

        let changes = registration.finish().await.finish();
        if report.succeeded() {
            self.backend.commit(&changes);
        }
        (report, lines)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_uses_the_tools_and_its_changes_are_committed_on_success() {
    let agent = Agent::start().await;
    let hooks = tempfile::tempdir().unwrap();
    write_hook(
        hooks.path(),
        "config-changed",
        "set -e\n\
         echo \"title=$(config-get title)\"\n\
         echo \"port=$(config-get --format json port)\"\n\
         echo \"unit=$(unit-get name)\"\n\
         echo \"counter=$(state-get counter)\"\n\
         state-set counter=2 seen=yes\n\
         echo \"after=$(state-get counter)\"\n\
         status-set active \"serving on 8080\"\n\
         juju-log -l WARNING careful now\n\
         echo \"call=$(runtime-call ping '{\"n\": 1}')\"\n\
         config-get --nonsense || echo \"usage error: $?\"",
    );
    let (report, lines) = agent.run(hooks.path(), "config-changed").await;
    assert_eq!(report.outcome, HookOutcome::Exited(0), "{lines:?}");
    let stdout: Vec<&str> = lines
        .iter()
        .filter(|(stream, _)| *stream == OutputStream::Stdout)
        .map(|(_, line)| line.as_str())
        .collect();
    assert_eq!(
        stdout,
        [
            "title=My Title",
            "port=8080",
            "unit=kv/agent-1",
            "counter=1",
            "after=2",
            r#"call={"called":"ping","with":{"n":1}}"#,
            "usage error: 2",
        ]
    );
    let stderr: Vec<&str> = lines
        .iter()
        .filter(|(stream, _)| *stream == OutputStream::Stderr)
        .map(|(_, line)| line.as_str())
        .collect();
    assert_eq!(stderr, ["error: flag provided but not defined: --nonsense"]);

    let state = agent.backend.unit_state_now();
    assert_eq!(
        (state["counter"].as_str(), state["seen"].as_str()),
        ("2", "yes")
    );
    assert_eq!(
        agent.backend.status_now(),
        WorkloadStatus::new(WorkloadState::Active, "serving on 8080")
    );
    assert_eq!(
        agent.backend.logs(),
        [LogRecord {
            level: LogLevel::Warning,
            hook: "config-changed".into(),
            message: "careful now".into(),
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_hook_commits_nothing_but_its_status_stays() {
    let agent = Agent::start().await;
    let hooks = tempfile::tempdir().unwrap();
    write_hook(
        hooks.path(),
        "install",
        "state-set counter=99 junk=1\nstatus-set blocked \"need a relation\"\nexit 123",
    );
    let (report, _) = agent.run(hooks.path(), "install").await;
    assert_eq!(report.outcome, HookOutcome::Exited(123));
    assert_eq!(
        report.to_string(),
        "hook \"install\" failed: exit status 123"
    );
    let state = agent.backend.unit_state_now();
    assert_eq!(state.len(), 1);
    assert_eq!(state["counter"], "1");
    // status-set is not buffered: the operator sees what the hook said.
    assert_eq!(agent.backend.status_now().status, WorkloadState::Blocked);

    // The same changes from a working hook are kept.
    write_hook(hooks.path(), "start", "state-set counter=99 junk=1");
    let (report, _) = agent.run(hooks.path(), "start").await;
    assert!(report.succeeded());
    assert_eq!(agent.backend.unit_state_now()["counter"], "99");
}
