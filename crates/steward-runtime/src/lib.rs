#![doc = include_str!("../docs/guide.md")]

mod args;
mod log;

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use steward_protocol::{
    Body, CallResponse, Connection, Handler, Limits, PROTOCOL_VERSION, Peer, RuntimeInfoResponse,
    StorageEntry, StorageKey, unix_socket,
};
pub use steward_protocol::{ErrorBody, Value};
use tokio::net::UnixStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

pub use steward_protocol::HOST_SOCKET_ENV;

/// How long a runtime waits, after answering `RuntimeShutdown`, for the
/// host to hang up before it exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What can stop a runtime from serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The process was not started by a Steward host.
    #[error(
        "{HOST_SOCKET_ENV} is not set: this program is a Steward runtime and must be started by the host"
    )]
    NoHost,
    /// The host's socket could not be reached.
    #[error("cannot connect to the host at {path}: {source}")]
    Connect {
        /// The socket path from the environment.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The connected socket could not be registered with tokio's reactor
    /// (it is shutting down, or the process is out of file descriptors).
    #[error("cannot use the host connection: {source}")]
    Socket {
        /// Why.
        source: std::io::Error,
    },
    /// A protocol failure (for host storage calls: the connection closed,
    /// or the host answered with an error).
    #[error(transparent)]
    Protocol(#[from] steward_protocol::Error),
}

/// A runtime's behaviour.
pub trait Runtime: Send + Sync + 'static {
    /// The version this process is (reported in the handshake; the host
    /// refuses a runtime whose version is not the configured one).
    fn version(&self) -> String;

    /// Optional capabilities to announce, by name.
    fn features(&self) -> Vec<String> {
        Vec::new()
    }

    /// Serves one application call. Calls run concurrently.
    ///
    /// The returned future is dropped, unfinished, when the host gives up
    /// on the call (its caller's deadline passed or the caller went away:
    /// the host sends a cancel) or when the host connection closes. Write
    /// calls so that stopping at any await leaves things consistent, and
    /// hand work that must not stop half-way to something that finishes
    /// it. Work moved off the future (a spawned task, a blocking thread)
    /// learns of it through [`CallContext::cancelled`].
    fn call(
        &self,
        ctx: &CallContext,
        method: &str,
        args: Value,
    ) -> impl Future<Output = Result<Value, ErrorBody>> + Send;

    /// Called when the host asks to abort the work in progress, after the
    /// abort signal of every call in flight fired.
    fn abort(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What a call can use besides its arguments.
#[derive(Debug, Clone)]
pub struct CallContext {
    storage: HostStorage,
    aborted: CancellationToken,
    cancelled: CancellationToken,
}

impl CallContext {
    /// The host's key-value storage for this runtime (shared by all its
    /// versions, kept across restarts and version switches).
    pub fn storage(&self) -> &HostStorage {
        &self.storage
    }

    /// Fires when the host aborts the work in progress; a long call should
    /// stop and return an error (see [`ErrorBody::CODE_ABORTED`]).
    pub fn aborted(&self) -> &CancellationToken {
        &self.aborted
    }

    /// Fires when nobody waits for this call's answer any more: the host
    /// cancelled it (its caller gave up) or the connection closed. The
    /// call's own future is dropped at that moment, so only work handed
    /// elsewhere (a spawned task, a blocking thread) needs to watch this;
    /// an answer produced after it fired goes nowhere.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancelled
    }
}

/// The host's storage, namespaced to this runtime by the host.
#[derive(Debug, Clone)]
pub struct HostStorage {
    host: Peer,
}

impl HostStorage {
    /// The value under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        match self
            .request(Body::HostStorageGet(StorageKey { key: key.into() }))
            .await?
        {
            Body::HostStorageGetResponse(found) => Ok(found.value),
            other => Err(unexpected("HostStorageGet", &other)),
        }
    }

    /// Stores `value` under `key`.
    pub async fn set(&self, key: &str, value: Value) -> Result<(), Error> {
        let body = Body::HostStorageSet(StorageEntry {
            key: key.into(),
            value,
        });
        self.request(body).await.map(drop)
    }

    /// Removes `key` (no error if it is absent).
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        self.request(Body::HostStorageDelete(StorageKey { key: key.into() }))
            .await
            .map(drop)
    }

    /// The keys starting with `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        match self
            .request(Body::HostStorageList(StorageKey { key: prefix.into() }))
            .await?
        {
            Body::HostStorageListResponse(found) => Ok(found.keys),
            other => Err(unexpected("HostStorageList", &other)),
        }
    }

    async fn request(&self, body: Body) -> Result<Body, Error> {
        Ok(self.host.call(body).await?)
    }
}

