//! The runtime's process group: signals go to the whole group, so helper
//! processes a runtime spawned die with it and none is orphaned.
//!
//! Sending to a group whose leader was already reaped is safe on Linux: a
//! process id is not reused while a process group of that id still has
//! members, and an empty group just answers ESRCH.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The group of a spawned runtime; dropping it kills whatever is left.
pub(super) struct ProcessGroup {
    id: Pid,
}

impl ProcessGroup {
    /// The group led by `leader` (spawned with `process_group(0)`).
    pub(super) fn new(leader: u32) -> Option<Self> {
        let id = i32::try_from(leader).ok()?;
        Some(Self {
            id: Pid::from_raw(id),
        })
    }

    /// Sends `signal` to every process of the group; a group with no
    /// process left is not an error.
    pub(super) fn signal(&self, signal: Signal) {
        if let Err(error) = killpg(self.id, signal)
            && error != nix::errno::Errno::ESRCH
        {
            tracing::warn!(group = self.id.as_raw(), %error, ?signal, "cannot signal runtime process group");
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}
