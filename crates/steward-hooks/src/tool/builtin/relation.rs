//! `relation-ids` and `relation-list`, and the `-r` flag every relation
//! command shares: which relation a command is about.
//!
//! `-r` follows juju's `relationIdValue`: it defaults to the hook's
//! relation, accepts `<endpoint>:<id>` or `<id>` (only the text after the
//! last `:` counts), and must name a relation the unit is in. Its errors
//! are usage errors (exit 2).

use serde_json::Value;

use super::split_first;
use crate::HookContext;
use crate::tool::{
    CommandError, CommandSpec, FORMAT_FLAG, Flag, Format, Invocation, OUTPUT_FLAG, Output,
    ParsedArgs, check_empty,
};

/// `-r`, for commands about one relation.
pub(super) const RELATION_FLAG: Flag = Flag {
    names: &["r", "relation"],
    value: Some("ID"),
    default: "",
    help: "specify a relation by id (<endpoint>:<id> or <id>; default: the hook's relation)",
};

pub(super) const RELATION_IDS: CommandSpec = CommandSpec {
    name: "relation-ids",
    args: "[<name>]",
    purpose: "list all relation ids with the given endpoint name",
    doc: "Prints the ids (<endpoint>:<id>) of the unit's relations at the \
          endpoint, by id. The endpoint defaults to the hook's relation's.",
    flags: &[FORMAT_FLAG, OUTPUT_FLAG],
};

pub(super) const RELATION_LIST: CommandSpec = CommandSpec {
    name: "relation-list",
    args: "",
    purpose: "list relation units",
    doc: "Prints the remote units that are members of the relation, by name. \
          In relation-departed, the departing unit is no longer listed (its \
          settings are still readable with relation-get).",
    flags: &[RELATION_FLAG, FORMAT_FLAG, OUTPUT_FLAG],
};

/// The relation a command is about: `-r`'s, or the hook's.
pub(super) async fn relation_id(
    context: &HookContext,
    args: &ParsedArgs,
) -> Result<u64, CommandError> {
    let Some(given) = args.value("relation") else {
        return context
            .relation_id()
            .ok_or_else(|| CommandError::usage("no relation id specified"));
    };
    let invalid =
        |why: &str| CommandError::usage(format!("invalid value {given:?} for flag -r: {why}"));
    let digits = given.rsplit(':').next().unwrap_or(given);
    // Go's Atoi: an optional sign, then digits. A negative id is a number
    // that names no relation.
    let number: i64 = digits.parse().map_err(|_| invalid("invalid relation id"))?;
    let Ok(id) = u64::try_from(number) else {
        return Err(invalid("unknown relation id"));
    };
    let known = context.knows_relation(id).await.map_err(|error| {
        CommandError::failed(format!("cannot list the unit's relations: {error}"))
    })?;
    if !known {
        return Err(invalid("unknown relation id"));
    }
    Ok(id)
}

/// The relation's name in messages: `<endpoint>:<id>` when known.
pub(super) async fn label(context: &HookContext, id: u64) -> String {
    if context.relation_id() == Some(id)
        && let Some(label) = context.relation_label()
    {
        return label;
    }
    match context.relations().await {
        Ok(relations) => relations
            .into_iter()
            .find(|relation| relation.id == id)
            .map_or_else(|| id.to_string(), |relation| relation.label()),
        Err(_) => id.to_string(),
    }
}

pub(super) async fn relation_ids(
    context: &HookContext,
    invocation: &mut Invocation,
) -> Result<(), CommandError> {
    let args = RELATION_IDS.parse(invocation.args())?;
    let output = Output::from_args(&args, Format::Smart)?;
    let (name, extra) = split_first(args.into_positional());
    let Some(name) = name.or_else(|| context.endpoint().map(String::from)) else {
        return Err(CommandError::usage("no relation name specified"));
    };
    check_empty(&extra)?;
    // By id, not as strings as juju sorted them ("db:10" before "db:2").
    let ids = context
        .relations()
        .await
        .map_err(|error| {
            CommandError::failed(format!("cannot list the unit's relations: {error}"))
        })?
        .into_iter()
        .filter(|relation| relation.endpoint == name)
        .map(|relation| Value::String(relation.label()))
        .collect();
    output.write(invocation, &Value::Array(ids))
}

pub(super) async fn relation_list(
    context: &HookContext,
    invocation: &mut Invocation,
) -> Result<(), CommandError> {
    let args = RELATION_LIST.parse(invocation.args())?;
    let output = Output::from_args(&args, Format::Smart)?;
    let id = relation_id(context, &args).await?;
    check_empty(args.positional())?;
    let members = context.relation_members(id).await.map_err(|error| {
        CommandError::failed(format!("cannot list the members of relation {id}: {error}"))
    })?;
    output.write(
        invocation,
        &Value::Array(members.into_iter().map(Value::String).collect()),
    )
}
