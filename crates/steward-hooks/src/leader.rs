//! The hook leader: a small process between the agent and a hook that
//! makes sure **no hook process outlives the agent**, even one killed with
//! SIGKILL.
//!
//! The runner starts the leader (`steward hook-leader --parent <agent pid>
//! -- <hook>`) as the leader of a new process group. The leader asks the
//! kernel for a signal when its parent dies (`PR_SET_PDEATHSIG`), starts
//! the hook as its child in the same group, and waits. When the agent is
//! gone it kills the whole group — the hook and whatever the hook started
//! — with SIGKILL. When the hook exits, the leader exits the same way (the
//! same code, or the same signal), so the runner sees the hook's outcome.
//!
//! Linux sends the parent-death signal when the parent *thread* that forked
//! the leader exits, and the runner forks from tokio's blocking pool, whose
//! threads exit when idle. So the signal alone proves nothing: the leader
//! checks `getppid()` against the agent's pid and keeps waiting if the
//! agent is still its parent (the kernel sends the signal again at the next
//! reparenting, so the agent's real death is not missed). It also checks
//! every 250 ms, in case the signal is lost (a `setuid` hook, a parent that
//! died before the request).
//!
//! This module owns only that process's life. It must never run a hook
//! itself for the agent (the runner does) nor touch the hook's environment,
//! standard streams or working directory: the hook inherits them as the
//! runner set them.

use std::ffi::{CString, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::ExitCode;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::spawn::{
    PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn, posix_spawnp,
};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{SigSet, Signal, killpg, raise};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgrp, getpid, getppid, setpgid};

/// How often the leader checks its parent even without a signal.
const PARENT_CHECK_MS: u16 = 250;

const USAGE: &str = "usage: steward hook-leader [--parent PID] -- PROGRAM [ARGS...]";

/// The body of `steward hook-leader`. `args` are the arguments after the
/// subcommand: `[--parent PID] [--] PROGRAM [ARGS...]`. `--parent` is the
/// pid of the process the leader must not outlive (the runner passes the
/// agent's); without it, the parent at start-up.
///
/// Exits with the hook's code, or dies of the hook's signal. Where a
/// signal cannot be re-raised (one ignored in the leader, such as SIGPIPE,
/// which Rust programs ignore), exits with 128 + the signal number, as a
/// shell does. 2 for bad arguments, 126/127 when the program cannot be
/// started.
pub fn leader_main(args: Vec<OsString>) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(LeaderError::Usage(message)) => {
            eprintln!("steward hook-leader: {message}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(LeaderError::Failed(code, message)) => {
            eprintln!("steward hook-leader: {message}");
            ExitCode::from(code)
        }
    }
}

enum LeaderError {
    Usage(String),
    Failed(u8, String),
}

struct Invocation {
    parent: Option<Pid>,
    program: OsString,
    args: Vec<OsString>,
}

fn parse(args: Vec<OsString>) -> Result<Invocation, LeaderError> {
    let mut args = args.into_iter().peekable();
    let mut parent = None;
    if args.peek().is_some_and(|arg| arg == "--parent") {
        args.next();
        let pid = args
            .next()
            .and_then(|pid| pid.into_string().ok())
            .and_then(|pid| pid.parse::<i32>().ok())
            .filter(|pid| *pid > 0)
            .ok_or_else(|| LeaderError::Usage("--parent needs a process id".into()))?;
        parent = Some(Pid::from_raw(pid));
    }
    if args.peek().is_some_and(|arg| arg == "--") {
        args.next();
    }
    let program = args
        .next()
        .ok_or_else(|| LeaderError::Usage("no program to run".into()))?;
    Ok(Invocation {
        parent,
        program,
        args: args.collect(),
    })
}

fn run(args: Vec<OsString>) -> Result<ExitCode, LeaderError> {
    let invocation = parse(args)?;
    let parent = invocation.parent.unwrap_or_else(getppid);
    let failed = |what: &str, error: nix::Error| LeaderError::Failed(1, format!("{what}: {error}"));

    // Lead a group of our own (the runner already made us one; a shell may
    // not have), so that killing the group kills exactly the hook's tree.
    if getpgrp() != getpid() {
        setpgid(Pid::from_raw(0), Pid::from_raw(0))
            .map_err(|e| failed("cannot start a process group", e))?;
    }
    // Signals become readable events instead of interrupting us; blocked
    // before asking for the death signal, so none is missed. The hook gets
    // a clean mask (see `spawn`).
    let mut watched = SigSet::empty();
    watched.add(Signal::SIGTERM);
    watched.add(Signal::SIGCHLD);
    watched
        .thread_block()
        .map_err(|e| failed("cannot block signals", e))?;
    let signals = SignalFd::with_flags(&watched, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| failed("cannot watch signals", e))?;
    set_pdeathsig(Signal::SIGTERM).map_err(|e| failed("cannot ask for the parent's death", e))?;
    // The parent may have died before the request: then no signal comes.
    kill_group_if_orphaned(parent);

    let child = spawn(&invocation)?;

    loop {
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(PARENT_CHECK_MS)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(error) => return Err(failed("cannot wait for signals", error)),
        }
        // Which signal it was does not matter: after either, check both
        // the parent and the child.
        drain(&signals);
        kill_group_if_orphaned(parent);
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => {
                return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
            }
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                return Ok(die_like(signal, &signals, &watched));
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(error) => return Err(failed("cannot wait for the hook", error)),
        }
    }
}

