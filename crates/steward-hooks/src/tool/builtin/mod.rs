//! The built-in hook tool commands, run against a [`HookContext`].
//!
//! Flags and output follow juju's tools of the same names, so that hooks
//! written for juju run unchanged where they use only these. Each file
//! holds one command family; this one only dispatches. Commands must never
//! persist anything themselves: writes are buffered in the context (state)
//! or go through the backend (status, logs, runtime calls).

mod config;
mod log;
mod relation;
mod relation_settings;
mod runtime_call;
mod state;
mod status;
mod unit;

use steward_worker::BoxFuture;

use crate::HookContext;
use crate::tool::{CommandError, CommandSpec, Commands, Invocation};

/// Every built-in command, sorted by name (`log` is `juju-log`'s alias).
const SPECS: [&CommandSpec; 14] = [
    &config::CONFIG_GET,
    &log::JUJU_LOG,
    &log::LOG,
    &relation_settings::RELATION_GET,
    &relation::RELATION_IDS,
    &relation::RELATION_LIST,
    &relation_settings::RELATION_SET,
    &runtime_call::RUNTIME_CALL,
    &state::STATE_DELETE,
    &state::STATE_GET,
    &state::STATE_SET,
    &status::STATUS_GET,
    &status::STATUS_SET,
    &unit::UNIT_GET,
];

/// The built-in commands: `config-get`, `juju-log` (alias `log`),
/// `relation-get`, `relation-ids`, `relation-list`, `relation-set`,
/// `runtime-call`, `state-delete`, `state-get`, `state-set`, `status-get`,
/// `status-set` and `unit-get`. The default command set of a
/// [`ToolServer`](crate::tool::ToolServer).
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinCommands;

impl BuiltinCommands {
    /// The names of the built-in commands, sorted: the names a tools
    /// directory links to the `steward` binary.
    pub fn names() -> impl Iterator<Item = &'static str> {
        SPECS.iter().map(|spec| spec.name)
    }

    /// The spec (flags, usage) of a built-in command.
    pub fn spec(name: &str) -> Option<&'static CommandSpec> {
        SPECS.iter().copied().find(|spec| spec.name == name)
    }
}

impl Commands for BuiltinCommands {
    type Context = HookContext;

    fn context_label(&self, context: &HookContext) -> String {
        format!("{}:{}", context.unit().unit, context.hook_name())
    }

    fn contains(&self, command: &str) -> bool {
        Self::spec(command).is_some()
    }

    fn run<'a>(
        &'a self,
        context: &'a mut HookContext,
        invocation: &'a mut Invocation,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            match invocation.command() {
                "config-get" => config::config_get(context, invocation),
                "juju-log" | "log" => log::log(context, invocation),
                "relation-get" => relation_settings::relation_get(context, invocation).await,
                "relation-ids" => relation::relation_ids(context, invocation).await,
                "relation-list" => relation::relation_list(context, invocation).await,
                "relation-set" => relation_settings::relation_set(context, invocation).await,
                "runtime-call" => runtime_call::runtime_call(context, invocation).await,
                "state-delete" => state::state_delete(context, invocation),
                "state-get" => state::state_get(context, invocation).await,
                "state-set" => state::state_set(context, invocation),
                "status-get" => status::status_get(context, invocation).await,
                "status-set" => status::status_set(context, invocation).await,
                "unit-get" => unit::unit_get(context, invocation),
                other => Err(CommandError::failed(format!("unknown command {other:?}"))),
            }
        })
    }
}

/// The first positional argument and the rest.
fn split_first(mut args: Vec<String>) -> (Option<String>, Vec<String>) {
    if args.is_empty() {
        (None, args)
    } else {
        let first = args.remove(0);
        (Some(first), args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_sorted_and_named_like_their_dispatch() {
        let names: Vec<_> = BuiltinCommands::names().collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert!(BuiltinCommands.contains("juju-log") && BuiltinCommands.contains("log"));
        assert!(BuiltinCommands.contains("relation-get"));
        assert!(!BuiltinCommands.contains("relation-created"));
    }
}
