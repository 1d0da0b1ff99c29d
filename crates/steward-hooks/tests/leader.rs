//! The hook leader: no hook process (nor anything it started) outlives a
//! SIGKILLed agent; a parent *thread* that exits is not the agent dying; a
//! leader whose parent is already gone runs nothing; the hook gets a clean
//! signal mask and the leader exits like the hook.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

mod support;

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{is_dead, read_pid, wait_until, write_hook};

const BIN: &str = env!("CARGO_BIN_EXE_steward-hooks-test");

/// The hook every test runs: a background grandchild, both pids written
/// down, then wait (for the grandchild, i.e. forever).
fn write_stuck_hook(dir: &Path) {
    write_hook(
        dir,
        "install",
        "sleep 300 & echo $! > \"$STEWARD_TEST_DIR/grandchild\"\n\
         echo $$ > \"$STEWARD_TEST_DIR/hook\"\nwait",
    );
}

/// The parent pid of `pid`, from /proc.
fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// SIGKILLs `agent` and checks that the leader, the hook and its
/// grandchild are all gone within a second.
fn kill_agent_and_check(mut agent: std::process::Child, dir: &Path) {
    let hook = read_pid(&dir.join("hook"));
    let grandchild = read_pid(&dir.join("grandchild"));
    let leader = parent_of(hook);
    assert_ne!(
        leader,
        agent.id() as i32,
        "the hook should run under the leader"
    );
    assert_eq!(parent_of(leader), agent.id() as i32);
    for pid in [leader, hook, grandchild] {
        assert!(!is_dead(pid), "{pid} died before the agent");
    }

    agent.kill().unwrap(); // SIGKILL: the agent gets no say
    let killed = Instant::now();
    agent.wait().unwrap();
    for (name, pid) in [
        ("leader", leader),
        ("hook", hook),
        ("grandchild", grandchild),
    ] {
        assert!(
            wait_until(
                Duration::from_secs(1).saturating_sub(killed.elapsed()),
                || is_dead(pid)
            ),
            "the {name} ({pid}) outlived the agent by more than a second"
        );
    }
}

#[test]
fn no_hook_process_outlives_a_sigkilled_agent() {
    // The agent is a separate process that runs the hook through the
    // runner and the leader, exactly as the agent will.
    let dir = tempfile::tempdir().unwrap();
    write_stuck_hook(dir.path());
    let agent = Command::new(BIN)
        .args([
            "run-hook".as_ref(),
            dir.path().as_os_str(),
            "install".as_ref(),
            "300".as_ref(),
        ])
        .env("STEWARD_TEST_DIR", dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    kill_agent_and_check(agent, dir.path());
}

#[test]
fn a_leader_started_by_a_shell_makes_its_own_group_and_dies_with_it() {
    // No process group set up by the caller, no runner: the leader must
    // still lead its own group and watch its parent.
    let dir = tempfile::tempdir().unwrap();
    write_stuck_hook(dir.path());
    let agent = Command::new("/bin/sh")
        .arg("-c")
        .arg("\"$0\" hook-leader --parent $$ -- \"$1\" & wait")
        .arg(BIN)
        .arg(dir.path().join("install"))
        .env("STEWARD_TEST_DIR", dir.path())
        .spawn()
        .unwrap();
    let hook = read_pid(&dir.path().join("hook"));
    let leader = parent_of(hook);
    let group = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(leader))).unwrap();
    assert_eq!(group.as_raw(), leader, "the leader leads its own group");
    kill_agent_and_check(agent, dir.path());
}

#[test]
fn a_leader_whose_parent_is_already_gone_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_hook(dir.path(), "install", "touch \"$STEWARD_TEST_DIR/ran\"");
    // pid 1 is not our parent: as if the agent died before the leader
    // asked for the death signal.
    let status = Command::new(BIN)
        .args([
            "hook-leader".as_ref(),
            "--parent".as_ref(),
            "1".as_ref(),
            "--".as_ref(),
            dir.path().join("install").as_os_str(),
        ])
        .env("STEWARD_TEST_DIR", dir.path())
        .process_group(0)
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");
    assert!(!dir.path().join("ran").exists());
}

