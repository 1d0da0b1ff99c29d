//! `unit-get`: facts about the unit the hook runs for.

use serde_json::Value;

use super::split_first;
use crate::HookContext;
use crate::tool::{
    CommandError, CommandSpec, FORMAT_FLAG, Format, Invocation, OUTPUT_FLAG, Output, check_empty,
};

pub(super) const UNIT_GET: CommandSpec = CommandSpec {
    name: "unit-get",
    args: "name|version|runtime",
    purpose: "print a fact about this unit",
    doc: "name: the unit's name (<runtime>/<agent>); version: the runtime's \
          active version; runtime: the runtime's id.",
    flags: &[FORMAT_FLAG, OUTPUT_FLAG],
};

pub(super) fn unit_get(
    context: &HookContext,
    invocation: &mut Invocation,
) -> Result<(), CommandError> {
    let args = UNIT_GET.parse(invocation.args())?;
    let output = Output::from_args(&args, Format::Smart)?;
    let (setting, extra) = split_first(args.into_positional());
    let Some(setting) = setting else {
        return Err(CommandError::usage("no setting specified"));
    };
    let unit = context.unit();
    // An unknown setting is a usage error (exit 2), as in juju's Init.
    let value = match setting.as_str() {
        "name" => &unit.unit,
        "version" => &unit.version,
        "runtime" => &unit.runtime,
        _ => {
            return Err(CommandError::usage(format!(
                "unknown setting {setting:?} (use name, version or runtime)"
            )));
        }
    };
    check_empty(&extra)?;
    output.write(invocation, &Value::String(value.clone()))
}
