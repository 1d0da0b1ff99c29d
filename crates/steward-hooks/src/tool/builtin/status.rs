//! `status-set` and `status-get`: the unit's workload status.
//!
//! `status-set` applies at once, through the backend: it reports progress
//! while the hook runs, and is kept even if the hook fails.

use serde_json::{Value, json};

use super::split_first;
use crate::HookContext;
use crate::context::{WorkloadState, WorkloadStatus};
use crate::tool::{
    CommandError, CommandSpec, FORMAT_FLAG, Flag, Format, Invocation, OUTPUT_FLAG, Output,
    check_empty,
};

pub(super) const STATUS_SET: CommandSpec = CommandSpec {
    name: "status-set",
    args: "maintenance|blocked|waiting|active [<message>]",
    purpose: "set the unit's workload status",
    doc: "Takes effect at once, whether or not the hook succeeds.",
    flags: &[],
};

pub(super) const STATUS_GET: CommandSpec = CommandSpec {
    name: "status-get",
    args: "",
    purpose: "print the unit's workload status",
    doc: "Prints the status name (`active`). With --include-data, prints the \
          status and its message as a map ({\"message\": \"ready\", \"status\": \
          \"active\"} in JSON), as juju's status-get does.",
    flags: &[
        Flag {
            names: &["include-data"],
            value: None,
            default: "",
            help: "print the message too, as a map",
        },
        FORMAT_FLAG,
        OUTPUT_FLAG,
    ],
};

pub(super) async fn status_set(
    context: &HookContext,
    invocation: &mut Invocation,
) -> Result<(), CommandError> {
    let args = STATUS_SET.parse(invocation.args())?;
    let (state, rest) = split_first(args.into_positional());
    let Some(state) = state else {
        return Err(CommandError::usage(
            "no status specified (use maintenance, blocked, waiting or active)",
        ));
    };
    let Some(state) = WorkloadState::SETTABLE
        .into_iter()
        .find(|settable| settable.as_str() == state)
    else {
        return Err(CommandError::usage(format!(
            "invalid status {state:?}, expected one of [maintenance blocked waiting active]"
        )));
    };
    let (message, extra) = split_first(rest);
    check_empty(&extra)?;
    context
        .backend()
        .set_status(WorkloadStatus::new(state, message.unwrap_or_default()))
        .await
        .map_err(|error| CommandError::failed(format!("cannot set status: {error}")))
}

pub(super) async fn status_get(
    context: &HookContext,
    invocation: &mut Invocation,
) -> Result<(), CommandError> {
    let args = STATUS_GET.parse(invocation.args())?;
    let output = Output::from_args(&args, Format::Smart)?;
    let include_data = args.bool("include-data");
    check_empty(args.positional())?;
    let status = context
        .backend()
        .status()
        .await
        .map_err(|error| CommandError::failed(format!("cannot read status: {error}")))?;
    let value = if include_data {
        json!({"status": status.status.as_str(), "message": status.message})
    } else {
        Value::String(status.status.as_str().into())
    };
    output.write(invocation, &value)
}
