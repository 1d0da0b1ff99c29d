//! `steward run` under a service manager: systemd's notify protocol on a
//! real Unix datagram socket that the test binds (a path, or a name in
//! Linux's abstract namespace), as systemd does for `Type=notify`.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::support::{Agent, DEADLINE, Options, TestRuntime, config_toml, send_signal};

/// The messages a bound notify socket receives, read on a thread.
struct NotifySocket {
    messages: mpsc::Receiver<String>,
    /// Every message so far, in order.
    seen: Vec<String>,
}

impl NotifySocket {
    fn listen(socket: UnixDatagram) -> Self {
        let (sender, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 4096];
            while let Ok(len) = socket.recv(&mut buffer) {
                let message = String::from_utf8_lossy(&buffer[..len]).into_owned();
                if sender.send(message).is_err() {
                    return;
                }
            }
        });
        Self {
            messages,
            seen: Vec::new(),
        }
    }

    fn at_path(path: &Path) -> Self {
        Self::listen(UnixDatagram::bind(path).expect("cannot bind the notify socket"))
    }

    fn abstract_name(name: &str) -> Self {
        use std::os::linux::net::SocketAddrExt;
        let address = SocketAddr::from_abstract_name(name).unwrap();
        Self::listen(UnixDatagram::bind_addr(&address).expect("cannot bind the notify socket"))
    }

    /// Waits (within the deadline) for a message satisfying `wanted`;
    /// returns it. Every message read is kept in `seen`.
    async fn until(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::task::block_in_place(|| self.messages.recv_timeout(left))
                .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}; got {:#?}", self.seen));
            self.seen.push(message.clone());
            if wanted(&message) {
                return message;
            }
        }
    }

    /// How many of the messages seen are exactly `message`.
    fn count(&self, message: &str) -> usize {
        self.seen.iter().filter(|seen| *seen == message).count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_ready_status_watchdog_and_stopping() {
    let dir = TempDir::new().unwrap();
    let socket_path = dir.path().join("notify");
    let mut notify = NotifySocket::at_path(&socket_path);
    // echo restarts slowly, so that its restart shows in a STATUS line.
    let config = dir.path().join("steward.toml");
    let text = config_toml(&[
        TestRuntime {
            id: "echo",
            active: "1.0.0",
            versions: &["1.0.0"],
        },
        TestRuntime {
            id: "kv",
            active: "1.0.0",
            versions: &["1.0.0"],
        },
    ]);
    let text = text.replacen(
        "initial = \"100ms\"\nmax = \"1s\"",
        "initial = \"3s\"\nmax = \"3s\"",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let mut options = Options::with_config(&dir.path().join("data"), &config);
    options.env = vec![
        (
            "NOTIFY_SOCKET".to_owned(),
            socket_path.display().to_string(),
        ),
        // Pings every 100 ms.
        ("WATCHDOG_USEC".to_owned(), "200000".to_owned()),
    ];
    let mut agent = Agent::start(options).await;

    // READY=1 once both runtimes had their first start, with a status.
    let ready = notify
        .until("READY=1", |message| message.starts_with("READY=1\n"))
        .await;
    assert_eq!(ready, "READY=1\nSTATUS=serving 2 runtimes\n");
    let list = agent.api.list().await;
    for runtime in list["runtimes"].as_array().unwrap() {
        assert_eq!(runtime["state"], "running", "{list}");
    }

    // Watchdog pings keep coming.
    while notify.count("WATCHDOG=1\n") < 3 {
        notify
            .until("a watchdog ping", |message| message == "WATCHDOG=1\n")
            .await;
    }

    // A crash shows in the status, and so does the recovery.
    send_signal(agent.runtime_pid("echo"), Signal::SIGKILL);
    notify
        .until("a STATUS saying echo restarts", |message| {
            message == "STATUS=serving 1 of 2 runtimes (echo restarting)\n"
        })
        .await;
    notify
        .until("a STATUS saying both serve again", |message| {
            message == "STATUS=serving 2 runtimes\n"
        })
        .await;

    let status = agent.stop_with(Signal::SIGTERM, DEADLINE).await;
    assert_eq!(status.code(), Some(0));
    notify
        .until("STOPPING=1", |message| message.starts_with("STOPPING=1\n"))
        .await;
    let ready_count = notify
        .seen
        .iter()
        .filter(|m| m.starts_with("READY=1"))
        .count();
    assert_eq!(ready_count, 1, "READY=1 once: {:#?}", notify.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abstract_notify_socket_works_and_a_watchdog_for_another_pid_is_left_alone() {
    let dir = TempDir::new().unwrap();
    let name = format!(
        "steward-e2e-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut notify = NotifySocket::abstract_name(&name);
    let mut options = Options::demo(dir.path());
    options.env = vec![
        ("NOTIFY_SOCKET".to_owned(), format!("@{name}")),
        // Meant for another process (pid 1): this agent must not ping.
        ("WATCHDOG_USEC".to_owned(), "100000".to_owned()),
        ("WATCHDOG_PID".to_owned(), "1".to_owned()),
    ];
    let mut agent = Agent::start(options).await;
    let ready = notify
        .until("READY=1", |message| message.starts_with("READY=1\n"))
        .await;
    assert_eq!(ready, "READY=1\nSTATUS=serving 2 runtimes\n");
    agent.signal(Signal::SIGTERM);
    notify
        .until("STOPPING=1", |message| message.starts_with("STOPPING=1\n"))
        .await;
    let status = agent.wait_exit(DEADLINE).await;
    assert_eq!(status.code(), Some(0));
    // A ping would have come at once (the interval's first tick) and
    // every 50 ms after: none came during the whole run.
    assert_eq!(notify.count("WATCHDOG=1\n"), 0, "{:#?}", notify.seen);
}
