//! The agent's side of a hook's tool commands ([`ContextBackend`]): the
//! unit's committed state, its workload status (written at once, and
//! shown by the API), the hook's log messages, and calls into the
//! runtime's active version. This module must never buffer or commit a
//! hook's changes: the context buffers them and the driver commits them.

use std::collections::BTreeMap;
use std::sync::Arc;

use steward_hooks::{ContextBackend, LogLevel, RelationInfo, WorkloadStatus};
use steward_protocol::{Body, CallRequest, CallResponse};
use steward_store::Store;
use steward_worker::{BoxError, BoxFuture};
use tracing::{debug, error, info, trace, warn};

use super::relations::RelationView;
use super::save_workload;
use crate::json;
use crate::relations::source::RelationSource;
use crate::runtimes::Hosted;

/// One hook run's backend.
#[derive(Debug)]
pub(super) struct AgentBackend {
    pub(super) store: Store,
    pub(super) hosted: Arc<Hosted>,
    /// The unit's state as committed when the hook started (only the hook
    /// driver commits it, and it is busy running this hook).
    pub(super) state: BTreeMap<String, String>,
    /// The unit's relations and their members as committed when the hook
    /// started (for the same reason).
    pub(super) relations: RelationView,
    /// Where units' relation settings are read.
    pub(super) source: Arc<dyn RelationSource>,
}

impl ContextBackend for AgentBackend {
    fn unit_state(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>, BoxError>> {
        Box::pin(async move { Ok(self.state.clone()) })
    }

    fn set_status(&self, status: WorkloadStatus) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            save_workload(&self.store, &self.hosted.id, &status)
                .await
                .map_err(|error| format!("cannot save the status: {error}"))?;
            self.hosted
                .update_hooks(|hooks| hooks.workload = Some(status));
            Ok(())
        })
    }

    fn status(&self) -> BoxFuture<'_, Result<WorkloadStatus, BoxError>> {
        Box::pin(async move { Ok(self.hosted.hook_status().workload.unwrap_or_default()) })
    }

    fn log(&self, level: LogLevel, hook: &str, message: &str) {
        let runtime = self.hosted.id.as_str();
        match level {
            LogLevel::Trace => trace!(runtime, hook, "{message}"),
            LogLevel::Debug => debug!(runtime, hook, "{message}"),
            LogLevel::Info => info!(runtime, hook, "{message}"),
            LogLevel::Warning => warn!(runtime, hook, "{message}"),
            LogLevel::Error | LogLevel::Critical => error!(runtime, hook, "{message}"),
        }
    }

    fn runtime_call<'a>(
        &'a self,
        method: &'a str,
        args: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, BoxError>> {
        Box::pin(async move {
            let id = &self.hosted.id;
            let aggregate = self
                .hosted
                .aggregate()
                .ok_or_else(|| format!("runtime {id} is not running"))?;
            let deadline = self.hosted.config().call_timeout;
            let body = Body::RuntimeCallRequest(CallRequest {
                method: method.to_owned(),
                args: json::from_json(&args)?,
            });
            let answer = tokio::time::timeout(deadline, aggregate.call_within(body, deadline))
                .await
                .map_err(|_| {
                    format!(
                        "runtime {id} did not answer within its call timeout ({})",
                        humantime::format_duration(deadline)
                    )
                })?;
            match answer? {
                Body::RuntimeCallResponse(CallResponse { result }) => Ok(json::to_json(&result)?),
                other => Err(format!(
                    "runtime {id} answered a call with {} instead of a call response",
                    other.name()
                )
                .into()),
            }
        })
    }

    fn relations(&self) -> BoxFuture<'_, Result<Vec<RelationInfo>, BoxError>> {
        Box::pin(async move { Ok(self.relations.relations.clone()) })
    }

    fn relation_members(&self, relation_id: u64) -> BoxFuture<'_, Result<Vec<String>, BoxError>> {
        Box::pin(async move {
            if let Some(members) = self.relations.members.get(&relation_id) {
                return Ok(members.clone());
            }
            match self.relations.relations.iter().any(|r| r.id == relation_id) {
                // The unit has not joined it yet: nobody is seen.
                true => Ok(Vec::new()),
                false => Err(format!("relation {relation_id} not found").into()),
            }
        })
    }

    fn relation_settings<'a>(
        &'a self,
        relation_id: u64,
        unit: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, BoxError>> {
        Box::pin(async move {
            self.source
                .settings(relation_id, unit)
                .await
                .map_err(|error| {
                    format!("cannot read {unit}'s settings in relation {relation_id}: {error}")
                        .into()
                })
        })
    }
}
