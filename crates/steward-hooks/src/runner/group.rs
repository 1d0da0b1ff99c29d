//! A hook's process group: SIGKILL to every process of it, and nothing
//! left behind when the run is dropped. This module must never signal
//! anything but the one group it was made for.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tracing::warn;

/// The hook's process group. Dropping it kills whatever is left in it, so
/// a dropped `run_hook` future leaves nothing running.
///
/// Signalling a group whose leader was reaped is safe on Linux: a pid is
/// not reused while a group of that id has members, and an empty group just
/// answers ESRCH.
pub(super) struct ProcessGroup(Pid);

impl ProcessGroup {
    pub(super) fn new(leader: u32) -> Option<Self> {
        i32::try_from(leader)
            .ok()
            .map(|pid| Self(Pid::from_raw(pid)))
    }

    /// SIGKILLs the group; whether any process was left to kill.
    pub(super) fn kill(&self) -> bool {
        match killpg(self.0, Signal::SIGKILL) {
            Ok(()) => true,
            Err(nix::errno::Errno::ESRCH) => false,
            Err(error) => {
                warn!(group = self.0.as_raw(), %error, "cannot kill a hook's process group");
                false
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}
