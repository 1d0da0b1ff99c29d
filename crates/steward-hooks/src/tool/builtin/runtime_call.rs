//! `runtime-call`: a call into the runtime's active version.

use serde_json::Value;

use super::split_first;
use crate::HookContext;
use crate::tool::{
    CommandError, CommandSpec, FORMAT_FLAG, Flag, Format, Invocation, OUTPUT_FLAG, Output,
    check_empty,
};

pub(super) const RUNTIME_CALL: CommandSpec = CommandSpec {
    name: "runtime-call",
    args: "<method> [<args-json>]",
    purpose: "call a method of the runtime's active version",
    doc: "The arguments are one JSON value (default null). The result is \
          printed as JSON unless --format says otherwise; a call that fails \
          exits 1 with the runtime's error.",
    flags: &[
        Flag {
            default: "json",
            ..FORMAT_FLAG
        },
        OUTPUT_FLAG,
    ],
};

pub(super) async fn runtime_call(
    context: &HookContext,
    invocation: &mut Invocation,
) -> Result<(), CommandError> {
    let args = RUNTIME_CALL.parse(invocation.args())?;
    let output = Output::from_args(&args, Format::Json)?;
    let (method, rest) = split_first(args.into_positional());
    let Some(method) = method else {
        return Err(CommandError::usage("no method specified"));
    };
    let (call_args, extra) = split_first(rest);
    check_empty(&extra)?;
    let call_args = match call_args {
        None => Value::Null,
        Some(text) => serde_json::from_str(&text).map_err(|error| {
            CommandError::usage(format!("arguments are not valid JSON ({error}): {text:?}"))
        })?,
    };
    let result = context
        .backend()
        .runtime_call(&method, call_args)
        .await
        .map_err(|error| CommandError::failed(format!("call {method:?} failed: {error}")))?;
    output.write(invocation, &result)
}
