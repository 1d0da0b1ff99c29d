//! The agent's run directory, and the clean-up after an agent that died.
//!
//! Each data dir has one private directory in the system's temp dir,
//! `steward-run-<hash of the data dir>` (0700, this user's): its runtimes'
//! socket directories and its hook tool server's directory are made in it.
//! When an agent starts — holding the store's lock, so no live agent of the
//! same data dir owns anything there — it cleans up after one that died
//! without doing so (SIGKILL, a power cut): processes still running with a
//! socket under the directory in their environment (runtimes:
//! `STEWARD_HOST`; hooks: `STEWARD_AGENT_SOCKET`) are killed with their
//! process groups, and whatever is left in the directory is removed.
//! Runtimes and hooks end by themselves when their agent dies; this is the
//! second line, for one that would not.
//!
//! This module must never touch anything outside that directory, nor a
//! process whose environment it cannot read (another user's), nor its own
//! process group.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, geteuid, getpgid, getpgrp, getpid};

/// The environment variables that tie a process to an agent's run
/// directory.
const SOCKET_VARIABLES: [&[u8]; 2] = [b"STEWARD_HOST=", b"STEWARD_AGENT_SOCKET="];

/// What a start found left behind, and cleaned up.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Leftovers {
    /// The processes killed (each with its process group).
    pub(crate) killed: Vec<i32>,
    /// The entries removed from the run directory.
    pub(crate) removed: usize,
}

/// The run directory of `data_dir` (which exists), made if missing and
/// checked to be this user's alone, with what an earlier agent left in it
/// cleaned up. Blocking.
pub(crate) fn prepare(data_dir: &Path) -> Result<(PathBuf, Leftovers), String> {
    let data_dir = data_dir
        .canonicalize()
        .map_err(|error| format!("cannot resolve {}: {error}", data_dir.display()))?;
    let path = std::env::temp_dir().join(format!(
        "steward-run-{:016x}",
        fnv1a(data_dir.as_os_str().as_bytes())
    ));
    make_private(&path)?;
    let killed = kill_leftovers(&path);
    let removed = empty(&path)?;
    Ok((path, Leftovers { killed, removed }))
}

/// FNV-1a, 64 bits: a stable name for a path (no secret, no collisions to
/// fear among one machine's data dirs).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Makes `path` a directory only this user can enter, or checks that it
/// is one: in a shared temp dir another user could have made it first, to
/// read or pose as the agent's sockets.
fn make_private(path: &Path) -> Result<(), String> {
    let refuse = |why: &str| {
        format!(
            "refusing to use {} for the agent's sockets: {why}; remove it, or point TMPDIR elsewhere",
            path.display()
        )
    };
    match std::fs::create_dir(path) {
        Ok(()) => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .map_err(|error| refuse(&format!("cannot make it private: {error}")))?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(refuse(&format!("cannot create it: {error}"))),
    }
    let metadata = std::fs::symlink_metadata(path).map_err(|error| refuse(&error.to_string()))?;
    if !metadata.is_dir() {
        return Err(refuse("it is not a directory (a symbolic link?)"));
    }
    if metadata.uid() != geteuid().as_raw() {
        return Err(refuse("it belongs to another user"));
    }
    if metadata.mode() & 0o077 != 0 {
        return Err(refuse("others can enter it (its mode is not 0700)"));
    }
    Ok(())
}

/// Kills every process (with its group) that has a socket under `dir` in
/// its environment; returns their pids.
fn kill_leftovers(dir: &Path) -> Vec<i32> {
    let mut prefix = dir.as_os_str().as_bytes().to_vec();
    prefix.push(b'/');
    let (me, my_group) = (getpid(), getpgrp());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let pid = Pid::from_raw(pid);
        if pid == me {
            continue;
        }
        // Unreadable (another user's, or gone): not ours to judge.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !mentions(&environ, &prefix) {
            continue;
        }
        let group = getpgid(Some(pid)).ok().filter(|group| *group != my_group);
        let sent = match group {
            Some(group) => killpg(group, Signal::SIGKILL),
            None => kill(pid, Signal::SIGKILL),
        };
        if sent.is_ok() {
            killed.push(pid.as_raw());
        }
    }
    killed
}

