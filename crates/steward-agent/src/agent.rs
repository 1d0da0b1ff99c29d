//! `steward run`: the agent as one supervision tree.
//!
//! ```text
//! Runner "agent"
//! ├── api          the control API (HTTP on a bound listener)
//! ├── config       ConfigObserver over the config file (with --config)
//! ├── runtimes     the manager: applies each valid config to the runner
//! ├── runtime/echo one worker per runtime: its Aggregate, reconciled with
//! └── runtime/kv   the desired version in the store
//! ```
//!
//! Everything that can fail at start (config, data dir, store, listen
//! address) is checked before the tree starts, so a mistake is one clear
//! error and exit status, not a restart loop. Once running, only a
//! `TerminateAgent` error stops the tree; every other failure restarts its
//! worker with backoff, so a failing runtime never takes the others down.
//! This module must never contain request handling or runtime logic: it
//! only wires the pieces together.

use std::any::Any;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use steward_store::Store;
use steward_worker::{
    ConfigObserver, Error as WorkerError, FileWatcher, Runner, SimpleWorker, Worker,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;
use crate::api::{self, ApiState};
use crate::config::{self, CommandResolver, Config};
use crate::events::EventBus;
use crate::metrics;
use crate::runtimes::{Context, Manager, Registry};

/// The default address of the control API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7171";

/// The default limit of a request body.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 << 20;

/// The database file inside the data dir.
const STORE_FILE: &str = "steward.redb";

/// How long workers get to stop on SIGINT/SIGTERM before being aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Settings of `steward run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file; `None` runs the built-in demo config.
    pub config: Option<PathBuf>,
    /// Where the store lives; `None` is `<user data dir>/steward`.
    pub data_dir: Option<PathBuf>,
    /// Where the control API listens (port 0 picks a free port).
    pub listen: SocketAddr,
    /// A file holding the bearer token the API requires.
    pub token_file: Option<PathBuf>,
    /// The largest request body the API accepts.
    pub max_request_bytes: usize,
}

/// The default data dir: `<user data dir>/steward` (e.g.
/// `~/.local/share/steward` on Linux).
pub fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|dir| dir.join("steward"))
}

/// What [`start`] prepared: the agent, running.
pub struct Agent {
    runner: Runner,
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The data dir in use.
    pub data_dir: PathBuf,
    /// The runtimes of the initial config: id and versions.
    pub runtimes: Vec<(String, Vec<String>)>,
    /// Whether the API requires a token.
    pub token_required: bool,
    /// Whether the demo config runs (no `--config`).
    pub demo: bool,
}

impl Agent {
    /// Stops the agent: the API stops accepting, runtimes are stopped
    /// gracefully. Returns the tree's result.
    pub async fn shutdown(self) -> Result<(), Error> {
        info!("shutting down");
        self.runner.kill();
        self.wait().await
    }

    /// Waits until the tree stops by itself (a fatal error).
    pub async fn wait(&self) -> Result<(), Error> {
        self.runner.wait().await.map_err(Error::from)
    }
}

/// Checks everything, opens the store, binds the API and starts the tree.
pub async fn start(options: RunOptions) -> Result<Agent, Error> {
    let resolver = CommandResolver::from_env();
    let initial = match &options.config {
        Some(path) => config::load(path, &resolver)?,
        None => config::demo(&resolver)?,
    };
    let token = read_token(options.token_file.as_deref())?;
    if !options.listen.ip().is_loopback() && token.is_none() {
        return Err(Error::TokenRequired {
            addr: options.listen,
        });
    }
    // The address first: a busy port (the usual mistake) then leaves
    // nothing behind on disk.
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|error| Error::Listen {
            addr: options.listen,
            reason: error.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|error| Error::Listen {
        addr: options.listen,
        reason: error.to_string(),
    })?;
    let data_dir = match &options.data_dir {
        Some(dir) => dir.clone(),
        None => default_data_dir().ok_or(Error::NoDataDir)?,
    };
    std::fs::create_dir_all(&data_dir).map_err(|error| Error::DataDir {
        path: data_dir.clone(),
        reason: format!("cannot create it: {error}"),
    })?;
    let store = Store::open(data_dir.join(STORE_FILE)).await?;
    let prometheus = metrics::install();
    if let Some(handle) = &prometheus {
        tokio::spawn(metrics::upkeep(handle.clone()));
    }

    let runner = Runner::builder()
        .name("agent")
        .shutdown_timeout(SHUTDOWN_GRACE)
        .build();
    let context = Context {
        store: store.clone(),
        registry: Arc::new(Registry::default()),
        events: EventBus::new(),
    };
    let api_state = ApiState {
        registry: context.registry.clone(),
        store: store.clone(),
        events: context.events.clone(),
        prometheus,
        token: token.map(Arc::from),
        max_request_bytes: options.max_request_bytes,
    };
    let token_required = api_state.token.is_some();
    start_api(&runner, api_state, listener, addr)?;
    if let Some(path) = &options.config {
        start_config_observer(&runner, path.clone(), resolver)?;
    }
    let runtimes = initial
        .runtimes
        .iter()
        .map(|runtime| (runtime.id.clone(), runtime.version_names()))
        .collect();

    start_manager(&runner, context, initial, options.config.is_some())?;
    info!(%addr, data_dir = %data_dir.display(), "agent started");
    Ok(Agent {
        runner,
        addr,
        data_dir,
        runtimes,
        token_required,
        demo: options.config.is_none(),
    })
}