#[test]
fn a_parent_thread_that_exits_is_not_the_agent_dying() {
    // The runner forks from tokio's blocking pool, whose threads exit when
    // idle, and Linux sends the parent-death signal when the forking
    // *thread* exits. Here a thread starts the leader, waits until the hook
    // runs (so the leader has asked for the signal), and exits while the
    // test process lives on: the hook must carry on to its own exit code.
    let dir = tempfile::tempdir().unwrap();
    write_hook(
        dir.path(),
        "install",
        "echo $$ > \"$STEWARD_TEST_DIR/hook\"; read line; exit 7",
    );
    let hook = dir.path().join("install");
    let pid_file = dir.path().join("hook");
    let test_dir = dir.path().to_path_buf();
    let (mut leader, tid) = std::thread::spawn(move || {
        let leader = Command::new(BIN)
            .args([
                "hook-leader".as_ref(),
                "--parent".as_ref(),
                std::process::id().to_string().as_ref(),
                "--".as_ref(),
                hook.as_os_str(),
            ])
            .env("STEWARD_TEST_DIR", test_dir)
            .stdin(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        read_pid(&pid_file);
        (leader, nix::unistd::gettid().as_raw())
    })
    .join()
    .unwrap();
    // The kernel sends the signal as the thread is released; once its
    // /proc entry is gone the signal has been sent.
    let task = format!("/proc/self/task/{tid}");
    assert!(wait_until(Duration::from_secs(10), || !Path::new(&task).exists()));
    // Whatever the leader does with the signal, it does before it sees
    // the hook exit: SIGTERM is dequeued before the SIGCHLD that follows
    // this line.
    let _ = leader.stdin.take().unwrap().write_all(b"go\n");
    let status = leader.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(7),
        "the leader killed the hook: {status}"
    );
}

#[test]
fn the_hook_gets_a_clean_signal_mask() {
    // grep is the leader's direct child: its mask is what the leader set.
    let output = Command::new(BIN)
        .args([
            "hook-leader",
            "--",
            "/bin/grep",
            "-E",
            "^Sig(Blk|Ign)",
            "/proc/self/status",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let blocked = text
        .lines()
        .find_map(|line| line.strip_prefix("SigBlk:"))
        .unwrap()
        .trim();
    assert_eq!(u64::from_str_radix(blocked, 16).unwrap(), 0, "{text}");
    let ignored = text
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .unwrap()
        .trim();
    let sigpipe = 1u64 << (13 - 1);
    assert_eq!(
        u64::from_str_radix(ignored, 16).unwrap() & sigpipe,
        0,
        "SIGPIPE ignored: {text}"
    );
}

#[test]
fn the_leader_exits_like_the_hook() {
    let run = |script: &str| {
        Command::new(BIN)
            .args(["hook-leader", "--", "/bin/sh", "-c", script])
            .status()
            .unwrap()
    };
    assert_eq!(run("exit 0").code(), Some(0));
    assert_eq!(run("exit 42").code(), Some(42));
    assert_eq!(run("kill -TERM $$").signal(), Some(15));
    assert_eq!(run("kill -KILL $$").signal(), Some(9));
    // Rust programs ignore SIGPIPE, so the leader cannot die of it: it
    // exits as a shell reports it.
    assert_eq!(run("kill -PIPE $$").code(), Some(128 + 13));
}

#[test]
fn the_leader_explains_bad_invocations() {
    for (args, code, message) in [
        (
            &["hook-leader"][..],
            2,
            "steward hook-leader: no program to run",
        ),
        (
            &["hook-leader", "--parent"],
            2,
            "steward hook-leader: --parent needs a process id",
        ),
        (
            &["hook-leader", "--", "/no/such/hook"],
            127,
            "steward hook-leader: cannot run \"/no/such/hook\": ENOENT",
        ),
    ] {
        let output = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(code), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.starts_with(message), "{args:?}: {stderr}");
    }
}
