//! What a runtime's versions run on: [`Hosts`] makes the
//! [`RuntimeHost`] of one version. In the agent that is a [`ProcessHost`]
//! whose host storage lives in the store and whose output lines go to the
//! runtime's logs ([`ProcessHosts`]); the unit
//! tests of reconciliation and the manager use the host crate's fake. This
//! module must never start a host: it only builds them.

use std::sync::Arc;
use std::time::Duration;

use steward_host::{ProcessConfig, ProcessHost, RuntimeHost, Storage};
use steward_worker::Backoff;

use super::Registry;
use crate::config::{RuntimeConfig, VersionConfig};

/// How long a runtime process must run for its restart delay to start
/// over from `restart.initial`.
const STABLE_RUN: Duration = Duration::from_secs(60);

/// Makes the host of one version of a runtime.
pub(crate) trait Hosts: Send + Sync + std::fmt::Debug + 'static {
    /// A new, not yet started host for `version` of `runtime`.
    fn host(&self, runtime: &RuntimeConfig, version: &VersionConfig) -> Arc<dyn RuntimeHost>;
}

/// Versions as child processes, their host storage in `storage`, their
/// socket directories in `socket_parent` (the agent's run directory),
/// their output lines in the logs of their runtime in `registry`.
pub(crate) struct ProcessHosts {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) socket_parent: Option<std::path::PathBuf>,
    pub(crate) registry: Arc<Registry>,
}

impl std::fmt::Debug for ProcessHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessHosts").finish_non_exhaustive()
    }
}

impl Hosts for ProcessHosts {
    fn host(&self, runtime: &RuntimeConfig, version: &VersionConfig) -> Arc<dyn RuntimeHost> {
        let mut config = ProcessConfig::new(
            runtime.id.as_str(),
            version.version.as_str(),
            version.command.clone(),
        )
        .args(version.args.iter().cloned());
        config.env = version
            .env
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        config.backoff = Backoff::new(runtime.restart.initial)
            .max(runtime.restart.max)
            .reset_after(STABLE_RUN);
        config.accept_timeout = runtime.timeouts.start;
        config.handshake_timeout = runtime.timeouts.handshake;
        config.abort_timeout = runtime.timeouts.abort;
        config.liveness = runtime.liveness;
        config.socket_parent.clone_from(&self.socket_parent);
        // The manager registers a runtime before its versions are built.
        config.output = self
            .registry
            .get(&runtime.id)
            .map(|hosted| hosted.logs().sink());
        Arc::new(ProcessHost::new(config, self.storage.clone()))
    }
}
