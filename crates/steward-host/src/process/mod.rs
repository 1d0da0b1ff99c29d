//! [`ProcessHost`]: one runtime version as a supervised OS process.
//!
//! A supervisor task (a `SimpleWorker`, so a panic in it is contained)
//! starts the process, waits until it dies, stops answering its liveness
//! pings, or is stopped, and restarts it with backoff. Callers never talk to the process directly: they wait for
//! the published [`Phase`] to be `Ready` and use its connection. This module
//! must never block a tokio thread on the child (signals are sent with
//! non-blocking `killpg`, exits are awaited).

mod attempt;
mod group;
mod liveness;
mod output;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use steward_protocol::{Body, Connection, Limits, RuntimeInfoResponse};
use steward_worker::{Backoff, BackoffState, BoxFuture, SimpleWorker, Worker};
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use self::attempt::{Running, start_process};
pub use self::liveness::Liveness;
pub use self::output::{OutputLine, OutputSink, OutputStream};
use crate::{Aborted, Error, Event, ExitReason, ProcessStatus, RuntimeHost, Storage};

/// How to run one version of a runtime, and how patient to be with it.
///
/// | setting | default |
/// |---|---|
/// | `backoff` | 500 ms, ×2, up to 30 s, ±10 % jitter, reset after 60 s up |
/// | `accept_timeout` (process start → connect) | 10 s |
/// | `handshake_timeout` | 5 s |
/// | `abort_timeout` (answer to `RuntimeAbort`) | 1 s |
/// | `shutdown_grace` (after `RuntimeShutdown`, before SIGTERM) | 5 s |
/// | `term_grace` (after SIGTERM, before SIGKILL) | 5 s |
/// | `liveness` (pings while serving; see [`Liveness`]) | a ping every 5 s, 5 s to answer, hung after 3 misses |
/// | `socket_parent` (where each attempt's private socket dir is made) | the system's temp dir |
/// | `output` (where output lines go besides the log; see [`OutputSink`]) | nowhere else |
/// | `max_line_bytes` (longer output lines are cut, with a marker) | 16 KiB |
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The runtime id (host storage namespace, log field).
    pub runtime_id: Arc<str>,
    /// The version this process must report in its handshake.
    pub version: Arc<str>,
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables; nothing else is inherited except
    /// `STEWARD_HOST`.
    pub env: Vec<(String, String)>,
    /// Restart delays after a crash or a failed start.
    pub backoff: Backoff,
    /// How long the process has to connect to the host's socket.
    pub accept_timeout: Duration,
    /// How long the process has to answer the handshake.
    pub handshake_timeout: Duration,
    /// How long the process has to answer `RuntimeAbort`.
    pub abort_timeout: Duration,
    /// How long a stop waits after `RuntimeShutdown` before SIGTERM.
    pub shutdown_grace: Duration,
    /// How long a stop waits after SIGTERM before SIGKILL.
    pub term_grace: Duration,
    /// How the host finds a serving runtime hung ([`Liveness::off`] for
    /// none).
    pub liveness: Liveness,
    /// Protocol limits for the connection.
    pub limits: Limits,
    /// The directory each start attempt's private socket directory
    /// (`steward-XXXXXX`, 0700) is made in; the system's temp dir when
    /// `None`. An agent gives its runtimes one of its own, so that after a
    /// crash it can tell what was its. Unix socket paths are limited to
    /// about 100 bytes: keep it short.
    pub socket_parent: Option<PathBuf>,
    /// Where the process's stdout and stderr lines go besides the host's
    /// log (which always gets them); `None` for nowhere else.
    pub output: Option<OutputSink>,
    /// The longest output line kept, in bytes: the rest of a longer line
    /// is skipped and the line ends with ` [truncated N bytes]`.
    pub max_line_bytes: usize,
}

