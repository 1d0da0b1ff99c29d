//! Running one hook as a process.
//!
//! A hook is an executable file in the runtime's hooks directory. The
//! runner starts it with exactly the environment it is given, in its own
//! process group (optionally under the [leader](crate::leader), which makes
//! the group die with the agent), hands its output on line by line, and
//! ends in a [`HookOutcome`]: missing (a hook that succeeded), not
//! executable, an exit code, a signal, a timeout (the whole group killed),
//! cancelled, or could not be spawned.
//!
//! This module owns the process and its group. It must never decide what a
//! hook's outcome means for the runtime (retry, block, commit): that is the
//! agent's.

mod group;
mod output;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::{AccessFlags, access};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use group::ProcessGroup;
use output::Output;

/// How long output is still read after the hook exited: background
/// processes it started may hold its pipes open forever (juju waited
/// 100 ms too).
pub const OUTPUT_GRACE: Duration = Duration::from_millis(100);

/// One hook to run.
#[derive(Debug, Clone)]
pub struct HookSpec {
    /// The runtime's hooks directory.
    pub hooks_dir: PathBuf,
    /// The hook's file name in it (see [`HookInfo::file_name`](crate::HookInfo::file_name)).
    pub hook: String,
    /// The hook's whole environment: nothing else is inherited (not even
    /// `PATH`; the agent puts the tools directory first on it).
    pub env: Vec<(OsString, OsString)>,
    /// The hook's working directory.
    pub cwd: PathBuf,
    /// How long the hook may run before its process group is killed.
    pub timeout: Duration,
    /// The helper to run the hook under, so that it dies with the agent;
    /// `None` runs the hook directly (its group still dies on timeout and
    /// cancellation, but not if the agent is killed).
    pub leader: Option<LeaderCommand>,
}

impl HookSpec {
    /// A hook with an empty environment and no leader.
    pub fn new(
        hooks_dir: impl Into<PathBuf>,
        hook: impl Into<String>,
        cwd: impl Into<PathBuf>,
        timeout: Duration,
    ) -> Self {
        Self {
            hooks_dir: hooks_dir.into(),
            hook: hook.into(),
            env: Vec::new(),
            cwd: cwd.into(),
            timeout,
            leader: None,
        }
    }

    /// The hook file's path.
    pub fn path(&self) -> PathBuf {
        self.hooks_dir.join(&self.hook)
    }
}

/// The command that runs the [leader](crate::leader): for the agent, the
/// `steward` binary with `hook-leader`. The runner appends
/// `--parent <agent pid> -- <hook path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderCommand {
    /// The program (absolute, since `PATH` is the hook's).
    pub program: PathBuf,
    /// Arguments before the runner's (`["hook-leader"]`).
    pub args: Vec<OsString>,
}

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    /// The hook's standard output.
    Stdout,
    /// The hook's standard error.
    Stderr,
}

/// One line of a hook's output, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// Where it was printed.
    pub stream: OutputStream,
    /// The text (invalid UTF-8 replaced; lines over 64 KiB split).
    pub line: String,
}

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// There is no such hook file: a hook that succeeded.
    Missing,
    /// The file exists but cannot be executed: a failed hook.
    NotExecutable,
    /// The hook exited with this code (0 is success).
    Exited(i32),
    /// The hook was killed by this signal.
    Signalled(i32),
    /// The hook ran longer than its timeout; its process group was killed.
    TimedOut(Duration),
    /// The run was cancelled (agent shutdown); its process group was killed.
    Cancelled,
    /// The hook (or its leader) could not be started.
    SpawnFailed(String),
}

/// A hook run's outcome, with what the agent reports about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReport {
    /// The hook's file name.
    pub hook: String,
    /// The hook file's path.
    pub path: PathBuf,
    /// How it ended.
    pub outcome: HookOutcome,
    /// From before the spawn to after the last output was read.
    pub duration: Duration,
}

impl HookReport {
    /// Whether the hook succeeded: exit code 0, or no hook file at all.
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, HookOutcome::Missing | HookOutcome::Exited(0))
    }
}

impl fmt::Display for HookReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hook = &self.hook;
        match &self.outcome {
            HookOutcome::Missing => write!(f, "hook {hook:?} is missing (nothing to run)"),
            HookOutcome::NotExecutable => write!(
                f,
                "hook {hook:?} is not executable (chmod +x {})",
                self.path.display()
            ),
            HookOutcome::Exited(0) => write!(f, "hook {hook:?} succeeded"),
            HookOutcome::Exited(code) => write!(f, "hook {hook:?} failed: exit status {code}"),
            HookOutcome::Signalled(signal) => {
                write!(f, "hook {hook:?} was killed by signal {signal}")?;
                match Signal::try_from(*signal) {
                    Ok(name) => write!(f, " ({name})"),
                    Err(_) => Ok(()),
                }
            }
            HookOutcome::TimedOut(after) => write!(
                f,
                "hook {hook:?} timed out after {after:?} and was killed with its processes \
                 (raise the hook timeout if it needs longer)"
            ),
            HookOutcome::Cancelled => {
                write!(f, "hook {hook:?} was cancelled (the agent is stopping)")
            }
            HookOutcome::SpawnFailed(error) => write!(f, "cannot run hook {hook:?}: {error}"),
        }
    }
}