fn read_token(path: Option<&Path>) -> Result<Option<String>, Error> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|error| Error::TokenFile {
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::TokenFile {
            path: path.to_owned(),
            reason: "it is empty; put a secret token in it".to_owned(),
        });
    }
    Ok(Some(token.to_owned()))
}

/// The API worker. The listener is bound once, up front (so a busy port is
/// a start error); a restarted API worker binds the same address again.
fn start_api(
    runner: &Runner,
    state: ApiState,
    listener: TcpListener,
    addr: SocketAddr,
) -> Result<(), WorkerError> {
    let listener = Arc::new(std::sync::Mutex::new(Some(listener)));
    runner.start_worker("api", move || {
        let state = state.clone();
        let listener = listener.clone();
        async move {
            let bound = listener
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let listener = match bound {
                Some(listener) => listener,
                None => TcpListener::bind(addr).await.map_err(WorkerError::other)?,
            };
            Ok(SimpleWorker::spawn(move |stop: CancellationToken| {
                api::serve(listener, state, stop)
            }))
        }
    })
}

/// The config observer worker: the latest valid config of `path`.
fn start_config_observer(
    runner: &Runner,
    path: PathBuf,
    resolver: CommandResolver,
) -> Result<(), WorkerError> {
    let resolver = Arc::new(resolver);
    runner.start_worker("config", move || {
        let path = path.clone();
        let resolver = resolver.clone();
        async move {
            let watcher = FileWatcher::builder(&path).watch_notify().await?;
            let load_path = path.clone();
            // A file caught half-written, or briefly missing during a save,
            // is "invalid" (logged, skipped), not a reason to stop watching.
            let load = move || {
                let path = load_path.clone();
                async move { Ok(tokio::fs::read_to_string(&path).await) }
            };
            let validate = move |read: std::io::Result<String>| -> Result<Config, String> {
                let text = read.map_err(|error| {
                    format!("{}: cannot read the config: {error}", path.display())
                })?;
                // An editor saving in place truncates first: an empty file
                // is most likely caught mid-save, and applying it would stop
                // every runtime. A config meant to host nothing can say so
                // with a comment.
                if text.trim().is_empty() {
                    return Err(format!(
                        "{}: config edit ignored, the file is empty (caught mid-save?); to host no runtimes, leave a comment in it",
                        path.display()
                    ));
                }
                config::parse(&text, &path, &resolver).map_err(|errors| {
                    format!("config edit ignored, the running config stays:\n{errors}")
                })
            };
            ConfigObserver::start(watcher, load, validate, &CancellationToken::new()).await
        }
    })
}

/// The manager worker: applies the initial config, then every valid edit.
fn start_manager(
    runner: &Runner,
    context: Context,
    initial: Config,
    watched: bool,
) -> Result<(), WorkerError> {
    let manager_runner = runner.clone();
    let initial = Arc::new(initial);
    runner.start_worker("runtimes", move || {
        let manager = Manager {
            context: context.clone(),
            runner: manager_runner.clone(),
        };
        let initial = initial.clone();
        async move {
            Ok(SimpleWorker::spawn(move |stop: CancellationToken| async move {
                if !watched {
                    manager.apply(&initial).await?;
                    stop.cancelled().await;
                    return Ok(());
                }
                let observer = tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    observer = manager.runner.worker("config") => observer?,
                };
                let observer: Arc<dyn Any + Send + Sync> = observer;
                let observer = observer
                    .downcast::<ConfigObserver<Config>>()
                    .map_err(|_| WorkerError::msg("worker \"config\" is not a config observer"))?;
                let mut updates = observer.subscribe();
                manager.apply(&observer.current()).await?;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        changed = updates.changed() => {
                            if changed.is_err() {
                                return Err(WorkerError::msg("the config observer stopped"));
                            }
                            let config = updates.borrow_and_update().clone();
                            info!(runtimes = config.runtimes.len(), "config changed: applying it");
                            manager.apply(&config).await?;
                        }
                    }
                }
            }))
        }
    })
}

/// Runs the agent until SIGINT or SIGTERM (or a fatal error), printing the
/// banner once it listens. The entry point of `steward run`.
pub async fn run(options: RunOptions, banner: impl FnOnce(&Agent)) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|error| Error::Startup(format!("cannot handle SIGTERM: {error}")))?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|error| Error::Startup(format!("cannot handle SIGINT: {error}")))?;
    let agent = start(options).await?;
    banner(&agent);
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM received"),
        _ = interrupt.recv() => info!("SIGINT received"),
        result = agent.wait() => {
            warn!("the agent stopped by itself");
            return result;
        }
    }
    agent.shutdown().await
}
