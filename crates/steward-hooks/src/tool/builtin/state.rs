//! `state-get`, `state-set` and `state-delete`: the unit's persistent
//! key–value state. Writes are buffered in the context and committed by
//! the agent only if the hook succeeds; reads see the hook's own writes.

use serde_json::Value;

use super::split_first;
use crate::HookContext;
use crate::tool::{
    CommandError, CommandSpec, FORMAT_FLAG, Flag, Format, Invocation, OUTPUT_FLAG, Output,
    check_empty,
};

pub(super) const STATE_GET: CommandSpec = CommandSpec {
    name: "state-get",
    args: "[<key>]",
    purpose: "print the unit's persistent state",
    doc: "With a key, prints its value (nothing, or `null` in JSON, if it is \
          not set, unless --strict). Without one, prints the whole state.",
    flags: &[
        Flag {
            names: &["strict"],
            value: None,
            default: "",
            help: "fail if the key is not set",
        },
        FORMAT_FLAG,
        OUTPUT_FLAG,
    ],
};

pub(super) const STATE_SET: CommandSpec = CommandSpec {
    name: "state-set",
    args: "<key>=<value> ...",
    purpose: "set values in the unit's persistent state",
    doc: "`key=` deletes the key. Only the first `=` separates key and value. \
          Changes are kept only if the hook succeeds.",
    flags: &[],
};

pub(super) const STATE_DELETE: CommandSpec = CommandSpec {
    name: "state-delete",
    args: "<key>",
    purpose: "delete a key from the unit's persistent state",
    doc: "The delete is kept only if the hook succeeds.",
    flags: &[],
};

pub(super) async fn state_get(
    context: &HookContext,
    invocation: &mut Invocation,
) -> Result<(), CommandError> {
    let args = STATE_GET.parse(invocation.args())?;
    let output = Output::from_args(&args, Format::Smart)?;
    let strict = args.bool("strict");
    let (key, extra) = split_first(args.into_positional());
    check_empty(&extra)?;
    let cannot_read =
        |error| CommandError::failed(format!("cannot read the unit's state: {error}"));
    let value = match key {
        None => Value::Object(
            context
                .state()
                .await
                .map_err(cannot_read)?
                .into_iter()
                .map(|(key, value)| (key, Value::String(value)))
                .collect(),
        ),
        Some(key) => match context.state_value(&key).await.map_err(cannot_read)? {
            Some(value) => Value::String(value),
            None if strict => return Err(CommandError::failed(format!("key {key:?} not found"))),
            None => Value::Null,
        },
    };
    output.write(invocation, &value)
}

pub(super) fn state_set(
    context: &mut HookContext,
    invocation: &mut Invocation,
) -> Result<(), CommandError> {
    let args = STATE_SET.parse(invocation.args())?;
    // Check every pair before buffering any: a usage error changes nothing.
    let pairs = args
        .positional()
        .iter()
        .map(|arg| match arg.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(CommandError::usage(format!(
                "expected \"key=value\", got {arg:?}"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (key, value) in pairs {
        if value.is_empty() {
            context.delete_state(key);
        } else {
            context.set_state(key, value);
        }
    }
    Ok(())
}

pub(super) fn state_delete(
    context: &mut HookContext,
    invocation: &mut Invocation,
) -> Result<(), CommandError> {
    let args = STATE_DELETE.parse(invocation.args())?;
    let (key, extra) = split_first(args.into_positional());
    let Some(key) = key else {
        return Err(CommandError::usage("no key specified"));
    };
    check_empty(&extra)?;
    context.delete_state(key);
    Ok(())
}