impl ProcessConfig {
    /// A config with the defaults of the table above.
    pub fn new(
        runtime_id: impl Into<Arc<str>>,
        version: impl Into<Arc<str>>,
        program: impl Into<PathBuf>,
    ) -> Self {
        Self {
            runtime_id: runtime_id.into(),
            version: version.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            backoff: Backoff::new(Duration::from_millis(500))
                .max(Duration::from_secs(30))
                .reset_after(Duration::from_secs(60)),
            accept_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            abort_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
            term_grace: Duration::from_secs(5),
            liveness: Liveness::default(),
            limits: Limits::default(),
            socket_parent: None,
            output: None,
            max_line_bytes: self::output::DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// Sets the arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }
}

/// Where the hosted process is, as callers see it.
#[derive(Clone)]
enum Phase {
    /// Not started yet (or between a stop and the next start).
    Idle,
    /// Starting, or restarting after a crash.
    Starting,
    /// Serving. Shared: every call takes it, and cloning what it holds
    /// (the runtime's info has strings) would cost allocations per call.
    Ready(Arc<Ready>),
    /// Stopped for good (until `start` is called again).
    Stopped,
}

struct Ready {
    connection: Connection,
    info: RuntimeInfoResponse,
    /// The process's id (`None` if it was already reaped), and when it
    /// started serving by both clocks.
    pid: Option<u32>,
    since: Instant,
    since_wall: std::time::SystemTime,
    /// Set when an abort is about to kill this process, so that the calls
    /// it cuts off fail as aborted ([`Error::Aborted`]), not as lost.
    aborted: Arc<AtomicBool>,
}

/// A runtime version hosted as a child process. See [`RuntimeHost`] for
/// the operations and [`ProcessConfig`] for the settings.
///
/// A cheap handle: clones share the process. When the last handle is
/// dropped, the process is stopped in the background.
#[derive(Clone)]
pub struct ProcessHost {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

impl std::fmt::Debug for ProcessHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessHost")
            .field("runtime", &self.shared.config.runtime_id)
            .field("version", &self.shared.config.version)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

/// Held by the handles only (the supervisor task holds `Shared`), so
/// dropping the last handle can stop the supervisor.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(supervisor) = self
            .shared
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            supervisor.kill();
        }
    }
}

struct Shared {
    config: ProcessConfig,
    storage: Arc<dyn Storage>,
    events: broadcast::Sender<Event>,
    phase: watch::Sender<Phase>,
    supervisor: Mutex<Option<SimpleWorker>>,
    /// Asks the supervisor to kill the current process and start anew.
    kill_and_restart: Notify,
}

/// Events kept for subscribers that fall behind.
const EVENT_BUFFER: usize = 256;

impl Shared {
    fn emit(&self, event: Event) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }
}

