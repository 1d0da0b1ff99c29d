//! `steward-test-runtime`: the runtime process the host's own tests start.
//! Built only with the `test-util` feature (cargo builds it for the host's
//! integration tests, which find it through `CARGO_BIN_EXE_*`).
//!
//! It speaks the protocol directly (not through the SDK, which is a layer
//! above the host), so a test can make it behave well or break the
//! protocol in one chosen way:
//!
//! ```text
//! steward-test-runtime [--version V] [--mode MODE] [--max-concurrent N]
//!                      [--max-queued N] [--shutdown-status N]
//! ```
//!
//! `--max-concurrent` and `--max-queued` set its protocol `Limits` (so that
//! a test can saturate it with a few calls); `--shutdown-status N` makes it
//! exit with status N after a `RuntimeShutdown`, once the host hangs up.
//!
//! | mode | behaviour |
//! |---|---|
//! | `serve` (default) | a well-behaved runtime with the methods below |
//! | `never-connect` | never connects to the host |
//! | `garbage` | sends a frame of bytes that are not CBOR |
//! | `oversized` | announces a 64 MiB frame |
//! | `truncated` | sends the start of a frame, hangs up, stays alive |
//! | `wrong-protocol` | answers the handshake with protocol major 99 |
//! | `crash-in-handshake` | exits (status 3) when the handshake arrives |
//! | `spawn-child` | starts a grandchild (`sleep 3600`), then serves |
//!
//! | method | args | result |
//! |---|---|---|
//! | `echo` | anything | the args |
//! | `version` | — | the version string |
//! | `sleep` | `{"ms": N}` | `null` after N ms, or an `aborted` error on abort |
//! | `sleeps` | — | `{"started": N, "running": M}`: `sleep` calls begun, and not yet ended (answered, aborted or dropped) |
//! | `pings` | — | how many `RuntimePing`s it has answered |
//! | `pid` | — | its process id |
//! | `fail` | `{"code": N, "message": S}` | an error `test`/N/S |
//! | `crash` | — | exits with status 101 |
//! | `big` | `{"bytes": N}` | a byte string of N bytes |
//! | `put` | `{"key": S, "value": V}` | stores V in host storage under `kv/S` |
//! | `get` | `{"key": S}` | the stored value, or `null` |
//! | `delete` | `{"key": S}` | `null` |
//! | `list` | — | the stored keys (without `kv/`), sorted |
//! | `print` | `{"stream": "stdout"\|"stderr", "text": S, "raw": [bytes], "times": N}` | `null` once it wrote S, then the raw bytes (which need not be UTF-8), then a newline, N times (default 1) to the stream |
//!
//! Never use it for anything but tests: it exits on bad arguments with a
//! panic message, not a friendly error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fixture: failing loudly is what a test needs"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use steward_protocol::{
    Body, CallRequest, CallResponse, Connection, ErrorBody, HOST_SOCKET_ENV, Handler, Limits,
    PROTOCOL_VERSION, Peer, ProtocolVersion, RuntimeInfoResponse, StorageEntry, StorageKey, Value,
};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The module of this runtime's error answers.
const MODULE: &str = "test";

/// Where host storage keys of `put`/`get`/`delete`/`list` live.
const PREFIX: &str = "kv/";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    NeverConnect,
    Garbage,
    Oversized,
    Truncated,
    WrongProtocol,
    CrashInHandshake,
    SpawnChild,
}

struct Args {
    version: String,
    mode: Mode,
    limits: Limits,
    shutdown_status: Option<i32>,
}

