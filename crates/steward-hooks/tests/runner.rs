//! The hook runner: missing and non-executable hooks, exit codes and
//! signals, the exact environment and working directory, tagged output,
//! timeouts and cancellation that kill the whole process group, and hooks
//! whose background children hold the output pipes open.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

mod support;

use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_hooks::runner::{
    HookOutcome, HookReport, HookSpec, LeaderCommand, OutputLine, OutputStream, run_hook,
};
use support::{is_dead, read_pid, wait_until, write_hook};
use tokio_util::sync::CancellationToken;

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn spec(dir: &Path, hook: &str) -> HookSpec {
    let mut spec = HookSpec::new(dir, hook, dir, Duration::from_secs(60));
    spec.env = vec![("PATH".into(), PATH.into())];
    spec
}

fn leader() -> LeaderCommand {
    LeaderCommand {
        program: env!("CARGO_BIN_EXE_steward-hooks-test").into(),
        args: vec!["hook-leader".into()],
    }
}

/// Runs the hook and collects its output lines.
async fn run(spec: &HookSpec) -> (HookReport, Vec<OutputLine>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let report = run_hook(spec, &CancellationToken::new(), move |line| {
        sink.lock().unwrap().push(line)
    })
    .await;
    let lines = lines.lock().unwrap().clone();
    (report, lines)
}

fn stream(lines: &[OutputLine], stream: OutputStream) -> Vec<&str> {
    lines
        .iter()
        .filter(|line| line.stream == stream)
        .map(|line| line.line.as_str())
        .collect()
}

#[tokio::test]
async fn a_missing_hook_is_a_hook_that_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let (report, lines) = run(&spec(dir.path(), "install")).await;
    assert_eq!(report.outcome, HookOutcome::Missing);
    assert!(report.succeeded());
    assert!(lines.is_empty());
    assert_eq!(report.hook, "install");
    assert_eq!(report.path, dir.path().join("install"));
    assert_eq!(
        report.to_string(),
        "hook \"install\" is missing (nothing to run)"
    );
}

#[tokio::test]
async fn a_hook_that_cannot_be_executed_fails_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("install"), "#!/bin/sh\nexit 0\n").unwrap();
    let (report, _) = run(&spec(dir.path(), "install")).await;
    assert_eq!(report.outcome, HookOutcome::NotExecutable);
    assert!(!report.succeeded());
    assert_eq!(
        report.to_string(),
        format!(
            "hook \"install\" is not executable (chmod +x {})",
            dir.path().join("install").display()
        )
    );
    std::fs::create_dir(dir.path().join("start")).unwrap();
    let (report, _) = run(&spec(dir.path(), "start")).await;
    assert_eq!(report.outcome, HookOutcome::NotExecutable);
}

#[tokio::test]
async fn a_file_that_is_no_program_cannot_be_spawned() {
    let dir = tempfile::tempdir().unwrap();
    write_hook(dir.path(), "install", "exit 0");
    // A shebang naming an interpreter that does not exist.
    std::fs::write(dir.path().join("install"), "#!/no/such/interpreter\n").unwrap();
    let (report, _) = run(&spec(dir.path(), "install")).await;
    let HookOutcome::SpawnFailed(error) = &report.outcome else {
        panic!("{report:?}");
    };
    assert!(error.contains("No such file or directory"), "{error}");
    assert!(
        report
            .to_string()
            .starts_with("cannot run hook \"install\": ")
    );

    let mut under_missing_leader = spec(dir.path(), "install");
    under_missing_leader.leader = Some(LeaderCommand {
        program: "/no/such/steward".into(),
        args: vec![],
    });
    let (report, _) = run(&under_missing_leader).await;
    let HookOutcome::SpawnFailed(error) = &report.outcome else {
        panic!("{report:?}");
    };
    assert!(
        error.starts_with("cannot start the hook leader /no/such/steward: "),
        "{error}"
    );
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_hook(dir.path(), "ok", "exit 0");
    write_hook(dir.path(), "fails", "exit 3");
    write_hook(dir.path(), "killed", "kill -TERM $$");
    for with_leader in [false, true] {
        let mut cases = vec![
            ("ok", HookOutcome::Exited(0), "hook \"ok\" succeeded"),
            (
                "fails",
                HookOutcome::Exited(3),
                "hook \"fails\" failed: exit status 3",
            ),
            (
                "killed",
                HookOutcome::Signalled(15),
                "hook \"killed\" was killed by signal 15 (SIGTERM)",
            ),
        ];
        for (hook, outcome, message) in cases.drain(..) {
            let mut spec = spec(dir.path(), hook);
            spec.leader = with_leader.then(leader);
            let (report, _) = run(&spec).await;
            assert_eq!(report.outcome, outcome, "{hook} (leader: {with_leader})");
            assert_eq!(report.succeeded(), outcome == HookOutcome::Exited(0));
            assert_eq!(report.to_string(), message);
        }
    }
}

#[tokio::test]
async fn the_environment_is_exactly_what_was_given() {
    let dir = tempfile::tempdir().unwrap();
    // /proc/$$/environ is the environment the shell was started with,
    // before it adds anything of its own.
    write_hook(dir.path(), "install", "tr '\\0' '\\n' < /proc/$$/environ");
    for with_leader in [false, true] {
        let mut spec = spec(dir.path(), "install");
        spec.env.push(("STEWARD_HOOK".into(), "install".into()));
        spec.env.push(("WITH SPACE".into(), "a b=c".into()));
        spec.leader = with_leader.then(leader);
        let (report, lines) = run(&spec).await;
        assert_eq!(report.outcome, HookOutcome::Exited(0));
        let mut seen = stream(&lines, OutputStream::Stdout);
        seen.sort_unstable();
        assert_eq!(
            seen,
            [
                format!("PATH={PATH}").as_str(),
                "STEWARD_HOOK=install",
                "WITH SPACE=a b=c"
            ],
            "leader: {with_leader}"
        );
    }
}