impl ProcessHost {
    /// A host for `config`, serving host storage from `storage`. Nothing
    /// runs until [`start`](RuntimeHost::start).
    pub fn new(config: ProcessConfig, storage: Arc<dyn Storage>) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (phase, _) = watch::channel(Phase::Idle);
        let shared = Arc::new(Shared {
            config,
            storage,
            events,
            phase,
            supervisor: Mutex::new(None),
            kill_and_restart: Notify::new(),
        });
        Self {
            _owner: Arc::new(Owner {
                shared: shared.clone(),
            }),
            shared,
        }
    }

    /// The configured version.
    pub fn version(&self) -> &Arc<str> {
        &self.shared.config.version
    }

    /// True while a process is serving (started and past its handshake).
    pub fn is_ready(&self) -> bool {
        matches!(*self.shared.phase.borrow(), Phase::Ready(_))
    }

    async fn ready(&self) -> Result<Arc<Ready>, Error> {
        // Callers retrying in a loop on errors must still yield, or they
        // could starve the supervisor that restarts the process.
        tokio::task::consume_budget().await;
        // Nearly always serving: no subscription needed to find that out.
        if let Some(outcome) = self.call_in(&self.shared.phase.borrow()) {
            return outcome;
        }
        let mut phase = self.shared.phase.subscribe();
        loop {
            if let Some(outcome) = self.call_in(&phase.borrow_and_update()) {
                return outcome;
            }
            if phase.changed().await.is_err() {
                return Err(Error::Stopped {
                    runtime: self.shared.config.runtime_id.clone(),
                });
            }
        }
    }

    /// What a call finds in `phase`: the process to call, a refusal, or
    /// (`None`, while starting) a reason to wait for the next phase.
    fn call_in(&self, phase: &Phase) -> Option<Result<Arc<Ready>, Error>> {
        match phase {
            Phase::Ready(ready) => Some(Ok(ready.clone())),
            Phase::Stopped | Phase::Idle => Some(Err(Error::Stopped {
                runtime: self.shared.config.runtime_id.clone(),
            })),
            Phase::Starting => None,
        }
    }

    fn supervisor(&self) -> MutexGuard<'_, Option<SimpleWorker>> {
        self.shared
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl RuntimeHost for ProcessHost {
    fn id(&self) -> &str {
        &self.shared.config.runtime_id
    }

    fn process(&self) -> Option<crate::ProcessInfo> {
        let Phase::Ready(ready) = &*self.shared.phase.borrow() else {
            return None;
        };
        Some(crate::ProcessInfo {
            pid: ready.pid?,
            started_at: ready.since_wall,
            uptime: ready.since.elapsed(),
        })
    }

    fn info(&self) -> BoxFuture<'_, Result<RuntimeInfoResponse, Error>> {
        Box::pin(async move { Ok(self.ready().await?.info.clone()) })
    }

    fn call(&self, body: Body) -> BoxFuture<'_, Result<Body, Error>> {
        Box::pin(async move {
            let ready = self.ready().await?;
            ready
                .connection
                .call(body)
                .await
                .map_err(|error| match error {
                    steward_protocol::Error::ConnectionClosed { .. }
                        if ready.aborted.load(Ordering::SeqCst) =>
                    {
                        Error::Aborted {
                            runtime: self.shared.config.runtime_id.clone(),
                        }
                    }
                    steward_protocol::Error::ConnectionClosed { reason } => Error::Lost {
                        runtime: self.shared.config.runtime_id.clone(),
                        reason: reason.to_string(),
                    },
                    other => Error::Protocol(other),
                })
        })
    }

    fn watch_events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    fn start(&self) -> Result<(), Error> {
        let mut supervisor = self.supervisor();
        if supervisor.is_some() {
            return Ok(());
        }
        self.shared.phase.send_replace(Phase::Starting);
        let shared = self.shared.clone();
        let span =
            // A root span: a runtime's logs belong to the runtime, not to
            // whichever task happened to start it.
            info_span!(parent: None, "runtime", id = %shared.config.runtime_id, version = %shared.config.version);
        *supervisor = Some(SimpleWorker::spawn(move |stop: CancellationToken| {
            async move {
                supervise(&shared, stop).await;
                Ok(())
            }
            .instrument(span)
        }));
        Ok(())
    }

    fn abort(&self, force: bool) -> BoxFuture<'_, Result<Aborted, Error>> {
        Box::pin(async move {
            let Phase::Ready(ready) = self.shared.phase.borrow().clone() else {
                return Ok(Aborted::NotRunning);
            };
            if !force {
                let asked = tokio::time::timeout(
                    self.shared.config.abort_timeout,
                    ready.connection.call(Body::RuntimeAbort),
                )
                .await;
                match asked {
                    Ok(Ok(_)) => return Ok(Aborted::Abandoned),
                    Ok(Err(error)) => warn!(%error, "runtime refused to abort; killing it"),
                    Err(_) => warn!("runtime did not answer the abort in time; killing it"),
                }
            }
            ready.aborted.store(true, Ordering::SeqCst);
            // Stop handing out the doomed connection at once: calls made
            // from now on wait for the restarted process.
            self.shared.phase.send_replace(Phase::Starting);
            self.shared.kill_and_restart.notify_one();
            Ok(Aborted::Killed)
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let supervisor = self.supervisor().take();
            if let Some(supervisor) = supervisor {
                supervisor.kill();
                if let Err(error) = supervisor.wait().await {
                    warn!(%error, "runtime supervisor ended with an error");
                }
            }
            self.shared.phase.send_replace(Phase::Stopped);
        })
    }
}

/// How long a process whose connection ended gets to exit by itself
/// before the host kills it: a crash usually closes the socket a moment
/// before the exit is reaped, and one cause must get one report (crashed,
/// with its status), not whichever of the two the host noticed first.
const EXIT_AFTER_HANG_UP: Duration = Duration::from_millis(250);

/// What ended a serving process.
enum End {
    /// The host is stopping it for good.
    Stop,
    /// An abort asked for a kill and a fresh start.
    Restart,
    /// The process exited by itself.
    Exited(ProcessStatus),
    /// The connection ended, with this cause, while the process lived.
    HungUp(Arc<str>),
    /// It left this many liveness pings in a row unanswered.
    Hung(u32),
}