fn parse_args() -> Args {
    let mut args = Args {
        version: "1.0.0".to_owned(),
        mode: Mode::Serve,
        limits: Limits::default(),
        shutdown_status: None,
    };
    let number = |flag: &str, value: &str| -> usize {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{flag} needs a number, not {value:?}"))
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--version" => args.version = value,
            "--max-concurrent" => args.limits.max_concurrent_requests = number(&flag, &value),
            "--max-queued" => args.limits.max_queued_requests = number(&flag, &value),
            "--shutdown-status" => {
                args.shutdown_status = Some(i32::try_from(number(&flag, &value)).unwrap());
            }
            "--mode" => {
                args.mode = match value.as_str() {
                    "serve" => Mode::Serve,
                    "never-connect" => Mode::NeverConnect,
                    "garbage" => Mode::Garbage,
                    "oversized" => Mode::Oversized,
                    "truncated" => Mode::Truncated,
                    "wrong-protocol" => Mode::WrongProtocol,
                    "crash-in-handshake" => Mode::CrashInHandshake,
                    "spawn-child" => Mode::SpawnChild,
                    other => panic!("unknown mode {other:?}"),
                }
            }
            other => panic!("unknown argument {other:?}"),
        }
    }
    args
}

struct Runtime {
    version: String,
    protocol: ProtocolVersion,
    crash_on_handshake: bool,
    /// The abort signal of calls in flight; replaced after each abort.
    aborted: Mutex<CancellationToken>,
    shutdown: Notify,
    /// `sleep` calls begun.
    sleeps_started: AtomicU64,
    /// `sleep` calls begun and not yet ended, however they end.
    sleeps_running: AtomicU64,
    /// Pings answered.
    pings: AtomicU64,
}

/// Counts a `sleep` as running until it is dropped: answered, aborted, or
/// cancelled by the host (its future dropped by the connection).
struct Sleeping<'a>(&'a AtomicU64);

impl<'a> Sleeping<'a> {
    fn enter(running: &'a AtomicU64) -> Self {
        running.fetch_add(1, Ordering::SeqCst);
        Self(running)
    }
}

impl Drop for Sleeping<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn error(code: u32, message: impl Into<String>) -> Body {
    Body::Error(ErrorBody::new(MODULE, code, message))
}

/// The field `name` of `args` as `T`, or an error answer.
fn field<T: serde::de::DeserializeOwned>(args: &Value, name: &str) -> Result<T, Body> {
    let missing = || error(400, format!("missing field {name:?}"));
    let value = args
        .field(name)
        .map_err(|_| missing())?
        .ok_or_else(missing)?;
    value
        .decode()
        .map_err(|e| error(400, format!("field {name:?}: {e}")))
}

/// The field `name` of `args` as `T`, if given.
fn optional<T: serde::de::DeserializeOwned>(args: &Value, name: &str) -> Result<Option<T>, Body> {
    match args.field(name) {
        Ok(Some(value)) => value
            .decode()
            .map(Some)
            .map_err(|e| error(400, format!("field {name:?}: {e}"))),
        _ => Ok(None),
    }
}

/// A CBOR byte string, through serde.
struct ByteString(Vec<u8>);

