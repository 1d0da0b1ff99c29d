//! Test support for code that drives [`RuntimeHost`]s: [`FakeRuntime`],
//! an in-process runtime host whose behaviour a test scripts (start delay,
//! start failures, call latency, held calls, a stop that hangs), and
//! [`FakeLog`], the order of what a test's fakes did.
//!
//! Behind the `test-util` feature. It behaves like the process host where
//! it matters to callers (see [`FakeRuntime`]) and must never start a
//! process: tests that need a real one use the process host.
//!
//! Timing is virtual: delays are `tokio::time` sleeps, meant for tests
//! under paused time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a poisoned lock or a broken invariant should fail the test loudly"
)]

use std::collections::BTreeSet;
use std::future::pending;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use steward_protocol::{Body, CallResponse, PROTOCOL_VERSION, RuntimeInfoResponse, Value};
use steward_worker::BoxFuture;
use tokio::sync::{broadcast, watch};
use tokio::time::timeout;

use crate::{Aborted, Error, Event, ExitReason, ProcessStatus, RuntimeHost, StartError};

/// How long the waits of this module wait at most (virtual time).
const WAIT: Duration = Duration::from_secs(3600);

/// The runtime id of [`FakeRuntime::new`].
pub const FAKE_ID: &str = "rt";

/// Where a fake runtime is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeState {
    /// Never started.
    Idle,
    /// `start()` called, not serving yet (or failing to start, retrying).
    Starting,
    /// Serving.
    Started,
    /// Stopped (until started again).
    Stopped,
}

/// What all fakes of a test share: the order of their starts, stops and
/// finished calls, and how many were starting at once.
#[derive(Debug, Clone, Default)]
pub struct FakeLog(Arc<Mutex<LogInner>>);

#[derive(Debug, Default)]
struct LogInner {
    /// `start V`, `started V`, `failed V`, `stop V`, `call-done V`.
    entries: Vec<String>,
    /// Versions between `start()` and `Started`/`FailedToStart`/stop.
    starting: BTreeSet<String>,
    max_starting: usize,
    /// Versions started and not stopped.
    running: BTreeSet<String>,
    max_running: usize,
}

impl FakeLog {
    fn inner(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.0.lock().unwrap()
    }

    /// Adds an entry of the test's own (to order it among the fakes').
    pub fn push(&self, entry: String) {
        self.inner().entries.push(entry);
    }

    /// Every entry so far: `start V`, `started V`, `failed V`, `stop V`,
    /// `call-done V`, and the test's own.
    pub fn entries(&self) -> Vec<String> {
        self.inner().entries.clone()
    }

    /// The entries starting with one of `prefixes` (`"start "`, ...).
    pub fn only(&self, prefixes: &[&str]) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|e| prefixes.iter().any(|p| e.starts_with(p)))
            .collect()
    }

    /// Where `entry` first appears.
    pub fn position(&self, entry: &str) -> Option<usize> {
        self.entries().iter().position(|e| e == entry)
    }

    /// The most versions that were starting at the same time.
    pub fn max_starting(&self) -> usize {
        self.inner().max_starting
    }

    /// The most versions that were started (and not stopped) at once.
    pub fn max_running(&self) -> usize {
        self.inner().max_running
    }
}

/// An in-process [`RuntimeHost`] whose behaviour each test scripts.
///
/// Like the process host: `start()` is idempotent and (re)starts a stopped
/// runtime; `info()`/`call()` wait while it starts and fail with `Stopped`
/// when it is not started; a call in flight when the runtime stops fails
/// with `Lost`; `Stopped` is emitted only after `Started`; a runtime that
/// fails to start keeps "retrying" (stays starting) until stopped.
pub struct FakeRuntime {
    me: Weak<FakeRuntime>,
    id: String,
    version: Arc<str>,
    log: FakeLog,
    state: watch::Sender<FakeState>,
    /// Bumped by every effective start, so a stale start task does nothing.
    generation: AtomicU64,
    events: broadcast::Sender<Event>,
    /// How long a start takes (paused time).
    start_delay: Mutex<Duration>,
    /// Starts fail (`FailedToStart`) instead of serving.
    fail_start: AtomicBool,
    /// How long a call takes (paused time).
    call_latency: Mutex<Duration>,
    /// While true, calls block (after they arrived) until released.
    hold: watch::Sender<bool>,
    /// `stop()` never returns (after it stopped the runtime).
    stop_hangs: AtomicBool,
    start_calls: AtomicUsize,
    starts: AtomicUsize,
    stop_calls: AtomicUsize,
    stops: AtomicUsize,
    aborts: Mutex<Vec<bool>>,
    /// Calls that reached the running runtime.
    calls: watch::Sender<usize>,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRuntime")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl FakeRuntime {
    /// A fake of runtime [`FAKE_ID`] at `version`, logging to `log`.
    pub fn new(version: &str, log: &FakeLog) -> Arc<Self> {
        Self::with_id(FAKE_ID, version, log)
    }

