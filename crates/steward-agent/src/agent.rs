//! `steward run`: the agent as one supervision tree.
//!
//! ```text
//! Runner "agent"
//! ├── metrics      keeps the Prometheus histograms bounded
//! ├── api          the control API (HTTP on a bound listener)
//! ├── config       the config file's observer (with --config): each valid
//! │                edit goes into the `watch` channel of the current config
//! ├── runtimes     the manager: applies the current config to the runner
//! ├── runtime/echo one worker per runtime: its Aggregate, reconciled with
//! └── runtime/kv   the desired version in the store
//! ```
//!
//! Everything that can fail at start (config, data dir, store, listen
//! address) is checked before the tree starts, so a mistake is one clear
//! error and exit status, not a restart loop. Once running, only a
//! `TerminateAgent` error stops the tree; every other failure restarts its
//! worker with backoff, so a failing runtime never takes the others down.
//! Under systemd, [`run`] reports readiness, status and watchdog pings
//! (see [`systemd`]).
//! This module must never contain request handling or runtime logic: it
//! only wires the pieces together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use steward_etcd::EtcdStore;
use steward_store::{DesiredState, Presence, Store};
use steward_worker::{
    ConfigObserver, Error as WorkerError, FileWatcher, Runner, SimpleWorker, Worker,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;
use crate::api::types::RuntimeState;
use crate::api::{self, ApiState, ServerLimits};
use crate::config::{self, CommandResolver, Config};
use crate::events::EventBus;
use crate::fleet::{self, FleetOptions};
use crate::metrics;
use crate::relations::Relations;
use crate::runtimes::{Context, DesiredScope, HookServices, Manager, ProcessHosts, Registry};
use crate::storage::StoreStorage;
use crate::systemd;
use crate::token::read_token_file;

/// The default address of the control API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7171";

/// The default limit of a request body.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 << 20;

/// The runner ids of the API and of the manager of the runtimes.
const API: &str = "api";
const MANAGER: &str = "runtimes";

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
    /// The agent's name, in its units' names (`<runtime>/<name>`); `None`
    /// is the host name.
    pub name: Option<String>,
    /// How long an API client may take to send a request's head or body,
    /// and a connection may sit idle.
    pub http_timeout: Duration,
    /// Join a fleet: share desired state, presence and relations through
    /// this etcd (`--fleet`); `None` uses the config's `[fleet]`, if any.
    pub fleet: Option<FleetOptions>,
}

/// The default of [`RunOptions::http_timeout`].
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// The default data dir: `<user data dir>/steward` (e.g.
/// `~/.local/share/steward` on Linux).
pub fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|dir| dir.join("steward"))
}

/// What [`start`] prepared: the agent, running.
#[derive(Debug)]
pub struct Agent {
    runner: Runner,
    /// The channel of the current config, kept open while the agent runs
    /// (the config observer, when there is one, holds a sender too).
    configs: watch::Sender<Arc<Config>>,
    registry: Arc<Registry>,
    store: Store,
    /// The fleet's etcd, in fleet mode: closed last, which revokes the
    /// lease so that this agent's units leave the fleet at once.
    fleet: Option<EtcdStore>,
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
    /// Stops the agent: runtimes are stopped gracefully first, then the
    /// API. Returns the tree's result.
    ///
    /// The API goes last because it is how an operator watches the
    /// shutdown: killing the whole tree at once ended the event streams
    /// before the runtimes' final `stopped` events were published. So the
    /// manager stops first (it starts nothing more), then every other
    /// worker but the API (within 30 s), and only then the
    /// tree, whose event streams pass on what is queued before they end.
    pub async fn shutdown(self) -> Result<(), Error> {
        info!("shutting down");
        let stopped = tokio::time::timeout(SHUTDOWN_GRACE, self.stop_all_but_api()).await;
        if stopped.is_err() {
            warn!(
                "runtimes did not stop within {}; stopping the rest of the agent",
                humantime::format_duration(SHUTDOWN_GRACE)
            );
        }
        if let Some(fleet) = &self.fleet {
            // After the runtimes and the presence worker have stopped, so
            // nothing publishes again under a new lease.
            if let Err(error) = fleet.close().await {
                warn!(%error, "cannot revoke the fleet lease; this agent's units leave when it expires");
            }
        }
        self.runner.kill();
        self.wait().await
    }