fn unexpected(request: &'static str, got: &Body) -> Error {
    Error::Protocol(steward_protocol::Error::UnexpectedResponse {
        request,
        got: got.name(),
    })
}

/// The error code of [`decode_args`]: arguments without the expected shape.
pub const CODE_BAD_ARGS: u32 = 400;

/// A call's arguments as `T`, or the error answer (module `module`, code
/// [`CODE_BAD_ARGS`]) naming the method and what does not fit.
pub fn decode_args<T: serde::de::DeserializeOwned>(
    module: &str,
    method: &str,
    args: &Value,
) -> Result<T, ErrorBody> {
    args.decode()
        .map_err(|e| ErrorBody::new(module, CODE_BAD_ARGS, format!("{method}: {e}")))
}

/// A call's result encoded as a [`Value`], or an internal-error answer.
pub fn encode_result<T: serde::Serialize + ?Sized>(
    module: &str,
    result: &T,
) -> Result<Value, ErrorBody> {
    Value::encode(result)
        .map_err(|e| ErrorBody::new(module, ErrorBody::CODE_INTERNAL, e.to_string()))
}

/// A whole runtime `main`: logs to stderr (which the host copies into its
/// own log, tagged with the runtime's id and version; filter with
/// `RUST_LOG`), serves `runtime` on a single-threaded tokio runtime (a
/// runtime process is small; one thread avoids cross-thread wake-ups on
/// every call), and turns a failure into one line on stderr and exit
/// status 1.
pub fn main<R: Runtime>(name: &str, runtime: R) -> std::process::ExitCode {
    log::init();
    let served = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|tokio| tokio.block_on(serve(runtime)).map_err(|e| e.to_string()));
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            log::line(&format!("{name}: {error}"));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The whole `main` of a runtime binary told its version on its command
/// line, as a host config gives it: `PROGRAM --version V` (or
/// `--version=V`; `--help` prints the usage). `args` is the command line,
/// program name first. Builds the runtime with `runtime(version)` and runs
/// it with [`main`]; a bad command line is one line on stderr and exit
/// status 2.
///
/// ```no_run
/// # use steward_runtime::{CallContext, ErrorBody, Runtime, Value};
/// struct Hello { version: String }
/// # impl Runtime for Hello {
/// #     fn version(&self) -> String { self.version.clone() }
/// #     async fn call(&self, _: &CallContext, _: &str, args: Value) -> Result<Value, ErrorBody> { Ok(args) }
/// # }
///
/// fn main() -> std::process::ExitCode {
///     steward_runtime::main_versioned("hello", std::env::args_os(), |version| Hello { version })
/// }
/// ```
pub fn main_versioned<R, I, T>(
    name: &str,
    args: I,
    runtime: impl FnOnce(String) -> R,
) -> std::process::ExitCode
where
    R: Runtime,
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut args = args.into_iter().map(Into::into);
    let program = args.next().unwrap_or_else(|| OsString::from(name));
    match args::parse(args) {
        Ok(args::Invocation::Serve { version }) => main(name, runtime(version)),
        Ok(args::Invocation::Help) => {
            println!(
                "{name}: a Steward runtime, started by the Steward host\n\nUsage: {} --version VERSION",
                program.to_string_lossy()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            log::line(&format!("{name}: {error}"));
            std::process::ExitCode::from(2)
        }
    }
}