/// Starts the hook with the leader's environment, standard streams and
/// working directory, but a clean signal mask (std's `Command` would hand
/// down the mask that blocks the leader's signals, and a hook that cannot
/// be terminated is worse than useless) and SIGPIPE at its default (Rust
/// ignores it; `std::process::Command` resets it the same way).
fn spawn(invocation: &Invocation) -> Result<Pid, LeaderError> {
    let failed = |what: &str, error: Errno| LeaderError::Failed(1, format!("{what}: {error}"));
    let c_string = |text: Vec<u8>| {
        CString::new(text).map_err(|_| LeaderError::Usage("an argument contains a NUL byte".into()))
    };
    let program = c_string(invocation.program.as_bytes().to_vec())?;
    let mut argv = vec![program.clone()];
    for arg in &invocation.args {
        argv.push(c_string(arg.as_bytes().to_vec())?);
    }
    let envp = std::env::vars_os()
        .map(|(key, value)| {
            let mut pair = key.into_vec();
            pair.push(b'=');
            pair.extend(value.into_vec());
            c_string(pair)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut attr = PosixSpawnAttr::init().map_err(|e| failed("cannot set up the hook", e))?;
    let mut defaults = SigSet::empty();
    defaults.add(Signal::SIGPIPE);
    attr.set_sigmask(&SigSet::empty())
        .and_then(|()| attr.set_sigdefault(&defaults))
        .and_then(|()| {
            attr.set_flags(
                PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
            )
        })
        .map_err(|e| failed("cannot set up the hook", e))?;
    let actions = PosixSpawnFileActions::init().map_err(|e| failed("cannot set up the hook", e))?;
    // Like a shell: a bare name is looked up on PATH.
    let spawned = if invocation.program.as_bytes().contains(&b'/') {
        posix_spawn(program.as_c_str(), &actions, &attr, &argv, &envp)
    } else {
        posix_spawnp(&program, &actions, &attr, &argv, &envp)
    };
    spawned.map_err(|error| {
        let code = if error == Errno::ENOENT { 127 } else { 126 };
        LeaderError::Failed(
            code,
            format!("cannot run {:?}: {error}", invocation.program),
        )
    })
}

/// Kills the whole group (the hook, its children and the leader itself)
/// if the process the leader must not outlive is no longer its parent.
fn kill_group_if_orphaned(parent: Pid) {
    if getppid() != parent {
        // Only fails if the group is already gone; nothing else to do.
        let _ = killpg(getpgrp(), Signal::SIGKILL);
    }
}

fn drain(signals: &SignalFd) {
    while let Ok(Some(_)) = signals.read_signal() {}
}

/// Dies of the hook's `signal`, re-raised on the leader itself, so the
/// runner sees the same outcome.
fn die_like(signal: Signal, signals: &SignalFd, watched: &SigSet) -> ExitCode {
    // A pending SIGTERM (a spurious parent-death signal) must not kill us
    // in place of the hook's signal once unblocked.
    let _ = set_pdeathsig(None);
    drain(signals);
    let _ = watched.thread_unblock();
    // Our dispositions are the defaults, except what Rust or our own parent
    // set to ignore (SIGPIPE); then we fall through to the shell's code.
    let _ = raise(signal);
    ExitCode::from(u8::try_from(128 + signal as i32).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_parent_double_dash_and_program() {
        let parsed = parse(args(&["--parent", "42", "--", "/bin/hook", "-x"]))
            .ok()
            .unwrap();
        assert_eq!(parsed.parent, Some(Pid::from_raw(42)));
        assert_eq!(parsed.program, "/bin/hook");
        assert_eq!(parsed.args, args(&["-x"]));
        let parsed = parse(args(&["/bin/hook", "--", "a"])).ok().unwrap();
        assert_eq!(parsed.parent, None);
        assert_eq!(parsed.args, args(&["--", "a"]));
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for bad in [
            &[][..],
            &["--"],
            &["--parent"],
            &["--parent", "x", "p"],
            &["--parent", "0", "p"],
        ] {
            assert!(
                matches!(parse(args(bad)), Err(LeaderError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
