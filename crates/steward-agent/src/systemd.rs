//! systemd's notify protocol (`sd_notify(3)`) for `steward run`: when
//! `NOTIFY_SOCKET` is set (a unit with `Type=notify`), the agent sends
//! `READY=1` once its API listens and every runtime has had its first
//! start attempt, `STATUS=` lines as what it serves changes, `STOPPING=1`
//! when it begins to shut down, and `WATCHDOG=1` at half the interval of
//! `WATCHDOG_USEC` (when `WATCHDOG_PID`, if set, is this process).
//!
//! The socket is a path or, with a leading `@`, a name in Linux's abstract
//! namespace. The sender is a small datagram socket of the standard
//! library rather than the `sd-notify` crate, which connects to the
//! variable's text as a path and so cannot reach abstract names. Sends
//! never block: a service manager that does not read loses a message, not
//! the agent's time.
//!
//! This module only reports; it must never decide anything about the
//! agent, and a failed notification is a warning, never an error.
//!
#![doc = include_str!("../docs/systemd.md")]

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::types::RuntimeState;

/// What the agent says about itself, read by [`Service`] as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// Whether every runtime has had its first start attempt.
    pub(crate) ready: bool,
    /// One line for `systemctl status`.
    pub(crate) status: String,
}

/// How the agent's state is read.
pub(crate) type Reporter = Arc<dyn Fn() -> Report + Send + Sync>;

/// How often the state is looked at before `READY=1`, and after.
const STARTING_CHECK: Duration = Duration::from_millis(100);
const RUNNING_CHECK: Duration = Duration::from_secs(1);