#[tokio::test]
async fn the_hook_runs_in_the_given_directory() {
    let hooks = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    write_hook(hooks.path(), "start", "pwd -P");
    let mut spec = spec(hooks.path(), "start");
    spec.cwd = cwd.path().to_path_buf();
    let (report, lines) = run(&spec).await;
    assert_eq!(report.outcome, HookOutcome::Exited(0));
    let expected = cwd.path().canonicalize().unwrap();
    assert_eq!(
        stream(&lines, OutputStream::Stdout),
        [expected.to_str().unwrap()]
    );
}

#[tokio::test]
async fn output_lines_arrive_tagged_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write_hook(
        dir.path(),
        "install",
        "echo out1; echo err1 >&2; echo out2; printf 'err2 no newline' >&2",
    );
    let (report, lines) = run(&spec(dir.path(), "install")).await;
    assert_eq!(report.outcome, HookOutcome::Exited(0));
    assert_eq!(stream(&lines, OutputStream::Stdout), ["out1", "out2"]);
    assert_eq!(
        stream(&lines, OutputStream::Stderr),
        ["err1", "err2 no newline"]
    );
}

#[tokio::test]
async fn background_children_holding_the_pipes_do_not_hang_the_runner() {
    let dir = tempfile::tempdir().unwrap();
    // The sleeper inherits stdout and stderr and outlives the hook.
    write_hook(
        dir.path(),
        "install",
        "sleep 300 & echo $! > \"$STEWARD_TEST_DIR/sleeper\"; echo done",
    );
    let mut spec = spec(dir.path(), "install");
    spec.env
        .push(("STEWARD_TEST_DIR".into(), dir.path().as_os_str().to_owned()));
    let (report, lines) = tokio::time::timeout(Duration::from_secs(30), run(&spec))
        .await
        .expect("the runner waited for the background child's pipe");
    assert_eq!(report.outcome, HookOutcome::Exited(0));
    assert_eq!(stream(&lines, OutputStream::Stdout), ["done"]);
    // The leftover was killed with the hook's group.
    let sleeper = read_pid(&dir.path().join("sleeper"));
    assert!(wait_until(Duration::from_secs(5), || is_dead(sleeper)));
}

/// A hook that starts a grandchild, records both pids, and waits forever.
fn write_stuck_hook(dir: &Path) -> HookSpec {
    write_hook(
        dir,
        "install",
        "sleep 300 & echo $! > \"$STEWARD_TEST_DIR/grandchild\"\n\
         echo $$ > \"$STEWARD_TEST_DIR/hook\"\necho started\nwait",
    );
    let mut spec = spec(dir, "install");
    spec.env
        .push(("STEWARD_TEST_DIR".into(), dir.as_os_str().to_owned()));
    spec
}

fn assert_group_gone(dir: &Path) {
    for name in ["hook", "grandchild"] {
        let pid = read_pid(&dir.join(name));
        assert!(
            wait_until(Duration::from_secs(5), || is_dead(pid)),
            "the {name} ({pid}) survived"
        );
    }
}

#[tokio::test]
async fn a_timeout_kills_the_whole_group() {
    for with_leader in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = write_stuck_hook(dir.path());
        spec.timeout = Duration::from_millis(500);
        spec.leader = with_leader.then(leader);
        let (report, lines) = run(&spec).await;
        assert_eq!(
            report.outcome,
            HookOutcome::TimedOut(Duration::from_millis(500))
        );
        assert!(report.duration >= Duration::from_millis(500));
        assert!(!report.succeeded());
        assert!(
            report
                .to_string()
                .starts_with("hook \"install\" timed out after 500ms")
        );
        assert_eq!(stream(&lines, OutputStream::Stdout), ["started"]);
        assert_group_gone(dir.path());
    }
}

#[tokio::test]
async fn cancellation_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_stuck_hook(dir.path());
    let cancel = CancellationToken::new();
    let on_start = cancel.clone();
    let report = run_hook(&spec, &cancel, move |line| {
        if line.line == "started" {
            on_start.cancel();
        }
    })
    .await;
    assert_eq!(report.outcome, HookOutcome::Cancelled);
    assert_eq!(
        report.to_string(),
        "hook \"install\" was cancelled (the agent is stopping)"
    );
    assert_group_gone(dir.path());
}

#[tokio::test]
async fn dropping_the_run_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_stuck_hook(dir.path());
    let (started, mut on_start) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let run = run_hook(&spec, &cancel, move |line| {
        let _ = started.send(line);
    });
    tokio::select! {
        report = run => panic!("the stuck hook ended: {report:?}"),
        line = on_start.recv() => assert_eq!(line.unwrap().line, "started"),
    }
    assert_group_gone(dir.path());
}

#[tokio::test]
async fn the_hook_is_run_by_its_path() {
    let dir = tempfile::tempdir().unwrap();
    write_hook(dir.path(), "db-relation-joined", "echo \"$0\"");
    let (report, lines) = run(&spec(dir.path(), "db-relation-joined")).await;
    assert_eq!(report.outcome, HookOutcome::Exited(0));
    let expected: OsString = dir.path().join("db-relation-joined").into();
    assert_eq!(
        stream(&lines, OutputStream::Stdout),
        [expected.to_str().unwrap()]
    );
}
