//! The hook tool server: the agent's end of the hook tools' Unix socket.
//!
//! One server per agent serves every hook run: each run registers its
//! context and gets an id (`<unit>:<hook>:<random>`), which the hook's
//! tools send with every request. The server checks a request in juju's
//! order (command, directory, context, command name), then runs the command
//! with the context's lock held, so the commands of one hook run one at a
//! time while different hooks' commands run concurrently.
//!
//! This module owns the socket, its private directory, connections and the
//! registry of contexts. It must never know what a command does (that is
//! the [`Commands`] set's business) nor keep a context after its
//! registration ended.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Error;
use crate::tool::wire::{self, FrameError, ToolAnswer, ToolOutput, ToolRequest};
use crate::tool::{BuiltinCommands, Commands, Invocation};

/// The socket's file name inside the server's private directory.
pub const SOCKET_NAME: &str = "agent.sock";

/// The environment variable that tells a hook tool its context id.
pub const CONTEXT_ID_ENV: &str = "STEWARD_CONTEXT_ID";
/// Juju's name for [`CONTEXT_ID_ENV`], also read by the client.
pub const JUJU_CONTEXT_ID_ENV: &str = "JUJU_CONTEXT_ID";
/// The environment variable that tells a hook tool the agent's socket.
pub const AGENT_SOCKET_ENV: &str = "STEWARD_AGENT_SOCKET";
/// Juju's name for [`AGENT_SOCKET_ENV`], also read by the client.
pub const JUJU_AGENT_SOCKET_ENV: &str = "JUJU_AGENT_SOCKET";

/// How a [`ToolServer`] is set up.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where the server's private directory is created; the system's temp
    /// dir when `None`. A Unix socket path is limited to about 100 bytes,
    /// so keep it short.
    pub parent_dir: Option<PathBuf>,
    /// How long a client may take to send one complete request (and to
    /// read its answer) before its connection is closed. Default 30 s.
    pub request_timeout: Duration,
    /// How long [`ToolServer::close`] waits for commands in progress
    /// before it aborts them. Default 5 s.
    pub shutdown_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            parent_dir: None,
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// A registered context: taken out by [`Registration::finish`]; the lock
/// serialises the context's commands.
type Slot<T> = tokio::sync::Mutex<Option<T>>;

struct Shared<C: Commands> {
    commands: C,
    contexts: Mutex<HashMap<String, Arc<Slot<C::Context>>>>,
    options: ServerOptions,
}

impl<C: Commands> Shared<C> {
    fn contexts(&self) -> MutexGuard<'_, HashMap<String, Arc<Slot<C::Context>>>> {
        // Nothing panics while holding this lock; recover rather than
        // cascade if that ever changes.
        self.contexts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The agent's hook tool server.
///
/// Created with [`bind`](ToolServer::bind) inside a tokio runtime; serves
/// until [`close`](ToolServer::close) or drop, which also remove the socket
/// and its directory.
pub struct ToolServer<C: Commands = BuiltinCommands> {
    shared: Arc<Shared<C>>,
    socket: PathBuf,
    dir: Option<TempDir>,
    stop: CancellationToken,
    accept: Option<JoinHandle<()>>,
}

impl<C: Commands> std::fmt::Debug for ToolServer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolServer")
            .field("socket", &self.socket)
            .field("contexts", &self.shared.contexts().len())
            .finish_non_exhaustive()
    }
}

impl ToolServer<BuiltinCommands> {
    /// A server for the built-in commands.
    pub async fn builtin(options: ServerOptions) -> Result<Self, Error> {
        Self::bind(BuiltinCommands, options).await
    }
}

