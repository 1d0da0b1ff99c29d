//! The hook tool: how a hook's programs call back into the agent.
//!
//! A hook calls `config-get`, `state-set` & co. (symlinks to the `steward`
//! binary in a [tools directory](create_tools_dir)); the [client](run_tool)
//! forwards the call over the agent's Unix socket to the [`ToolServer`],
//! which runs the command against the hook's registered context and sends
//! back `{code, stdout, stderr}`. Exit codes: 0 ok, 1 the command failed,
//! 2 a usage error.
//!
//! The command set is pluggable ([`Commands`]); [`BuiltinCommands`] is the
//! default. Commands parse their arguments with juju's flag syntax
//! ([`CommandSpec::parse`]) and print values with juju's `--format` rules
//! ([`Output`]).

mod builtin;
mod client;
mod command;
mod flags;
mod output;
mod server;
mod tools_dir;
pub mod wire;

pub use builtin::BuiltinCommands;
pub use client::{call, run_tool, tool_main};
pub use command::{CommandError, CommandSpec, Commands, Invocation};
pub use flags::{Flag, ParsedArgs, check_empty, parse};
pub use output::{FORMAT_FLAG, Format, OUTPUT_FLAG, Output};
pub use server::{
    AGENT_SOCKET_ENV, CONTEXT_ID_ENV, JUJU_AGENT_SOCKET_ENV, JUJU_CONTEXT_ID_ENV, Registration,
    SOCKET_NAME, ServerOptions, ToolServer,
};
pub use tools_dir::{create_tools_dir, tool_name};
pub use wire::{ToolAnswer, ToolOutput, ToolRequest};
