//! One attempt to run the process: private socket, spawn, accept,
//! handshake — and, once it runs, the ways it can end.
//!
//! Every resource of an attempt (temp dir, socket, child, process group,
//! connection) is owned by [`Running`] or dropped on the failure path, so
//! no attempt leaks a process or a directory, however it ends.

use std::process::Stdio;
use std::sync::Arc;

use nix::sys::signal::Signal;
use steward_protocol::{
    Body, Connection, ErrorBody, HOST_SOCKET_ENV, Handler, PROTOCOL_VERSION, Peer,
    RuntimeInfoRequest, RuntimeInfoResponse, StorageKeys, StorageValue, unix_socket,
};
use tempfile::TempDir;
use tokio::net::UnixListener;
use tokio::process::{Child, Command};
use tracing::warn;

use super::ProcessConfig;
use super::group::ProcessGroup;
use super::output::{self, OutputStream};
use crate::{ProcessStatus, StartError, Storage};

/// A process that passed its handshake.
pub(super) struct Running {
    pub(super) connection: Connection,
    pub(super) info: RuntimeInfoResponse,
    child: Child,
    /// Declared after `child` so that it is dropped after it: the group
    /// kill then catches anything the child left behind.
    group: ProcessGroup,
    exit_status: Option<ProcessStatus>,
}

impl Running {
    pub(super) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for the process to exit; returns its status. Cancel safe.
    pub(super) async fn exited(&mut self) -> ProcessStatus {
        if let Some(status) = &self.exit_status {
            return status.clone();
        }
        let status = ProcessStatus::from(self.child.wait().await);
        self.exit_status = Some(status.clone());
        status
    }

    /// Kills the whole process group and reaps the process.
    pub(super) async fn kill(&mut self) -> ProcessStatus {
        self.connection.close("runtime killed by the host");
        self.group.signal(Signal::SIGKILL);
        self.exited().await
    }

