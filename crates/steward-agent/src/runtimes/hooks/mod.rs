//! A runtime's lifecycle hooks, as the agent runs them: one hook driver per
//! runtime with hooks (the worker `hooks/<id>`, [`driver`]), the services
//! every driver shares ([`HookServices`]: the hook tool server, the tools
//! directory, the leader that ties hook processes to the agent's life), the
//! agent's side of a hook's tool commands ([`backend`]) and the hook's
//! environment ([`env`]).
//!
//! The rules — which hook is due, the steps that make a hook run
//! crash-safe — are `steward_hooks::lifecycle`'s; this module supplies the
//! facts (settings, the serving version, operator requests), runs the
//! hooks and persists their records in the store. It must never block a
//! runtime's calls: the runtime serves while its hooks run, fail or wait
//! (only a first start waits for `install`).

mod backend;
pub(crate) mod driver;
mod env;
mod relations;

use std::path::{Path, PathBuf};

use steward_hooks::WorkloadStatus;
use steward_hooks::lifecycle::UnitRecord;
use steward_hooks::runner::LeaderCommand;
use steward_hooks::tool::{ServerOptions, ToolServer, create_tools_dir};
use steward_store::{RecordWrite, Store};

use crate::relations::records;

/// The store's record kind of units' hook records.
const RECORD_KIND: &str = "hooks";
/// The store's record kind of units' workload statuses.
const WORKLOAD_KIND: &str = "workload";

/// What every runtime's hook driver shares.
#[derive(Debug)]
pub(crate) struct HookServices {
    /// The agent's name: units are `<runtime>/<agent>`.
    pub(crate) agent: String,
    /// The directory of links to the hook tools, first on hooks' `PATH`.
    pub(crate) tools_dir: PathBuf,
    /// The one hook tool server of the agent.
    pub(crate) server: ToolServer,
    /// How hooks are started so that they die with the agent; `None` runs
    /// them directly (tests of the agent's library, which has no `steward`
    /// binary to run).
    pub(crate) leader: Option<LeaderCommand>,
}

impl HookServices {
    /// Starts the tool server and makes the tools directory under
    /// `data_dir`, with links to `executable` (the `steward` binary), whose
    /// `hook-leader` mode leads hooks' process groups.
    /// The tool server's socket directory is made in `socket_parent`
    /// (the system's temp dir when `None`).
    pub(crate) async fn start(
        agent: String,
        data_dir: &Path,
        socket_parent: Option<&Path>,
        executable: &Path,
        leader: bool,
    ) -> Result<Self, steward_hooks::Error> {
        let tools_dir = data_dir.join("tools");
        let (dir, exe) = (tools_dir.clone(), executable.to_path_buf());
        tokio::task::spawn_blocking(move || create_tools_dir(&dir, &exe))
            .await
            .map_err(|error| steward_hooks::Error::ToolsDir {
                path: tools_dir.clone(),
                source: std::io::Error::other(error.to_string()),
            })??;
        let server = ToolServer::builtin(ServerOptions {
            parent_dir: socket_parent.map(Path::to_path_buf),
            ..ServerOptions::default()
        })
        .await?;
        Ok(Self {
            agent,
            tools_dir,
            server,
            leader: leader.then(|| LeaderCommand {
                program: executable.to_path_buf(),
                args: vec!["hook-leader".into()],
            }),
        })
    }

    /// The unit name of `runtime` on this agent.
    pub(crate) fn unit(&self, runtime: &str) -> String {
        format!("{runtime}/{}", self.agent)
    }
}

/// The unit's hook record, or a fresh one.
pub(crate) async fn load_record(store: &Store, runtime: &str) -> Result<UnitRecord, String> {
    match store.record(RECORD_KIND, runtime).await {
        Ok(None) => Ok(UnitRecord::default()),
        Ok(Some(bytes)) => serde_json::from_slice(&bytes)
            .map_err(|error| format!("the hook record of {runtime} is unreadable: {error}")),
        Err(error) => Err(error.to_string()),
    }
}

/// The write of the unit's hook record, for a transaction.
pub(crate) fn record_write(runtime: &str, record: &UnitRecord) -> Result<RecordWrite, String> {
    let bytes = serde_json::to_vec(record).map_err(|error| error.to_string())?;
    Ok(RecordWrite::set(RECORD_KIND, runtime, bytes))
}

/// Writes the unit's hook record, durably.
pub(crate) async fn save_record(
    store: &Store,
    runtime: &str,
    record: &UnitRecord,
) -> Result<(), String> {
    store
        .commit_records(vec![record_write(runtime, record)?])
        .await
        .map_err(|error| error.to_string())
}

/// Forgets the unit's hook record, workload status and what its hooks saw
/// of relations (the runtime left the config: added again, it installs
/// again, and takes part in its relations afresh).
pub(crate) async fn forget_unit(store: &Store, runtime: &str) -> Result<(), String> {
    let mut writes = vec![
        RecordWrite::delete(RECORD_KIND, runtime),
        RecordWrite::delete(WORKLOAD_KIND, runtime),
    ];
    for id in records::state_ids(store, runtime).await? {
        writes.push(records::delete_state(runtime, id));
    }
    store
        .commit_records(writes)
        .await
        .map_err(|error| error.to_string())
}

/// The unit's workload status, as last set.
pub(crate) async fn load_workload(
    store: &Store,
    runtime: &str,
) -> Result<Option<WorkloadStatus>, String> {
    match store.record(WORKLOAD_KIND, runtime).await {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| format!("the workload status of {runtime} is unreadable: {error}")),
        Err(error) => Err(error.to_string()),
    }
}

/// Writes the unit's workload status, durably.
pub(crate) async fn save_workload(
    store: &Store,
    runtime: &str,
    status: &WorkloadStatus,
) -> Result<(), String> {
    let bytes = serde_json::to_vec(status).map_err(|error| error.to_string())?;
    store
        .commit_records(vec![RecordWrite::set(WORKLOAD_KIND, runtime, bytes)])
        .await
        .map_err(|error| error.to_string())
}