    /// The version it is.
    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    /// A fake of runtime `id` at `version`, logging to `log`.
    pub fn with_id(id: &str, version: &str, log: &FakeLog) -> Arc<Self> {
        Arc::new_cyclic(|me| FakeRuntime {
            me: me.clone(),
            id: id.to_owned(),
            version: Arc::from(version),
            log: log.clone(),
            state: watch::channel(FakeState::Idle).0,
            generation: AtomicU64::new(0),
            // Big enough that the aggregate's forwarder never lags on it.
            events: broadcast::channel(4096).0,
            start_delay: Mutex::new(Duration::ZERO),
            fail_start: AtomicBool::new(false),
            call_latency: Mutex::new(Duration::ZERO),
            hold: watch::channel(false).0,
            stop_hangs: AtomicBool::new(false),
            start_calls: AtomicUsize::new(0),
            starts: AtomicUsize::new(0),
            stop_calls: AtomicUsize::new(0),
            stops: AtomicUsize::new(0),
            aborts: Mutex::new(Vec::new()),
            calls: watch::channel(0).0,
        })
    }

    /// Itself as the trait object aggregates hold.
    pub fn host(self: &Arc<Self>) -> Arc<dyn RuntimeHost> {
        self.clone()
    }

    /// Starts take `delay` from now on.
    pub fn start_delay(self: &Arc<Self>, delay: Duration) -> Arc<Self> {
        *self.start_delay.lock().unwrap() = delay;
        self.clone()
    }

    /// Starts fail from now on (`FailedToStart`, then "retrying").
    pub fn failing(self: &Arc<Self>) -> Arc<Self> {
        self.fail_start.store(true, Ordering::SeqCst);
        self.clone()
    }

    /// Calls take `latency` from now on.
    pub fn call_latency(self: &Arc<Self>, latency: Duration) -> Arc<Self> {
        *self.call_latency.lock().unwrap() = latency;
        self.clone()
    }

    /// Calls block until [`release`](Self::release) (forever if never).
    pub fn holding(self: &Arc<Self>) -> Arc<Self> {
        self.hold.send_replace(true);
        self.clone()
    }

    /// Lets held calls go on (see [`holding`](Self::holding)).
    pub fn release(&self) {
        self.hold.send_replace(false);
    }

    /// `stop()` never returns from now on (after it stopped the runtime).
    pub fn stop_hanging(self: &Arc<Self>) -> Arc<Self> {
        self.stop_hangs.store(true, Ordering::SeqCst);
        self.clone()
    }

    /// Where it is now.
    pub fn state(&self) -> FakeState {
        *self.state.borrow()
    }

    /// Effective starts (not counting `start()` on a started runtime).
    pub fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    /// Calls of `start()`, effective or not.
    pub fn start_calls(&self) -> usize {
        self.start_calls.load(Ordering::SeqCst)
    }

    /// Effective stops (of a starting or started runtime).
    pub fn stops(&self) -> usize {
        self.stops.load(Ordering::SeqCst)
    }

    /// Calls of `stop()`, effective or not.
    pub fn stop_calls(&self) -> usize {
        self.stop_calls.load(Ordering::SeqCst)
    }

    /// The `force` flags of the aborts it got, in order.
    pub fn aborts(&self) -> Vec<bool> {
        self.aborts.lock().unwrap().clone()
    }

    /// Calls that reached it while it was started.
    pub fn calls(&self) -> usize {
        *self.calls.borrow()
    }

    /// Receivers of its events alive now.
    pub fn subscribers(&self) -> usize {
        self.events.receiver_count()
    }

    /// Waits (bounded) until the runtime is in `state`.
    pub async fn wait_state(&self, state: FakeState) {
        let mut rx = self.state.subscribe();
        timeout(WAIT, rx.wait_for(|s| *s == state))
            .await
            .unwrap_or_else(|_| panic!("version {} never reached {state:?}", self.version))
            .unwrap();
    }

