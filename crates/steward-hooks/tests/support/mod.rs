//! Helpers shared by the runner and leader tests: hook scripts, process
//! liveness from /proc, and waiting for a condition with a deadline.
#![allow(dead_code)] // each test file uses its own subset

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Writes an executable shell script `name` in `dir`.
pub fn write_hook(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Whether `pid` is gone or a zombie (this machine's init may not reap
/// orphans, so a killed orphan can stay a zombie).
pub fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state == 'Z' || state == 'X'),
    }
}

/// Polls `condition` every 10 ms until it holds or `within` passed;
/// returns whether it held.
pub fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pid written to `path` (waits up to 10 s for the file to be complete).
pub fn read_pid(path: &Path) -> i32 {
    let mut pid = None;
    let found = wait_until(Duration::from_secs(10), || {
        pid = std::fs::read_to_string(path)
            .ok()
            .filter(|text| text.ends_with('\n'))
            .and_then(|text| text.trim().parse().ok());
        pid.is_some()
    });
    assert!(found, "no pid in {}", path.display());
    pid.unwrap()
}