    /// `RuntimeShutdown`, a grace period, SIGTERM, a grace period, SIGKILL.
    pub(super) async fn stop_gracefully(&mut self, config: &ProcessConfig) -> ProcessStatus {
        let asked = tokio::time::timeout(
            config.shutdown_grace,
            self.connection.call(Body::RuntimeShutdown),
        )
        .await;
        if !matches!(asked, Ok(Ok(_))) {
            warn!("runtime did not acknowledge the shutdown request");
        }
        // Hanging up is the runtime's cue to exit.
        self.connection.close("host stopped the runtime");
        if let Ok(status) = tokio::time::timeout(config.shutdown_grace, self.exited()).await {
            self.group.signal(Signal::SIGKILL); // stragglers of the group
            return status;
        }
        warn!("runtime did not exit after shutdown; sending SIGTERM");
        self.group.signal(Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(config.term_grace, self.exited()).await {
            self.group.signal(Signal::SIGKILL);
            return status;
        }
        warn!("runtime ignored SIGTERM; sending SIGKILL");
        self.kill().await
    }
}

/// Runs the configured program and completes its handshake, or explains
/// why not. Dropping the future mid-way kills and reaps what it started.
pub(super) async fn start_process(
    config: &ProcessConfig,
    storage: Arc<dyn Storage>,
) -> Result<Running, StartError> {
    let dir = private_dir(config.socket_parent.as_deref()).map_err(|e| StartError::SocketDir {
        reason: e.to_string(),
    })?;
    let socket = dir.path().join("host.sock");
    let listener = UnixListener::bind(&socket).map_err(|e| StartError::Listen {
        path: socket.clone(),
        reason: e.to_string(),
    })?;
    let mut child = spawn(config, &socket).await?;
    let group =
        child
            .id()
            .and_then(ProcessGroup::new)
            .ok_or(StartError::ExitedBeforeConnecting {
                status: ProcessStatus::Unknown(Arc::from("it was reaped at once")),
            })?;
    output::forward(child.stdout.take(), OutputStream::Stdout, config);
    output::forward(child.stderr.take(), OutputStream::Stderr, config);

    let accepted = tokio::select! {
        accepted = tokio::time::timeout(config.accept_timeout, listener.accept()) => accepted,
        status = child.wait() => {
            return Err(StartError::ExitedBeforeConnecting { status: status.into() });
        }
    };
    let stream = match accepted {
        Ok(Ok((stream, _))) => stream,
        Ok(Err(error)) => {
            return Err(StartError::Accept {
                reason: error.to_string(),
            });
        }
        Err(_) => {
            return Err(StartError::ConnectTimeout {
                within: config.accept_timeout,
            });
        }
    };
    // The connection is all we need now: removing the socket and its
    // directory at once means nobody else can connect, and a host killed
    // with SIGKILL later leaves nothing behind in the temp dir.
    drop(listener);
    drop(dir);

    let (read, write) = unix_socket::split(stream).map_err(|error| StartError::Accept {
        reason: error.to_string(),
    })?;
    let connection = Connection::start(
        read,
        write,
        StorageHandler {
            storage,
            namespace: config.runtime_id.clone(),
        },
        config.limits,
    );
    let info = tokio::select! {
        info = handshake(config, &connection) => info?,
        status = child.wait() => {
            return Err(StartError::ExitedDuringHandshake { status: status.into() });
        }
    };
    Ok(Running {
        connection,
        info,
        child,
        group,
        exit_status: None,
    })
}

/// Starts the program in a process group of its own, with nothing of the
/// host's environment but its socket.
///
/// `Command::spawn` is synchronous (fork, exec, and on a loaded machine
/// milliseconds of page-table copying), so it runs on a blocking thread:
/// calls served by the same tokio worker thread must not stall behind a
/// start.
async fn spawn(config: &ProcessConfig, socket: &std::path::Path) -> Result<Child, StartError> {
    let mut command = Command::new(&config.program);
    command
        .args(&config.args)
        .env_clear()
        .envs(config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(HOST_SOCKET_ENV, socket)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let spawn_error = |reason: String| StartError::Spawn {
        program: config.program.clone(),
        reason,
    };
    tokio::task::spawn_blocking(move || command.spawn())
        .await
        .map_err(|error| spawn_error(format!("the spawning thread failed: {error}")))?
        .map_err(|error| spawn_error(error.to_string()))
}

/// Asks the runtime who it is and checks the answer against the config.
async fn handshake(
    config: &ProcessConfig,
    connection: &Connection,
) -> Result<RuntimeInfoResponse, StartError> {
    let request = connection.call(Body::RuntimeInfoRequest(RuntimeInfoRequest {
        runtime_id: config.runtime_id.to_string(),
        protocol_version: PROTOCOL_VERSION,
        expected_version: config.version.to_string(),
    }));
    let info = match tokio::time::timeout(config.handshake_timeout, request).await {
        Ok(Ok(Body::RuntimeInfoResponse(info))) => info,
        Ok(Ok(other)) => return Err(StartError::UnexpectedAnswer { got: other.name() }),
        Ok(Err(error)) => {
            return Err(StartError::Handshake {
                reason: error.to_string(),
            });
        }
        Err(_) => {
            return Err(StartError::HandshakeTimeout {
                within: config.handshake_timeout,
            });
        }
    };
    if info.protocol_version.major != PROTOCOL_VERSION.major {
        return Err(StartError::ProtocolMismatch {
            runtime: info.protocol_version,
            host: PROTOCOL_VERSION,
        });
    }
    if info.runtime_version != *config.version {
        return Err(StartError::VersionMismatch {
            reported: info.runtime_version,
            configured: config.version.clone(),
        });
    }
    Ok(info)
}

/// A temporary directory only this user can enter (0700), for the socket:
/// no other local user may connect to the host or pose as the runtime. In
/// `parent` if given, else in the system's temp dir.
fn private_dir(parent: Option<&std::path::Path>) -> std::io::Result<TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let mut builder = tempfile::Builder::new();
    builder
        .prefix("steward-")
        .permissions(std::fs::Permissions::from_mode(0o700));
    match parent {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
}

/// Serves the runtime's host storage requests, in its namespace.
struct StorageHandler {
    storage: Arc<dyn Storage>,
    namespace: Arc<str>,
}

/// `host` module error codes.
const CODE_STORAGE: u32 = 1;

impl Handler for StorageHandler {
    async fn handle(&self, request: Body, _peer: &Peer) -> Body {
        let (storage, namespace) = (&self.storage, &*self.namespace);
        let result = match request {
            Body::HostStorageGet(key) => storage
                .get(namespace, &key.key)
                .await
                .map(|value| Body::HostStorageGetResponse(StorageValue { value })),
            Body::HostStorageSet(entry) => storage
                .set(namespace, &entry.key, entry.value)
                .await
                .map(|()| Body::Empty),
            Body::HostStorageDelete(key) => storage
                .delete(namespace, &key.key)
                .await
                .map(|()| Body::Empty),
            Body::HostStorageList(prefix) => storage
                .list(namespace, &prefix.key)
                .await
                .map(|keys| Body::HostStorageListResponse(StorageKeys { keys })),
            other => {
                return Body::Error(ErrorBody::new(
                    "protocol",
                    ErrorBody::CODE_UNSUPPORTED,
                    format!("the host does not serve {}", other.name()),
                ));
            }
        };
        result.unwrap_or_else(|error| {
            Body::Error(ErrorBody::new("host", CODE_STORAGE, error.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_socket_directory_is_private() {
        let dir = super::private_dir(None).unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("steward-")
        );
        let parent = tempfile::tempdir().unwrap();
        let inside = super::private_dir(Some(parent.path())).unwrap();
        assert_eq!(inside.path().parent(), Some(parent.path()));
    }
}