impl serde::Serialize for ByteString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl Runtime {
    async fn call(&self, call: CallRequest, host: &Peer) -> Result<Value, Body> {
        let args = call.args;
        match call.method.as_str() {
            "echo" => Ok(args),
            "version" => Ok(Value::encode(&self.version).unwrap()),
            "sleep" => {
                let ms: u64 = field(&args, "ms")?;
                self.sleeps_started.fetch_add(1, Ordering::SeqCst);
                let _running = Sleeping::enter(&self.sleeps_running);
                let aborted = self
                    .aborted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(Value::null()),
                    () = aborted.cancelled() => Err(error(ErrorBody::CODE_ABORTED, "sleep aborted")),
                }
            }
            "sleeps" => {
                let counts = std::collections::BTreeMap::from([
                    ("started", self.sleeps_started.load(Ordering::SeqCst)),
                    ("running", self.sleeps_running.load(Ordering::SeqCst)),
                ]);
                Ok(Value::encode(&counts).unwrap())
            }
            "pings" => Ok(Value::encode(&self.pings.load(Ordering::SeqCst)).unwrap()),
            "pid" => Ok(Value::encode(&std::process::id()).unwrap()),
            "fail" => Err(error(
                field(&args, "code")?,
                field::<String>(&args, "message")?,
            )),
            "crash" => std::process::exit(101),
            "big" => {
                let bytes: usize = field(&args, "bytes")?;
                Ok(Value::encode(&ByteString(vec![0xab; bytes])).unwrap())
            }
            "put" => {
                let key: String = field(&args, "key")?;
                let value = args
                    .field("value")
                    .ok()
                    .flatten()
                    .ok_or_else(|| error(400, "missing field \"value\""))?;
                let entry = StorageEntry {
                    key: format!("{PREFIX}{key}"),
                    value,
                };
                storage(host, Body::HostStorageSet(entry)).await?;
                Ok(Value::null())
            }
            "get" => {
                let key = StorageKey {
                    key: format!("{PREFIX}{}", field::<String>(&args, "key")?),
                };
                match storage(host, Body::HostStorageGet(key)).await? {
                    Body::HostStorageGetResponse(found) => {
                        Ok(found.value.unwrap_or_else(Value::null))
                    }
                    other => Err(error(502, format!("get answered {}", other.name()))),
                }
            }
            "delete" => {
                let key = StorageKey {
                    key: format!("{PREFIX}{}", field::<String>(&args, "key")?),
                };
                storage(host, Body::HostStorageDelete(key)).await?;
                Ok(Value::null())
            }
            "list" => {
                let prefix = StorageKey {
                    key: PREFIX.to_owned(),
                };
                match storage(host, Body::HostStorageList(prefix)).await? {
                    Body::HostStorageListResponse(found) => {
                        let keys: Vec<&str> = found
                            .keys
                            .iter()
                            .filter_map(|key| key.strip_prefix(PREFIX))
                            .collect();
                        Ok(Value::encode(&keys).unwrap())
                    }
                    other => Err(error(502, format!("list answered {}", other.name()))),
                }
            }
            "print" => {
                let stream: String = field(&args, "stream")?;
                let text: String = field(&args, "text")?;
                let raw: Vec<u8> = optional(&args, "raw")?.unwrap_or_default();
                let times: usize = optional(&args, "times")?.unwrap_or(1);
                let mut line = text.into_bytes();
                line.extend_from_slice(&raw);
                line.push(b'\n');
                let written = match stream.as_str() {
                    "stdout" => write_times(&mut std::io::stdout().lock(), &line, times),
                    "stderr" => write_times(&mut std::io::stderr().lock(), &line, times),
                    other => return Err(error(400, format!("no stream {other:?}"))),
                };
                written
                    .map(|()| Value::null())
                    .map_err(|e| error(500, format!("cannot write to {stream}: {e}")))
            }
            other => Err(error(404, format!("no method {other:?}"))),
        }
    }
}

/// Writes `line` `times` times, then flushes.
fn write_times(out: &mut impl std::io::Write, line: &[u8], times: usize) -> std::io::Result<()> {
    for _ in 0..times {
        out.write_all(line)?;
    }
    out.flush()
}

async fn storage(host: &Peer, request: Body) -> Result<Body, Body> {
    host.call(request)
        .await
        .map_err(|e| error(503, format!("host storage: {e}")))
}

impl Handler for Runtime {
    async fn handle(&self, request: Body, host: &Peer) -> Body {
        match request {
            Body::RuntimeInfoRequest(_) => {
                if self.crash_on_handshake {
                    std::process::exit(3);
                }
                Body::RuntimeInfoResponse(RuntimeInfoResponse {
                    protocol_version: self.protocol,
                    runtime_version: self.version.clone(),
                    features: Vec::new(),
                })
            }
            Body::RuntimePing => {
                self.pings.fetch_add(1, Ordering::SeqCst);
                Body::Empty
            }
            Body::RuntimeAbort => {
                std::mem::take(&mut *self.aborted.lock().unwrap_or_else(PoisonError::into_inner))
                    .cancel();
                Body::Empty
            }
            Body::RuntimeShutdown => {
                self.shutdown.notify_one();
                Body::Empty
            }
            Body::RuntimeCallRequest(call) => match self.call(call, host).await {
                Ok(result) => Body::RuntimeCallResponse(CallResponse { result }),
                Err(error) => error,
            },
            other => error(
                ErrorBody::CODE_UNSUPPORTED,
                format!("no {} here", other.name()),
            ),
        }
    }
}

