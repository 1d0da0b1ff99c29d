//! `config-get`: the runtime's settings, from the context's snapshot.

use serde_json::{Map, Value};

use super::split_first;
use crate::HookContext;
use crate::tool::{
    CommandError, CommandSpec, FORMAT_FLAG, Flag, Format, Invocation, OUTPUT_FLAG, Output,
    check_empty,
};

pub(super) const CONFIG_GET: CommandSpec = CommandSpec {
    name: "config-get",
    args: "[<key>]",
    purpose: "print runtime configuration",
    doc: "With a key, prints that setting (nothing, or `null` in JSON, if it is \
          not set). Without one, prints every setting that has a value; --all \
          includes those that are null.",
    flags: &[
        Flag {
            names: &["a", "all"],
            value: None,
            default: "",
            help: "print all keys, including those without a value",
        },
        FORMAT_FLAG,
        OUTPUT_FLAG,
    ],
};

pub(super) fn config_get(
    context: &HookContext,
    invocation: &mut Invocation,
) -> Result<(), CommandError> {
    let args = CONFIG_GET.parse(invocation.args())?;
    let output = Output::from_args(&args, Format::Smart)?;
    let all = args.bool("all");
    let (key, extra) = split_first(args.into_positional());
    check_empty(&extra)?;
    let value = match key {
        Some(key) if all => {
            return Err(CommandError::usage(format!(
                "cannot use argument --all together with key {key:?}"
            )));
        }
        Some(key) => context.settings().get(&key).cloned().unwrap_or(Value::Null),
        None => Value::Object(
            context
                .settings()
                .iter()
                .filter(|(_, value)| all || !value.is_null())
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect::<Map<_, _>>(),
        ),
    };
    output.write(invocation, &value)
}
