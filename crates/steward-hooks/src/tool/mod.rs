//! The hook tool: how a hook's programs call back into the agent.
//!
//! A hook calls `config-get`, `state-set` & co.; each call is forwarded to
//! the agent ([`ToolRequest`]), which runs the command against the hook's
//! context and sends back `{code, stdout, stderr}` ([`ToolOutput`]). Exit
//! codes: 0 ok, 1 the command failed, 2 a usage error.
//!
//! The command set is pluggable ([`Commands`]); [`BuiltinCommands`] is the
//! default. Commands parse their arguments with juju's flag syntax
//! ([`CommandSpec::parse`]) and print values with juju's `--format` rules
//! ([`Output`]).

mod builtin;
mod command;
mod flags;
mod output;
pub mod wire;

pub use builtin::BuiltinCommands;
pub use command::{CommandError, CommandSpec, Commands, Invocation};
pub use flags::{Flag, ParsedArgs, check_empty, parse};
pub use output::{FORMAT_FLAG, Format, OUTPUT_FLAG, Output};
pub use wire::{ToolAnswer, ToolOutput, ToolRequest};
