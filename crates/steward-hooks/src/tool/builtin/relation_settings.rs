//! `relation-get` and `relation-set`: units' settings in a relation.
//!
//! Reads see this unit's own buffered writes; writes are buffered in the
//! context and committed by the agent only if the hook succeeds (and then
//! they make the other side run relation-changed).

use std::collections::BTreeMap;

use serde_json::Value;

use super::relation::{RELATION_FLAG, label, relation_id};
use crate::HookContext;
use crate::tool::{
    CommandError, CommandSpec, FORMAT_FLAG, Flag, Format, Invocation, OUTPUT_FLAG, Output,
    check_empty,
};

pub(super) const RELATION_GET: CommandSpec = CommandSpec {
    name: "relation-get",
    args: "[<key>|- [<unit>]]",
    purpose: "get relation settings",
    doc: "Prints the value of a unit's relation setting, specified by key \
          (nothing, or `null` in JSON, if it is not set). If no key is given, \
          or if the key is \"-\", prints all keys and values. The unit \
          defaults to the hook's remote unit; this unit's own settings include \
          what this hook set.",
    flags: &[RELATION_FLAG, FORMAT_FLAG, OUTPUT_FLAG],
};

pub(super) const RELATION_SET: CommandSpec = CommandSpec {
    name: "relation-set",
    args: "<key>=<value> ...",
    purpose: "set relation settings",
    doc: "Sets this unit's settings in the relation. `key=` deletes the key; \
          only the first `=` separates key and value. Changes are kept only if \
          the hook succeeds. Refused in relation-broken for the broken relation.",
    flags: &[
        RELATION_FLAG,
        Flag {
            names: &["format"],
            value: Some("FORMAT"),
            default: "",
            help: "deprecated and ignored",
        },
    ],
};

pub(super) async fn relation_get(
    context: &HookContext,
    invocation: &mut Invocation,
) -> Result<(), CommandError> {
    let args = RELATION_GET.parse(invocation.args())?;
    let output = Output::from_args(&args, Format::Smart)?;
    let id = relation_id(context, &args).await?;
    let mut positional = args.into_positional().into_iter();
    let key = positional.next().filter(|key| key != "-");
    let Some(unit) = positional
        .next()
        .or_else(|| context.remote_unit().map(String::from))
    else {
        return Err(CommandError::usage("no unit id specified"));
    };
    check_empty(&positional.collect::<Vec<_>>())?;
    let settings = context
        .relation_settings(id, &unit)
        .await
        .map_err(|error| {
            CommandError::failed(format!(
                "cannot read {unit}'s settings in relation {id}: {error}"
            ))
        })?;
    let Some(mut settings) = settings else {
        return Err(CommandError::failed(format!(
            "unknown unit {unit} in relation {}",
            label(context, id).await
        )));
    };
    let value = match key {
        None => Value::Object(
            settings
                .into_iter()
                .map(|(key, value)| (key, Value::String(value)))
                .collect(),
        ),
        Some(key) => settings.remove(&key).map_or(Value::Null, Value::String),
    };
    output.write(invocation, &value)
}

pub(super) async fn relation_set(
    context: &mut HookContext,
    invocation: &mut Invocation,
) -> Result<(), CommandError> {
    let args = RELATION_SET.parse(invocation.args())?;
    let id = relation_id(context, &args).await?;
    // Check every pair before buffering any: a usage error changes nothing.
    // A map: of two writes to one key, the last wins.
    let writes = args
        .positional()
        .iter()
        .map(|arg| match arg.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((
                key.to_string(),
                Some(value.to_string()).filter(|value| !value.is_empty()),
            )),
            _ => Err(CommandError::usage(format!(
                "expected \"key=value\", got {arg:?}"
            ))),
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    if args.is_set("format") {
        invocation.stderr.push_str(&format!(
            "--format flag deprecated for command {:?}\n",
            RELATION_SET.name
        ));
    }
    context
        .set_relation_settings(id, writes)
        .map_err(CommandError::failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_names_the_relation_flag() {
        let usage = RELATION_GET.usage();
        assert!(usage.contains("-r, --relation ID"), "{usage}");
        assert!(RELATION_SET.usage().contains("deprecated"));
    }
}