    async fn stop_all_but_api(&self) {
        let stop = |id: String| async move {
            match self.runner.stop_and_remove(&id).await {
                Ok(()) | Err(WorkerError::NotFound { .. }) => {}
                Err(error) => tracing::debug!(worker = %id, %error, "worker stopped with an error"),
            }
        };
        stop(MANAGER.to_owned()).await;
        let others = self
            .runner
            .worker_names()
            .into_iter()
            .filter(|id| id != API);
        futures_util::future::join_all(others.map(stop)).await;
    }

    /// Waits until the tree stops by itself (a fatal error).
    pub async fn wait(&self) -> Result<(), Error> {
        self.runner.wait().await.map_err(Error::from)
    }

    /// What the service manager is told: whether every runtime of the
    /// current config has had its first start attempt, and a status line.
    fn reporter(&self) -> systemd::Reporter {
        let configs = self.configs.subscribe();
        let registry = self.registry.clone();
        let store = self.store.clone();
        Arc::new(move || {
            let config = configs.borrow().clone();
            let mut states = Vec::with_capacity(config.runtimes.len());
            let mut ready = true;
            for runtime in &config.runtimes {
                let Some(hosted) = registry.get(&runtime.id) else {
                    // The manager has not applied this config yet.
                    ready = false;
                    states.push((runtime.id.clone(), RuntimeState::Starting));
                    continue;
                };
                let status = hosted.status();
                // Still `starting` and no failure yet: the first start has
                // no outcome. A runtime waiting for its install hook counts
                // as attempted: a hook may take as long as it needs.
                if status.state == RuntimeState::Starting && status.last_error.is_none() {
                    ready = false;
                }
                states.push((runtime.id.clone(), status.state));
            }
            let problem = match store.health() {
                steward_store::StoreHealth::Ok => None,
                steward_store::StoreHealth::Unusable { reason, .. } => Some(reason),
            };
            systemd::Report {
                ready,
                status: systemd::status_line(&states, problem.as_deref()),
            }
        })
    }
}