    /// Waits (bounded) until `n` calls reached the runtime.
    pub async fn wait_calls(&self, n: usize) {
        let mut rx = self.calls.subscribe();
        timeout(WAIT, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("version {} never got {n} calls", self.version))
            .unwrap();
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// An `Updated` event, as a running runtime might send.
    pub fn emit_updated(&self, what: &str) {
        self.emit(Event::Updated {
            version: self.version.clone(),
            what: what.to_owned(),
        });
    }

    fn info_response(&self) -> RuntimeInfoResponse {
        RuntimeInfoResponse {
            protocol_version: PROTOCOL_VERSION,
            runtime_version: self.version.to_string(),
            features: Vec::new(),
        }
    }

    fn stopped_error(&self) -> Error {
        Error::Stopped {
            runtime: Arc::from(self.id.as_str()),
        }
    }

    /// Waits while starting; `Stopped` unless started.
    async fn ready(&self) -> Result<(), Error> {
        let mut rx = self.state.subscribe();
        loop {
            match *rx.borrow_and_update() {
                FakeState::Started => return Ok(()),
                FakeState::Idle | FakeState::Stopped => return Err(self.stopped_error()),
                FakeState::Starting => {}
            }
            if rx.changed().await.is_err() {
                return Err(self.stopped_error());
            }
        }
    }

    /// The end of a start attempt (run by the start task).
    fn finish_start(&self, generation: u64) {
        if self.generation.load(Ordering::SeqCst) != generation
            || self.state() != FakeState::Starting
        {
            return;
        }
        let v = &self.version;
        {
            let mut log = self.log.inner();
            log.starting.remove(&**v);
            if self.fail_start.load(Ordering::SeqCst) {
                log.entries.push(format!("failed {v}"));
            } else {
                log.entries.push(format!("started {v}"));
            }
        }
        if self.fail_start.load(Ordering::SeqCst) {
            // Stays `Starting`: the process host keeps retrying.
            self.emit(Event::FailedToStart {
                version: v.clone(),
                error: StartError::Spawn {
                    program: PathBuf::from("<fake runtime>"),
                    reason: "scripted start failure".to_owned(),
                },
            });
        } else {
            self.state.send_replace(FakeState::Started);
            self.emit(Event::Started {
                version: v.clone(),
                info: self.info_response(),
            });
        }
    }
}

impl RuntimeHost for FakeRuntime {
    fn id(&self) -> &str {
        &self.id
    }

    fn info(&self) -> BoxFuture<'_, Result<RuntimeInfoResponse, Error>> {
        Box::pin(async move {
            self.ready().await?;
            Ok(self.info_response())
        })
    }

    fn call(&self, body: Body) -> BoxFuture<'_, Result<Body, Error>> {
        Box::pin(async move {
            assert!(
                matches!(body, Body::RuntimeCallRequest(_)),
                "unexpected body {body:?}"
            );
            self.ready().await?;
            self.calls.send_modify(|c| *c += 1);
            let mut state = self.state.subscribe();
            let mut hold = self.hold.subscribe();
            let latency = *self.call_latency.lock().unwrap();
            let work = async {
                let _ = hold.wait_for(|held| !*held).await;
                if !latency.is_zero() {
                    tokio::time::sleep(latency).await;
                }
            };
            tokio::select! {
                () = work => {}
                _ = state.wait_for(|s| *s != FakeState::Started) => {
                    return Err(Error::Lost {
                        runtime: Arc::from(self.id.as_str()),
                        reason: "stopped during the call".to_owned(),
                    });
                }
            }
            self.log.push(format!("call-done {}", self.version));
            Ok(Body::RuntimeCallResponse(CallResponse {
                result: Value::encode(&*self.version).unwrap(),
            }))
        })
    }

    fn watch_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn start(&self) -> Result<(), Error> {
        self.start_calls.fetch_add(1, Ordering::SeqCst);
        if matches!(self.state(), FakeState::Starting | FakeState::Started) {
            return Ok(());
        }
        self.starts.fetch_add(1, Ordering::SeqCst);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.state.send_replace(FakeState::Starting);
        {
            let mut log = self.log.inner();
            log.entries.push(format!("start {}", self.version));
            log.starting.insert(self.version.to_string());
            log.max_starting = log.max_starting.max(log.starting.len());
            log.running.insert(self.version.to_string());
            log.max_running = log.max_running.max(log.running.len());
        }
        let me = self.me.clone();
        let delay = *self.start_delay.lock().unwrap();
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(me) = me.upgrade() {
                me.finish_start(generation);
            }
        });
        Ok(())
    }

    fn abort(&self, force: bool) -> BoxFuture<'_, Result<Aborted, Error>> {
        Box::pin(async move {
            self.aborts.lock().unwrap().push(force);
            Ok(if force {
                Aborted::Killed
            } else {
                Aborted::Abandoned
            })
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop_calls.fetch_add(1, Ordering::SeqCst);
            let previous = self.state();
            if matches!(previous, FakeState::Starting | FakeState::Started) {
                self.stops.fetch_add(1, Ordering::SeqCst);
                self.state.send_replace(FakeState::Stopped);
                {
                    let mut log = self.log.inner();
                    log.entries.push(format!("stop {}", self.version));
                    log.starting.remove(&*self.version);
                    log.running.remove(&*self.version);
                }
                if previous == FakeState::Started {
                    self.emit(Event::Stopped {
                        version: self.version.clone(),
                        reason: ExitReason::Stopped {
                            status: ProcessStatus::Code(0),
                        },
                    });
                }
            }
            if self.stop_hangs.load(Ordering::SeqCst) {
                pending::<()>().await;
            }
        })
    }
}