/// Connects to the host named by `STEWARD_HOST` and serves `runtime` until
/// the host shuts it down or goes away.
pub async fn serve<R: Runtime>(runtime: R) -> Result<(), Error> {
    let path = std::env::var_os(HOST_SOCKET_ENV).ok_or(Error::NoHost)?;
    let path = PathBuf::from(path);
    let stream = UnixStream::connect(&path)
        .await
        .map_err(|source| Error::Connect { path, source })?;
    serve_on(stream, runtime).await
}

/// Serves `runtime` over an already connected stream (for tests and
/// embedding).
pub async fn serve_on<R: Runtime>(stream: UnixStream, runtime: R) -> Result<(), Error> {
    let (read, write) = unix_socket::split(stream).map_err(|source| Error::Socket { source })?;
    let shared = Arc::new(Shared {
        runtime,
        aborted: Mutex::new(CancellationToken::new()),
        shutdown: Notify::new(),
    });
    let connection = Connection::start(
        read,
        write,
        RuntimeHandler {
            shared: shared.clone(),
        },
        Limits::default(),
    );
    let shutdown = shared.shutdown.notified();
    tokio::select! {
        reason = connection.closed() => {
            info!(%reason, "host connection closed; exiting");
        }
        () = shutdown => {
            debug!("shutdown requested; waiting for the host to hang up");
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection.closed()).await;
        }
    }
    connection.close("runtime exiting");
    Ok(())
}

struct Shared<R> {
    runtime: R,
    /// The abort signal handed to calls; replaced after each abort.
    aborted: Mutex<CancellationToken>,
    shutdown: Notify,
}

struct RuntimeHandler<R> {
    shared: Arc<Shared<R>>,
}

impl<R: Runtime> Handler for RuntimeHandler<R> {
    async fn handle(&self, request: Body, host: &Peer) -> Body {
        let shared = &self.shared;
        match request {
            Body::RuntimeInfoRequest(info) => {
                let version = shared.runtime.version();
                debug!(
                    runtime_id = %info.runtime_id,
                    host_protocol = %info.protocol_version,
                    expected = %info.expected_version,
                    version = %version,
                    "handshake"
                );
                Body::RuntimeInfoResponse(RuntimeInfoResponse {
                    protocol_version: PROTOCOL_VERSION,
                    runtime_version: version,
                    features: shared.runtime.features(),
                })
            }
            Body::RuntimePing => Body::Empty,
            Body::RuntimeAbort => {
                let previous = std::mem::take(
                    &mut *shared
                        .aborted
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner),
                );
                previous.cancel();
                shared.runtime.abort().await;
                Body::Empty
            }
            Body::RuntimeShutdown => {
                shared.shutdown.notify_one();
                Body::Empty
            }
            Body::RuntimeCallRequest(call) => {
                let ctx = CallContext {
                    storage: HostStorage { host: host.clone() },
                    aborted: shared
                        .aborted
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone(),
                    cancelled: CancellationToken::new(),
                };
                // The connection drops this future when the host cancels
                // the call or hangs up; the guard then tells whatever the
                // call handed its context to.
                let cancel_on_drop = ctx.cancelled.clone().drop_guard();
                let result = shared.runtime.call(&ctx, &call.method, call.args).await;
                cancel_on_drop.disarm();
                match result {
                    Ok(result) => Body::RuntimeCallResponse(CallResponse { result }),
                    Err(error) => Body::Error(error),
                }
            }
            other => Body::Error(ErrorBody::new(
                "protocol",
                ErrorBody::CODE_UNSUPPORTED,
                format!("a runtime does not serve {}", other.name()),
            )),
        }
    }
}