/// Checks everything, opens the store, binds the API and starts the tree.
pub async fn start(options: RunOptions) -> Result<Agent, Error> {
    let resolver = CommandResolver::from_env();
    let initial = match &options.config {
        Some(path) => {
            let (path, resolver) = (path.clone(), resolver.clone());
            blocking(move || config::load(&path, &resolver)).await??
        }
        None => crate::demo::config(&resolver)?,
    };
    let token = options
        .token_file
        .as_deref()
        .map(|path| {
            warn_if_readable_by_others(path);
            read_token_file(path).map_err(|reason| Error::TokenFile {
                path: path.to_owned(),
                reason,
            })
        })
        .transpose()?;
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
    let created = data_dir.clone();
    blocking(move || create_private_dir(&created))
        .await?
        .map_err(|error| Error::DataDir {
            path: data_dir.clone(),
            reason: format!("cannot create it: {error}"),
        })?;
    let store = Store::open(data_dir.join(STORE_FILE)).await?;
    let name = match options.name {
        Some(name) => name,
        None => host_name()?,
    };
    check_name(&name)?;
    // `--fleet` names the endpoints; what it leaves out comes from the
    // config's `[fleet]`.
    let configured = initial.fleet.as_ref();
    let fleet_options = match options.fleet.clone() {
        Some(given) => Some(FleetOptions {
            prefix: given
                .prefix
                .or_else(|| configured.and_then(|fleet| fleet.prefix.clone())),
            lease_ttl: given
                .lease_ttl
                .or_else(|| configured.and_then(|fleet| fleet.lease_ttl)),
            endpoints: given.endpoints,
        }),
        None => configured.map(|fleet| FleetOptions {
            endpoints: fleet.endpoints.clone(),
            prefix: fleet.prefix.clone(),
            lease_ttl: fleet.lease_ttl,
        }),
    };
    let fleet_store = match &fleet_options {
        Some(fleet_options) => {
            let etcd = fleet::connect(fleet_options, &name).await?;
            info!(endpoints = %fleet_options.endpoints.join(","), prefix = %etcd.options().key_prefix(), "fleet: joined");
            Some(etcd)
        }
        None => None,
    };
    let executable = std::env::current_exe()
        .map_err(|error| Error::Startup(format!("cannot find the steward binary: {error}")))?;
    let run_data_dir = data_dir.clone();
    let (run_dir, leftovers) = blocking(move || crate::rundir::prepare(&run_data_dir))
        .await?
        .map_err(Error::Startup)?;
    if !leftovers.killed.is_empty() || leftovers.removed > 0 {
        warn!(
            run_dir = %run_dir.display(),
            killed = ?leftovers.killed,
            removed = leftovers.removed,
            "an agent of this data dir stopped without cleaning up: its leftover processes were killed and its socket dirs removed"
        );
    }
    let hooks = HookServices::start(name, &data_dir, Some(&run_dir), &executable, true)
        .await
        .map_err(Error::Hooks)?;
    let prometheus = metrics::install();
    let open_files = raise_open_file_limit();

    let runner = Runner::builder()
        .name("agent")
        .shutdown_timeout(SHUTDOWN_GRACE)
        .build();
    let events = EventBus::new();
    // In a fleet, the other agents' units of a relation come from etcd.
    let relations = match &fleet_store {
        Some(etcd) => {
            Relations::fleet(
                store.clone(),
                hooks.agent.clone(),
                Arc::new(etcd.clone()),
                events.clone(),
            )
            .await
        }
        None => Relations::local(store.clone(), hooks.agent.clone(), events.clone()).await,
    }
    .map_err(|reason| Error::Startup(format!("cannot read the relations: {reason}")))?;
    let registry = Arc::new(Registry::default());
    let (desired, scope, presence): (Arc<dyn DesiredState>, _, Option<Arc<dyn Presence>>) =
        match &fleet_store {
            Some(etcd) => (
                Arc::new(etcd.clone()),
                DesiredScope::Fleet,
                Some(Arc::new(etcd.clone())),
            ),
            None => (Arc::new(store.clone()), DesiredScope::Local, None),
        };
    let context = Context {
        desired,
        scope,
        store: store.clone(),
        registry: registry.clone(),
        events,
        relations: Arc::new(relations),
        hosts: Arc::new(ProcessHosts {
            storage: Arc::new(StoreStorage(store.clone())),
            socket_parent: Some(run_dir),
            registry: registry.clone(),
        }),
        hooks: Arc::new(hooks),
    };
    let api_state = ApiState {
        registry: context.registry.clone(),
        relations: context.relations.clone(),
        desired: context.desired.clone(),
        presence: presence.clone(),
        store: store.clone(),
        events: context.events.clone(),
        prometheus: prometheus.clone(),
        token: token.map(Arc::from),
        max_request_bytes: options.max_request_bytes,
        limits: ServerLimits {
            header_timeout: options.http_timeout,
            ..ServerLimits::for_fd_limit(open_files)
        },
        body_budget: ApiState::body_budget(options.max_request_bytes),
    };
    let token_required = api_state.token.is_some();
    let runtimes = initial
        .runtimes
        .iter()
        .map(|runtime| (runtime.id.clone(), runtime.version_names()))
        .collect();
    let (configs, current) = watch::channel(Arc::new(initial));

    if let Some(handle) = prometheus {
        start_metrics_upkeep(&runner, handle)?;
    }
    start_store_recovery(&runner, context.store.clone())?;
    start_api(&runner, api_state, listener, addr)?;
    if let Some(path) = &options.config {
        start_config_observer(&runner, path.clone(), resolver, configs.clone())?;
    }
    if let Some(presence) = presence {
        fleet::start_presence(
            &runner,
            fleet::Publisher {
                registry: context.registry.clone(),
                desired: context.desired.clone(),
                presence,
                events: context.events.clone(),
            },
        )?;
    }
    start_manager(&runner, context, current)?;
    info!(%addr, data_dir = %data_dir.display(), "agent started");
    Ok(Agent {
        runner,
        configs,
        registry,
        store,
        fleet: fleet_store,
        addr,
        data_dir,
        runtimes,
        token_required,
        demo: options.config.is_none(),
    })
}

