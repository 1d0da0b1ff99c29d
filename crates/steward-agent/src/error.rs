//! The agent's one error type. Messages are written for the operator who
//! reads them on a terminal: they say what failed and what to do.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::ConfigErrors;

/// What can stop `steward run` from starting or make it fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fleet mode could not start: etcd is unreachable or refused us.
    #[error("{0}")]
    Fleet(steward_etcd::Error),
    /// The config file is invalid (every problem, with file:line:column).
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The data dir could not be created or used.
    #[error("data dir {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// No config was given, and this build has no built-in demo.
    #[error(
        "no --config given, and this steward was built without its demo (cargo feature `demo`); pass --config FILE"
    )]
    NoDemo,
    /// No data dir was given and the user's data directory is unknown.
    #[error("cannot find the user's data directory; pass --data-dir DIR")]
    NoDataDir,
    /// The embedded store failed to open.
    #[error(transparent)]
    Store(#[from] steward_store::Error),
    /// The API address could not be bound.
    #[error(
        "cannot listen on {addr}: {reason} (is another steward agent running? pick another address with --listen)"
    )]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// A non-loopback address without a token.
    #[error(
        "refusing to serve the control API on non-loopback address {addr} without authentication; pass --token-file FILE (a file holding a secret token), or listen on 127.0.0.1"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The token file could not be read or is empty.
    #[error("token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The agent's name (`--name`, or the host name) cannot name units.
    #[error("agent name {name:?} cannot be used: {reason}; pass --name NAME")]
    BadName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The hook tool server or the tools directory could not be set up.
    #[error("cannot set up hooks: {0}")]
    Hooks(#[source] steward_hooks::Error),
    /// The supervision tree failed.
    #[error(transparent)]
    Worker(#[from] steward_worker::Error),
    /// Anything else that prevents the agent from running (e.g. the tokio
    /// runtime or the signal handlers).
    #[error("{0}")]
    Startup(String),
}