/// A datagram socket to the service manager.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    /// Whether the last send failed (and was warned about): a gone socket
    /// is one warning, not one per watchdog ping.
    failing: AtomicBool,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` asks for, if it is set.
    pub(crate) fn from_env() -> Result<Option<Self>, String> {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(None),
            Some(value) if value.is_empty() => Ok(None),
            Some(value) => Self::new(&value).map(Some),
        }
    }

    /// A notifier for `NOTIFY_SOCKET`'s value: a path, or `@name`.
    pub(crate) fn new(value: &OsStr) -> Result<Self, String> {
        let fail = |error: io::Error| format!("NOTIFY_SOCKET {value:?}: {error}");
        let address = address(value).map_err(fail)?;
        let socket = UnixDatagram::unbound().map_err(fail)?;
        socket.set_nonblocking(true).map_err(fail)?;
        Ok(Self {
            socket,
            address,
            failing: AtomicBool::new(false),
        })
    }

    /// Sends one message (`KEY=value` lines).
    pub(crate) fn send(&self, message: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(message.as_bytes(), &self.address)
            .map(drop)
    }
}

fn address(value: &OsStr) -> io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        return abstract_address(name);
    }
    if bytes.starts_with(b"/") {
        return SocketAddr::from_pathname(value);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a socket path (/…) or an abstract name (@…)",
    ))
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist on Linux only",
    ))
}

/// The `STATUS=` line for runtimes in these states, and the store's
/// problem if it refuses writes.
pub(crate) fn status_line(
    runtimes: &[(String, RuntimeState)],
    store_problem: Option<&str>,
) -> String {
    let total = runtimes.len();
    let serving = runtimes
        .iter()
        .filter(|(_, state)| *state == RuntimeState::Running)
        .count();
    let plural = if total == 1 { "" } else { "s" };
    let mut line = if total == 0 {
        "serving no runtimes (the config has none)".to_owned()
    } else if serving == total {
        format!("serving {total} runtime{plural}")
    } else {
        let others: Vec<String> = runtimes
            .iter()
            .filter(|(_, state)| *state != RuntimeState::Running)
            .map(|(id, state)| format!("{id} {state}"))
            .collect();
        format!(
            "serving {serving} of {total} runtime{plural} ({})",
            others.join(", ")
        )
    };
    if let Some(problem) = store_problem {
        line.push_str(&format!("; degraded: the store refuses writes ({problem})"));
    }
    // One line: a newline would end the message's STATUS= field.
    line.replace('\n', " ")
}

/// The interval of watchdog pings: half of `WATCHDOG_USEC`, when the
/// watchdog is meant for this process (`WATCHDOG_PID` unset or `pid`).
pub(crate) fn watchdog_interval(
    usec: Option<&str>,
    for_pid: Option<&str>,
    pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&usec| usec > 0)?;
    if let Some(for_pid) = for_pid
        && for_pid.trim().parse::<u32>().ok() != Some(pid)
    {
        return None;
    }
    Some(Duration::from_micros(usec) / 2)
}

/// The agent's side of the notify protocol while it runs.
#[derive(Debug)]
pub(crate) struct Service {
    /// Stops the status updates (not the watchdog) once the agent stops.
    stopping: CancellationToken,
    /// Ends the task once the agent is gone.
    done: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Service {
    /// Starts reporting to the service manager, if `NOTIFY_SOCKET` is set
    /// (else this does nothing).
    pub(crate) fn start(reporter: Reporter) -> Self {
        let notifier = match Notifier::from_env() {
            Ok(notifier) => notifier,
            Err(error) => {
                warn!(%error, "cannot notify the service manager; running without it");
                None
            }
        };
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        let stopping = CancellationToken::new();
        let done = CancellationToken::new();
        let task = notifier.map(|notifier| {
            info!(watchdog = ?watchdog, "notifying the service manager (systemd)");
            tokio::spawn(report(
                notifier,
                reporter,
                watchdog,
                stopping.clone(),
                done.clone(),
            ))
        });
        Self {
            stopping,
            done,
            task,
        }
    }

    /// Says the agent is stopping (`STOPPING=1`, and no more status
    /// updates); watchdog pings go on until [`finish`](Self::finish).
    pub(crate) fn stopping(&self) {
        self.stopping.cancel();
    }

    /// Ends the reporting (the agent has stopped).
    pub(crate) async fn finish(mut self) {
        self.done.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn send(notifier: &Notifier, message: &str) {
    let message_text = message.trim_end();
    match notifier.send(message) {
        Ok(()) => {
            notifier.failing.store(false, Ordering::Relaxed);
            debug!(message = message_text, "notified the service manager");
        }
        Err(error) if !notifier.failing.swap(true, Ordering::Relaxed) => {
            warn!(%error, message = message_text, "cannot notify the service manager (until it works again, further failures are logged at debug level)");
        }
        Err(error) => debug!(%error, message = message_text, "cannot notify the service manager"),
    }
}

async fn report(
    notifier: Notifier,
    reporter: Reporter,
    watchdog: Option<Duration>,
    stopping: CancellationToken,
    done: CancellationToken,
) {
    let mut ping = watchdog.map(|interval| {
        let mut ping = tokio::time::interval(interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping
    });
    let mut check = tokio::time::interval(STARTING_CHECK);
    let mut ready = false;
    let mut stopped = false;
    let mut shown = String::new();
    loop {
        let ping_due = async {
            match &mut ping {
                Some(ping) => drop(ping.tick().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            // Before `done`: a quick shutdown still says it is stopping.
            () = stopping.cancelled(), if !stopped => {
                stopped = true;
                send(&notifier, "STOPPING=1\nSTATUS=stopping: runtimes first, then the API\n");
            }
            () = done.cancelled() => return,
            () = ping_due => send(&notifier, "WATCHDOG=1\n"),
            _ = check.tick(), if !stopped => {
                let now = reporter();
                if !ready && now.ready {
                    ready = true;
                    send(&notifier, &format!("READY=1\nSTATUS={}\n", now.status));
                    check = tokio::time::interval(RUNNING_CHECK);
                    check.reset();
                } else if now.status != shown {
                    send(&notifier, &format!("STATUS={}\n", now.status));
                }
                shown = now.status;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_pings_at_half_its_interval_for_this_process_only() {
        let half = Some(Duration::from_millis(1500));
        assert_eq!(watchdog_interval(Some("3000000"), None, 42), half);
        assert_eq!(watchdog_interval(Some("3000000"), Some("42"), 42), half);
        assert_eq!(watchdog_interval(Some("3000000"), Some("7"), 42), None);
        assert_eq!(watchdog_interval(Some("3000000"), Some("x"), 42), None);
        assert_eq!(watchdog_interval(None, Some("42"), 42), None);
        assert_eq!(watchdog_interval(Some("0"), None, 42), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 42), None);
    }

    #[test]
    fn the_status_line_says_what_serves_and_what_does_not() {
        let running = |id: &str| (id.to_owned(), RuntimeState::Running);
        assert_eq!(
            status_line(&[running("echo"), running("kv"), running("web")], None),
            "serving 3 runtimes"
        );
        assert_eq!(status_line(&[running("echo")], None), "serving 1 runtime");
        assert_eq!(
            status_line(&[], None),
            "serving no runtimes (the config has none)"
        );
        assert_eq!(
            status_line(
                &[running("echo"), ("kv".to_owned(), RuntimeState::Restarting)],
                Some("disk full\nfor real")
            ),
            "serving 1 of 2 runtimes (kv restarting); degraded: the store refuses writes (disk full for real)"
        );
    }

    #[test]
    fn notify_socket_is_a_path_or_an_abstract_name() {
        assert!(address(OsStr::new("/run/systemd/notify")).is_ok());
        let error = address(OsStr::new("run/notify")).unwrap_err();
        assert!(error.to_string().contains("abstract name"), "{error}");
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = address(OsStr::new("@steward/notify")).unwrap();
            assert_eq!(name.as_abstract_name(), Some(&b"steward/notify"[..]));
        }
    }

    #[tokio::test]
    async fn messages_reach_a_datagram_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.as_os_str()).unwrap();
        notifier.send("READY=1\n").unwrap();
        let mut buffer = [0u8; 64];
        let len = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..len], b"READY=1\n");
    }
}