/// Whether a NUL-separated environment sets one of the socket variables
/// to a path starting with `prefix`.
fn mentions(environ: &[u8], prefix: &[u8]) -> bool {
    environ.split(|byte| *byte == 0).any(|variable| {
        SOCKET_VARIABLES.iter().any(|name| {
            variable
                .strip_prefix(*name)
                .is_some_and(|value| value.starts_with(prefix))
        })
    })
}

/// Removes everything in `dir`; returns how many entries there were.
fn empty(dir: &Path) -> Result<usize, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("cannot list {}: {error}", dir.display()))?;
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        gone.map_err(|error| format!("cannot remove {}: {error}", path.display()))?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn the_environment_must_point_into_the_directory() {
        let prefix = b"/tmp/steward-run-1/";
        assert!(mentions(
            b"PATH=/bin\0STEWARD_HOST=/tmp/steward-run-1/steward-abc/host.sock\0",
            prefix
        ));
        assert!(mentions(
            b"STEWARD_AGENT_SOCKET=/tmp/steward-run-1/steward-tools-x/agent.sock",
            prefix
        ));
        // Another data dir's run directory, a name that only starts the
        // same, another variable.
        assert!(!mentions(
            b"STEWARD_HOST=/tmp/steward-run-2/steward-abc/host.sock",
            prefix
        ));
        assert!(!mentions(b"STEWARD_HOST=/tmp/steward-run-10/x", prefix));
        assert!(!mentions(b"OTHER=/tmp/steward-run-1/x", prefix));
    }

    #[test]
    fn a_directory_of_others_is_refused() {
        let parent = tempfile::tempdir().unwrap();
        let open = parent.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = make_private(&open).unwrap_err();
        assert!(error.contains("others can enter it"), "{error}");
        let link = parent.path().join("link");
        std::os::unix::fs::symlink(parent.path(), &link).unwrap();
        let error = make_private(&link).unwrap_err();
        assert!(error.contains("not a directory"), "{error}");
        let fresh = parent.path().join("fresh");
        make_private(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
        make_private(&fresh).unwrap();
    }

    /// A process left with a socket of the directory in its environment
    /// (and its group) is killed; others are not; the directory is
    /// emptied.
    #[test]
    fn leftovers_are_killed_and_removed() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        make_private(&run).unwrap();
        std::fs::create_dir(run.join("steward-abc123")).unwrap();
        let sleeper = |socket: &Path| {
            Command::new("sleep")
                .arg("300")
                .env("STEWARD_HOST", socket)
                .stdin(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let mut ours = sleeper(&run.join("steward-abc123/host.sock"));
        let mut theirs = sleeper(&dir.path().join("elsewhere/host.sock"));
        let killed = kill_leftovers(&run);
        assert_eq!(killed, vec![i32::try_from(ours.id()).unwrap()]);
        let status = ours.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert_eq!(
            theirs.try_wait().unwrap(),
            None,
            "another's process runs on"
        );
        theirs.kill().unwrap();
        theirs.wait().unwrap();
        assert_eq!(empty(&run).unwrap(), 1);
        assert_eq!(std::fs::read_dir(&run).unwrap().count(), 0);
    }

    #[test]
    fn each_data_dir_has_its_own_directory() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (run_a, _) = prepare(a.path()).unwrap();
        let (run_b, _) = prepare(b.path()).unwrap();
        assert_ne!(run_a, run_b);
        assert_eq!(prepare(a.path()).unwrap().0, run_a);
        assert!(run_a.display().to_string().contains("steward-run-"));
        for run in [run_a, run_b] {
            std::fs::remove_dir(run).unwrap();
        }
    }
}
