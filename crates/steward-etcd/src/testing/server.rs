//! [`EtcdServer`]: one real etcd process for a test, on free loopback
//! ports, with its own temporary data dir; killed and reaped on drop.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a start may take before it is a failure.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running etcd server of a test.
#[derive(Debug)]
pub struct EtcdServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// Finds the etcd binary: `STEWARD_ETCD_BIN`, else `etcd` on `PATH`.
fn find_binary() -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("STEWARD_ETCD_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(missing(&format!(
                "STEWARD_ETCD_BIN={} is not a file",
                path.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| missing("no etcd on PATH"))
}

fn missing(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "{what}: the fleet tests need a real etcd server; run scripts/etcd-deps (installs Debian's etcd-server package), or set STEWARD_ETCD_BIN to an etcd binary"
        ),
    )
}

/// A loopback port free right now.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdServer {
    /// Starts etcd and waits until it answers (`/health` says true).
    /// Fails, naming `scripts/etcd-deps`, if there is no etcd binary.
    pub fn start() -> io::Result<EtcdServer> {
        Self::start_binary(find_binary()?)
    }

    /// [`start`](Self::start) with a given binary.
    pub fn start_binary(binary: impl Into<PathBuf>) -> io::Result<EtcdServer> {
        let binary = binary.into();
        if !binary.is_file() {
            return Err(missing(&format!("no etcd binary at {}", binary.display())));
        }
        let mut last = None;
        // A port found free may be taken before etcd binds it (tests run
        // in parallel): try again on others.
        for _ in 0..5 {
            let mut server = EtcdServer {
                binary: binary.clone(),
                dir: tempfile::Builder::new().prefix("steward-etcd-").tempdir()?,
                client_port: free_port()?,
                peer_port: free_port()?,
                child: None,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client address, `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The etcd process's id while it runs, for a test driven from another
    /// process (a browser test's script) that freezes it itself.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data dir (kept across [`restart`](Self::restart)).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The end of etcd's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(&self.binary)
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            // One member on loopback: short ticks make the start and a
            // restart quick. ETCD_UNSUPPORTED_ARCH lets 3.4 run on arm64.
            .args(["--heartbeat-interval=20", "--election-timeout=200"])
            .args(["--logger=zap", "--log-level=warn"])
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "etcd exited at start ({status}); its log ends:\n{}",
                    self.log_tail()
                )));
            }
            if healthy(&self.address()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(io::Error::other(format!(
                    "etcd did not answer within {START_TIMEOUT:?}; its log ends:\n{}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child
            && let Ok(pid) = i32::try_from(child.id())
        {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Freezes etcd (`SIGSTOP`): its connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Unfreezes it (`SIGCONT`).
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// Kills it (`SIGKILL`) and reaps it. The data dir stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same data dir and ports (killing it first if
    /// it runs), and waits until it answers.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }
}

/// Whether etcd at `address` says it is healthy (a leader, and answering).
fn healthy(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

/// The server [`EtcdServer::shared`] hands out while someone holds it.
static SHARED: Mutex<Weak<EtcdServer>> = Mutex::new(Weak::new());

/// Numbers [`unique_prefix`]es within a process.
static PREFIXES: AtomicU64 = AtomicU64::new(0);

impl EtcdServer {
    /// One server for the tests of a process that only read and write keys
    /// (never stop or freeze it), each under its own [`unique_prefix`]:
    /// started on first use, stopped when the last handle is dropped, and
    /// started anew by the next call. Saves a start per test; a test that
    /// pauses, kills or restarts etcd starts its own.
    pub fn shared() -> io::Result<Arc<EtcdServer>> {
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(server) = shared.upgrade() {
            return Ok(server);
        }
        let server = Arc::new(EtcdServer::start()?);
        *shared = Arc::downgrade(&server);
        Ok(server)
    }
}

/// A key prefix no other test of this run (in any process) uses:
/// `/test-<pid>-<n>-<name>/`.
pub fn unique_prefix(name: &str) -> String {
    let n = PREFIXES.fetch_add(1, Ordering::Relaxed);
    format!("/test-{}-{n}-{name}/", std::process::id())
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}