async fn connect() -> UnixStream {
    let path = std::env::var_os(HOST_SOCKET_ENV).expect("started by a host");
    UnixStream::connect(path).await.expect("host socket")
}

/// Writes `bytes` to the host, then lives on without reading (with the
/// connection open, or hung up).
async fn send_and_linger(bytes: &[u8], hang_up: bool) {
    let mut stream = connect().await;
    let _ = stream.write_all(bytes).await;
    let _open = (!hang_up).then_some(stream);
    std::future::pending::<()>().await;
}

async fn run(args: Args) {
    match args.mode {
        Mode::NeverConnect => std::future::pending::<()>().await,
        Mode::Garbage => {
            let junk = [0xffu8, 0x1c, 0x1d, 0x1e, 0x00, 0x42, 0x13, 0x37];
            let mut frame = u32::try_from(junk.len()).unwrap().to_be_bytes().to_vec();
            frame.extend_from_slice(&junk);
            send_and_linger(&frame, false).await;
        }
        Mode::Oversized => {
            let mut frame = (64u32 << 20).to_be_bytes().to_vec();
            frame.extend_from_slice(&[0u8; 1024]);
            send_and_linger(&frame, false).await;
        }
        Mode::Truncated => {
            let mut frame = 100u32.to_be_bytes().to_vec();
            frame.extend_from_slice(&[0x83, 0x01, 0x01, 0x82]);
            send_and_linger(&frame, true).await;
        }
        Mode::Serve | Mode::WrongProtocol | Mode::CrashInHandshake | Mode::SpawnChild => {
            let _grandchild = (args.mode == Mode::SpawnChild).then(|| {
                tokio::process::Command::new("sleep")
                    .arg("3600")
                    .spawn()
                    .expect("spawn a grandchild")
            });
            let runtime = Runtime {
                version: args.version,
                protocol: if args.mode == Mode::WrongProtocol {
                    ProtocolVersion {
                        major: 99,
                        minor: 0,
                    }
                } else {
                    PROTOCOL_VERSION
                },
                crash_on_handshake: args.mode == Mode::CrashInHandshake,
                aborted: Mutex::new(CancellationToken::new()),
                shutdown: Notify::new(),
                sleeps_started: AtomicU64::new(0),
                sleeps_running: AtomicU64::new(0),
                pings: AtomicU64::new(0),
            };
            let shut_down = serve(connect().await, runtime, args.limits).await;
            if let (true, Some(status)) = (shut_down, args.shutdown_status) {
                std::process::exit(status);
            }
        }
    }
}

/// Serves until the host hangs up (or, after a shutdown request, at most
/// 10 s more); true if the host asked it to shut down.
async fn serve(stream: UnixStream, runtime: Runtime, limits: Limits) -> bool {
    let (read, write) =
        steward_protocol::unix_socket::split(stream).expect("register the host socket");
    let runtime = std::sync::Arc::new(runtime);
    let connection = Connection::start(read, write, Shared(runtime.clone()), limits);
    tokio::select! {
        _ = connection.closed() => false,
        () = runtime.shutdown.notified() => {
            let _ = tokio::time::timeout(Duration::from_secs(10), connection.closed()).await;
            true
        }
    }
}

/// The handler the connection owns, sharing the runtime with `serve`.
struct Shared(std::sync::Arc<Runtime>);

impl Handler for Shared {
    async fn handle(&self, request: Body, host: &Peer) -> Body {
        self.0.handle(request, host).await
    }
}

fn main() {
    let args = parse_args();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(args));
}