/// Runs one hook to its end, handing each output line to `sink`.
///
/// On timeout or `cancel`, and if the returned future is dropped, the
/// hook's whole process group is killed with SIGKILL (and the process
/// reaped). Background processes still in the group when the hook exits
/// are killed too: a hook must not leave processes behind (start long-lived
/// services through the service manager).
pub async fn run_hook(
    spec: &HookSpec,
    cancel: &CancellationToken,
    mut sink: impl FnMut(OutputLine) + Send,
) -> HookReport {
    let path = spec.path();
    let started = Instant::now();
    let outcome = match check_executable(&path) {
        Err(outcome) => {
            if outcome == HookOutcome::Missing {
                debug!(hook = %spec.hook, "no hook file; nothing to run");
            }
            outcome
        }
        Ok(()) => run_process(spec, &path, cancel, &mut sink).await,
    };
    HookReport {
        hook: spec.hook.clone(),
        path,
        outcome,
        duration: started.elapsed(),
    }
}

/// `Err(outcome)` for hooks that are not run at all.
fn check_executable(path: &Path) -> Result<(), HookOutcome> {
    match std::fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(HookOutcome::Missing),
        Err(error) => Err(HookOutcome::SpawnFailed(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
        Ok(metadata) if !metadata.is_file() => Err(HookOutcome::NotExecutable),
        // `access` rather than the mode bits: it answers for this user.
        Ok(_) => access(path, AccessFlags::X_OK).map_err(|_| HookOutcome::NotExecutable),
    }
}

fn command(spec: &HookSpec, path: &Path) -> Command {
    let mut command = match &spec.leader {
        Some(leader) => {
            let mut command = Command::new(&leader.program);
            command
                .args(&leader.args)
                .arg("--parent")
                .arg(std::process::id().to_string())
                .arg("--")
                .arg(path);
            command
        }
        None => Command::new(path),
    };
    command
        .env_clear()
        .envs(spec.env.iter().map(|(key, value)| (key, value)))
        .current_dir(&spec.cwd)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn run_process(
    spec: &HookSpec,
    path: &Path,
    cancel: &CancellationToken,
    sink: &mut (impl FnMut(OutputLine) + Send),
) -> HookOutcome {
    let mut command = command(spec, path);
    // The spawn is synchronous: it returns once the child has exec'd
    // (0.2-0.5 ms measured here, much more on a loaded machine), time the
    // other tasks of a worker thread would wait. A blocking-pool thread
    // takes it instead, at no measurable cost. That thread may exit while
    // the hook runs: the leader copes (see `leader`).
    let spawned = match tokio::task::spawn_blocking(move || command.spawn()).await {
        Ok(spawned) => spawned,
        Err(error) => return HookOutcome::SpawnFailed(format!("spawn task failed: {error}")),
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => return HookOutcome::SpawnFailed(spawn_error(spec, path, &error)),
    };
    let Some(group) = child.id().and_then(ProcessGroup::new) else {
        return HookOutcome::SpawnFailed("the process vanished as it started".into());
    };
    let mut output = Output::new(child.stdout.take(), child.stderr.take());
    let timeout = tokio::time::sleep(spec.timeout);
    tokio::pin!(timeout);
    let ended = loop {
        tokio::select! {
            status = child.wait() => break Ok(status),
            () = &mut timeout => break Err(HookOutcome::TimedOut(spec.timeout)),
            () = cancel.cancelled() => break Err(HookOutcome::Cancelled),
            line = output.next_line() => match line {
                Some(line) => sink(line),
                None => output.close(),
            },
        }
    };
    let (outcome, killed) = match ended {
        Ok(status) => (exit_outcome(status), false),
        Err(outcome) => {
            group.kill();
            if let Err(error) = child.wait().await {
                warn!(hook = %spec.hook, %error, "cannot reap the killed hook");
            }
            (outcome, true)
        }
    };
    let grace = tokio::time::sleep(OUTPUT_GRACE);
    tokio::pin!(grace);
    while !output.is_closed() {
        tokio::select! {
            () = &mut grace => break,
            line = output.next_line() => match line {
                Some(line) => sink(line),
                None => output.close(),
            },
        }
    }
    // After an exit, anything still in the group was left behind by the
    // hook (after a kill, only zombies an init that does not reap may keep).
    if !killed && group.kill() {
        warn!(hook = %spec.hook, "the hook left processes running; killed them");
    }
    outcome
}

fn spawn_error(spec: &HookSpec, path: &Path, error: &io::Error) -> String {
    match &spec.leader {
        Some(leader) => format!(
            "cannot start the hook leader {}: {error}",
            leader.program.display()
        ),
        None if error.raw_os_error() == Some(nix::libc::ENOEXEC) => format!(
            "{} is not a program the system can run ({error}); does it start with #!?",
            path.display()
        ),
        None => format!("{}: {error}", path.display()),
    }
}

fn exit_outcome(status: io::Result<ExitStatus>) -> HookOutcome {
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => HookOutcome::Exited(code),
            (None, Some(signal)) => HookOutcome::Signalled(signal),
            (None, None) => HookOutcome::SpawnFailed(format!("unexpected exit status {status}")),
        },
        Err(error) => HookOutcome::SpawnFailed(format!("cannot wait for the hook: {error}")),
    }
}