/// Starts, watches and restarts the process until `stop` fires.
async fn supervise(shared: &Shared, stop: CancellationToken) {
    let mut backoff = shared.config.backoff.start();
    loop {
        shared.phase.send_replace(Phase::Starting);
        let attempt = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            attempt = start_process(&shared.config, shared.storage.clone()) => attempt,
        };
        let delay = match attempt {
            Ok(running) => match serve(shared, running, &stop, &mut backoff).await {
                Some(delay) => delay,
                None => break,
            },
            Err(error) => {
                warn!(%error, "runtime failed to start");
                shared.emit(Event::FailedToStart {
                    version: shared.config.version.clone(),
                    error,
                });
                backoff.next_delay(None)
            }
        };
        if !delay.is_zero() {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
    shared.phase.send_replace(Phase::Stopped);
}

/// Publishes a started process, waits until it ends, and reports how.
/// Returns the delay before the next start, or `None` once stopped for
/// good.
async fn serve(
    shared: &Shared,
    mut running: Running,
    stop: &CancellationToken,
    backoff: &mut BackoffState,
) -> Option<Duration> {
    let config = &shared.config;
    let started_at = Instant::now();
    info!(pid = running.pid(), "runtime started");
    shared.phase.send_replace(Phase::Ready(Arc::new(Ready {
        connection: running.connection.clone(),
        info: running.info.clone(),
        pid: running.pid(),
        since: started_at,
        since_wall: std::time::SystemTime::now(),
        aborted: Arc::default(),
    })));
    shared.emit(Event::Started {
        version: config.version.clone(),
        info: running.info.clone(),
    });
    let connection = running.connection.clone();
    let end = tokio::select! {
        biased;
        () = stop.cancelled() => End::Stop,
        () = shared.kill_and_restart.notified() => End::Restart,
        status = running.exited() => End::Exited(status),
        cause = connection.closed() => End::HungUp(cause),
        missed = liveness::hung(&connection, &config.liveness) => End::Hung(missed),
    };
    shared.phase.send_replace(Phase::Starting);
    let (reason, delay) = match end {
        End::Stop => {
            let status = running.stop_gracefully(config).await;
            // A stop the host asked for stays a stop: the runtime's failing
            // exit is worth a look, not a restart or a crash count.
            if !status.success() {
                warn!(%status, "runtime exited with a failure status after the host stopped it; reported as stopped");
            }
            (ExitReason::Stopped { status }, None)
        }
        // A deliberate kill restarts at once.
        End::Restart => {
            let status = running.kill().await;
            (ExitReason::Aborted { status }, Some(Duration::ZERO))
        }
        End::Exited(status) => {
            let reason = ExitReason::Crashed { status };
            (reason, Some(backoff.next_delay(Some(started_at.elapsed()))))
        }
        End::Hung(missed) => {
            // Calls in flight learn why, not just that the host killed it.
            let pings = if missed == 1 { "ping" } else { "pings" };
            running.connection.close(&format!(
                "the runtime hung ({missed} {pings} unanswered); the host kills it"
            ));
            let status = running.kill().await;
            let reason = ExitReason::Hung { missed, status };
            (reason, Some(backoff.next_delay(Some(started_at.elapsed()))))
        }
        End::HungUp(cause) => {
            let exited = tokio::time::timeout(EXIT_AFTER_HANG_UP, running.exited()).await;
            let reason = match exited {
                Ok(status) => ExitReason::Crashed { status },
                Err(_) => ExitReason::ConnectionLost {
                    cause,
                    status: running.kill().await,
                },
            };
            (reason, Some(backoff.next_delay(Some(started_at.elapsed()))))
        }
    };
    if reason.is_failure() {
        // Calls in flight learn what happened to the process, not that
        // the host killed it (which is only the clean-up of its group).
        // The first reason a connection gets sticks.
        running.connection.close(&format!("the runtime {reason}"));
        warn!(%reason, "runtime stopped unexpectedly");
    }
    // Whatever is left of the group goes with the process.
    running.kill().await;
    shared.emit(Event::Stopped {
        version: config.version.clone(),
        reason,
    });
    delay
}