impl<C: Commands> ToolServer<C> {
    /// Creates a private directory (mode 0700: no other user can connect
    /// or pose as the agent), listens on [`SOCKET_NAME`] in it, and starts
    /// serving `commands`.
    pub async fn bind(commands: C, options: ServerOptions) -> Result<Self, Error> {
        let dir = private_dir(options.parent_dir.as_deref())?;
        let socket = dir.path().join(SOCKET_NAME);
        let listener = UnixListener::bind(&socket).map_err(|source| Error::Listen {
            path: socket.clone(),
            source,
        })?;
        let shared = Arc::new(Shared {
            commands,
            contexts: Mutex::new(HashMap::new()),
            options,
        });
        let stop = CancellationToken::new();
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), stop.clone()));
        debug!(socket = %socket.display(), "hook tool server listening");
        Ok(Self {
            shared,
            socket,
            dir: Some(dir),
            stop,
            accept: Some(accept),
        })
    }

    /// The socket hook tools connect to (for [`AGENT_SOCKET_ENV`]).
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Registers a hook run's context. Its commands are served until the
    /// returned registration is finished or dropped; after that its id is
    /// refused (`bad request: unknown context "…"`).
    pub fn register(&self, context: C::Context) -> Registration<C> {
        let label = self.shared.commands.context_label(&context);
        let slot = Arc::new(tokio::sync::Mutex::new(Some(context)));
        let mut contexts = self.shared.contexts();
        let id = loop {
            let id = format!("{label}:{}", random_u64());
            if !contexts.contains_key(&id) {
                break id;
            }
        };
        contexts.insert(id.clone(), slot.clone());
        drop(contexts);
        Registration {
            id,
            socket: self.socket.clone(),
            shared: self.shared.clone(),
            slot,
        }
    }

    /// Stops accepting connections, waits for requests in progress (at
    /// most [`ServerOptions::shutdown_timeout`], then aborts them), and
    /// removes the socket and its directory.
    pub async fn close(mut self) -> Result<(), Error> {
        self.stop.cancel();
        if let Some(accept) = self.accept.take()
            && let Err(error) = accept.await
            && error.is_panic()
        {
            warn!(%error, "hook tool server's accept loop panicked");
        }
        match self.dir.take() {
            Some(dir) => {
                let path = dir.path().to_path_buf();
                dir.close()
                    .map_err(|source| Error::RemoveDir { path, source })
            }
            None => Ok(()),
        }
    }
}

impl<C: Commands> Drop for ToolServer<C> {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(accept) = self.accept.take() {
            // Aborting the accept loop drops its set of connections, which
            // aborts them; the directory goes with `self.dir`.
            accept.abort();
        }
    }
}

/// A registered context. Finish it (or drop it) when the hook is done.
pub struct Registration<C: Commands = BuiltinCommands> {
    id: String,
    socket: PathBuf,
    shared: Arc<Shared<C>>,
    slot: Arc<Slot<C::Context>>,
}

impl<C: Commands> std::fmt::Debug for Registration<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<C: Commands> Registration<C> {
    /// The context id, for [`CONTEXT_ID_ENV`].
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The environment a hook needs to reach this context: the context id
    /// and the socket, under Steward's names and juju's.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let socket = self.socket.display().to_string();
        vec![
            (CONTEXT_ID_ENV, self.id.clone()),
            (JUJU_CONTEXT_ID_ENV, self.id.clone()),
            (AGENT_SOCKET_ENV, socket.clone()),
            (JUJU_AGENT_SOCKET_ENV, socket),
        ]
    }

    /// Unregisters the context (later requests with its id are refused),
    /// waits for a command of it in progress to finish, and gives the
    /// context back, with whatever its commands buffered.
    pub async fn finish(self) -> C::Context {
        let slot = self.slot.clone();
        drop(self); // unregisters
        let taken = slot.lock().await.take();
        #[allow(
            clippy::expect_used,
            reason = "only `finish` takes the context out, and it consumes the registration"
        )]
        let context = taken.expect("a registered context is taken only once");
        context
    }

    fn unregister(&self) {
        self.shared.contexts().remove(&self.id);
    }
}

impl<C: Commands> Drop for Registration<C> {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// A random u64 for context ids, from the standard library's randomly
/// keyed hasher and a counter (ids must be unguessable only to other hook
/// runs, which cannot see the socket's private directory anyway; the
/// registry also checks uniqueness).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

fn private_dir(parent: Option<&Path>) -> Result<TempDir, Error> {
    use std::os::unix::fs::PermissionsExt;
    let mut builder = tempfile::Builder::new();
    builder
        .prefix("steward-tools-")
        .permissions(std::fs::Permissions::from_mode(0o700));
    let created = match parent {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    };
    created.map_err(|source| Error::CreateDir {
        path: parent.map_or_else(std::env::temp_dir, Path::to_path_buf),
        source,
    })
}

async fn accept_loop<C: Commands>(
    listener: UnixListener,
    shared: Arc<Shared<C>>,
    stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, shared.clone(), stop.clone()));
                }
                Err(error) => {
                    // Out of file descriptors, typically: back off instead
                    // of spinning, and keep serving the connections we have.
                    warn!(%error, "hook tool server cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(shared.options.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = connections.len(),
            "hook tool commands still running at shutdown; aborting them"
        );
        connections.shutdown().await;
    }
}