/// Raises the soft limit of open files to the hard limit, as servers do
/// (every connection, runtime socket and pipe is one), and returns the
/// limit now in force.
fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(error) => {
                warn!(%error, soft, hard, "cannot raise the open file limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(error) => {
            warn!(%error, "cannot read the open file limit");
            1024
        }
    }
}

/// The host name, the default agent name.
fn host_name() -> Result<String, Error> {
    let name = nix::unistd::gethostname().map_err(|error| {
        Error::Startup(format!(
            "cannot read the host name: {error}; pass --name NAME"
        ))
    })?;
    name.into_string().map_err(|name| Error::BadName {
        name: name.to_string_lossy().into_owned(),
        reason: "the host name is not valid UTF-8".to_owned(),
    })
}

/// An agent name is part of unit names (`web/<name>`), which appear in
/// hooks' environment, logs and, in a fleet, store keys.
fn check_name(name: &str) -> Result<(), Error> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let reason = if name.is_empty() {
        "it is empty".to_owned()
    } else if name.len() > 64 {
        format!("it is {} characters long (64 at most)", name.len())
    } else if let Some(c) = name.chars().find(|&c| !allowed(c)) {
        format!("it contains {c:?} (use A-Z a-z 0-9 . _ -)")
    } else {
        return Ok(());
    };
    Err(Error::BadName {
        name: name.to_owned(),
        reason,
    })
}

/// Runs filesystem work (reading and checking a config, creating a
/// directory) on a blocking thread, away from the tokio worker threads
/// that serve calls.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| Error::Startup(format!("a start-up task failed: {error}")))
}

/// A token anyone on the machine can read protects nothing: say so.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        warn!(
            path = %path.display(),
            mode = format!("{:o}", metadata.permissions().mode() & 0o777),
            "the token file can be read by other users; make it private: chmod 600"
        );
    }
}

/// The data dir, created (with any missing parents) readable by this user
/// only: runtimes' data is private.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// How often the store's health is looked at, and the longest wait
/// between two attempts to reopen a store that refuses writes.
const STORE_CHECK: Duration = Duration::from_secs(1);
const STORE_REOPEN_MAX: Duration = Duration::from_secs(30);

/// The store worker: when the store refuses writes (a full disk), reopens
/// it with backoff until it works again. Calls to runtimes go on
/// meanwhile; writes are refused with 507 and `/healthz` says degraded.
fn start_store_recovery(runner: &Runner, store: Store) -> Result<(), WorkerError> {
    runner.start_simple("store", move || {
        let store = store.clone();
        move |stop: CancellationToken| recover_store(store, stop)
    })
}

async fn recover_store(store: Store, stop: CancellationToken) -> Result<(), WorkerError> {
    let mut wait = STORE_CHECK;
    let mut reported = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
        let steward_store::StoreHealth::Unusable { reason, .. } = store.health() else {
            wait = STORE_CHECK;
            continue;
        };
        if !reported {
            // Once per failure, not once per attempt.
            warn!(%reason, "the store refuses writes; calls go on, writes are refused, and it is reopened when it can be");
            reported = true;
        }
        match store.reopen().await {
            Ok(()) => {
                info!("the store works again");
                reported = false;
                wait = STORE_CHECK;
            }
            Err(error) => {
                tracing::debug!(%error, "the store cannot be reopened yet");
                wait = (wait * 2).min(STORE_REOPEN_MAX);
            }
        }
    }
}