/// Serves one connection: requests one after the other until the client
/// hangs up, stalls, or the server stops.
async fn serve_connection<C: Commands>(
    mut stream: UnixStream,
    shared: Arc<Shared<C>>,
    stop: CancellationToken,
) {
    let timeout = shared.options.request_timeout;
    loop {
        // A client that stalls mid-frame only ever holds up this task, and
        // only for `request_timeout`.
        let frame = tokio::select! {
            () = stop.cancelled() => return,
            frame = tokio::time::timeout(
                timeout,
                wire::read_frame_async(&mut stream, wire::MAX_REQUEST_BYTES),
            ) => frame,
        };
        let (answer, keep_open) = match frame {
            Err(_) => {
                debug!(
                    ?timeout,
                    "hook tool client sent no complete request in time; closing"
                );
                return;
            }
            Ok(Err(FrameError::Closed)) => return,
            Ok(Err(error @ FrameError::TooLarge { .. })) => {
                (ToolAnswer::bad_request(format!("request {error}")), false)
            }
            Ok(Err(FrameError::Io(error))) => {
                debug!(%error, "hook tool connection failed");
                return;
            }
            Ok(Ok(payload)) => (answer(&shared, &payload).await, true),
        };
        let encoded = encode_answer(&answer);
        match tokio::time::timeout(timeout, wire::write_frame_async(&mut stream, &encoded)).await {
            Ok(Ok(())) if keep_open => {}
            Ok(Ok(())) => return,
            Ok(Err(error)) => {
                debug!(%error, "cannot send a hook tool answer");
                return;
            }
            Err(_) => {
                debug!(?timeout, "hook tool client did not read its answer in time");
                return;
            }
        }
    }
}

fn encode_answer(answer: &ToolAnswer) -> Vec<u8> {
    let encoded = serde_json::to_vec(answer).unwrap_or_default();
    if encoded.len() <= wire::MAX_ANSWER_BYTES {
        return encoded;
    }
    let too_large = ToolAnswer::Output(ToolOutput {
        code: 1,
        stdout: String::new(),
        stderr: format!(
            "error: the command's output ({} bytes) exceeds the limit of {} bytes; \
             write it to a file with --output FILE\n",
            encoded.len(),
            wire::MAX_ANSWER_BYTES
        ),
    });
    serde_json::to_vec(&too_large).unwrap_or_default()
}

/// Checks one request in juju's order and runs its command.
async fn answer<C: Commands>(shared: &Shared<C>, payload: &[u8]) -> ToolAnswer {
    let request: ToolRequest = match serde_json::from_slice(payload) {
        Ok(request) => request,
        Err(error) => return ToolAnswer::bad_request(format!("malformed request: {error}")),
    };
    if request.command.is_empty() {
        return ToolAnswer::bad_request("command not specified");
    }
    if !Path::new(&request.dir).is_absolute() {
        return ToolAnswer::bad_request(format!("dir {:?} is not absolute", request.dir));
    }
    let unknown_context =
        || ToolAnswer::bad_request(format!("unknown context {:?}", request.context_id));
    let Some(slot) = shared.contexts().get(&request.context_id).cloned() else {
        return unknown_context();
    };
    if !shared.commands.contains(&request.command) {
        return ToolAnswer::bad_request(format!("unknown command {:?}", request.command));
    }
    // Never the arguments: they carry what hooks pass each other
    // (`relation-set password=…`, `state-set token=…`).
    debug!(command = %request.command, args = request.args.len(), "running hook tool");
    debug!(context_id = %request.context_id, dir = %request.dir, "hook tool request");
    let mut context = slot.lock().await;
    // Finished while this request waited for the lock.
    let Some(context) = context.as_mut() else {
        return unknown_context();
    };
    let mut invocation = Invocation::new(request.command, request.args, request.dir);
    let result = shared.commands.run(context, &mut invocation).await;
    ToolAnswer::Output(invocation.finish(result))
}