/// The metrics worker: the exporter leaves bounding its histogram storage
/// to its user, every few seconds.
fn start_metrics_upkeep(runner: &Runner, handle: PrometheusHandle) -> Result<(), WorkerError> {
    runner.start_simple("metrics", move || {
        let handle = handle.clone();
        move |stop: CancellationToken| metrics::upkeep(handle, stop)
    })
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
    runner.start_worker(API, move || {
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

/// The config observer worker: sends every valid edit of `path` into
/// `configs`.
fn start_config_observer(
    runner: &Runner,
    path: PathBuf,
    resolver: CommandResolver,
    configs: watch::Sender<Arc<Config>>,
) -> Result<(), WorkerError> {
    let resolver = Arc::new(resolver);
    runner.start_simple("config", move || {
        let (path, resolver, configs) = (path.clone(), resolver.clone(), configs.clone());
        move |stop: CancellationToken| observe_config(path, resolver, configs, stop)
    })
}

/// Watches the config file and forwards each valid version of it, until
/// `stop`. Reading and checking a version is filesystem work (commands are
/// resolved on disk), done on a blocking thread.
async fn observe_config(
    path: PathBuf,
    resolver: Arc<CommandResolver>,
    configs: watch::Sender<Arc<Config>>,
    stop: CancellationToken,
) -> Result<(), WorkerError> {
    let watcher = FileWatcher::builder(&path).watch_notify().await?;
    let load_path = path.clone();
    let load = move || {
        let (path, resolver) = (load_path.clone(), resolver.clone());
        async move {
            tokio::task::spawn_blocking(move || read_config(&path, &resolver))
                .await
                .map_err(WorkerError::other)
        }
    };
    let observer = match ConfigObserver::start(watcher, load, |checked| checked, &stop).await {
        Ok(observer) => observer,
        Err(WorkerError::Cancelled) => return Ok(()),
        Err(error) => return Err(error),
    };
    let mut updates = observer.subscribe();
    let forward = |config: Arc<Config>| {
        configs.send_if_modified(|current| {
            let changed = **current != *config;
            if changed {
                *current = config;
            }
            changed
        });
    };
    forward(observer.current());
    let result = loop {
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
            changed = updates.changed() => {
                if changed.is_err() {
                    break Err(WorkerError::msg("the config observer stopped"));
                }
                let config = updates.borrow_and_update().clone();
                forward(config);
            }
        }
    };
    observer.kill();
    observer.wait().await.and(result)
}

/// One version of the config file, or why it is ignored.
fn read_config(path: &Path, resolver: &CommandResolver) -> Result<Config, String> {
    // A file caught half-written, or briefly missing during a save, is
    // "invalid" (logged, skipped), not a reason to stop watching.
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("{}: cannot read the config: {error}", path.display()))?;
    // An editor saving in place truncates first: an empty file is most
    // likely caught mid-save, and applying it would stop every runtime. A
    // config meant to host nothing can say so with a comment.
    if text.trim().is_empty() {
        return Err(format!(
            "{}: config edit ignored, the file is empty (caught mid-save?); to host no runtimes, leave a comment in it",
            path.display()
        ));
    }
    config::parse(&text, path, resolver)
        .map_err(|errors| format!("config edit ignored, the running config stays:\n{errors}"))
}

/// The manager worker: applies the current config, then every change.
fn start_manager(
    runner: &Runner,
    context: Context,
    configs: watch::Receiver<Arc<Config>>,
) -> Result<(), WorkerError> {
    let manager_runner = runner.clone();
    runner.start_worker(MANAGER, move || {
        let manager = Manager {
            context: context.clone(),
            runner: manager_runner.clone(),
        };
        let configs = configs.clone();
        async move {
            Ok(SimpleWorker::spawn(move |stop: CancellationToken| {
                manager.run(configs, stop)
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
    // The API listens (its socket is bound): from now on the service
    // manager hears of the runtimes' first starts.
    let service = systemd::Service::start(agent.reporter());
    let result = tokio::select! {
        _ = terminate.recv() => {
            info!("SIGTERM received");
            None
        }
        _ = interrupt.recv() => {
            info!("SIGINT received");
            None
        }
        result = agent.wait() => {
            warn!("the agent stopped by itself");
            Some(result)
        }
    };
    service.stopping();
    let result = match result {
        Some(result) => result,
        None => agent.shutdown().await,
    };
    service.finish().await;
    result
}
