//! `juju-log` (alias `log`): a message into the runtime's log.

use crate::HookContext;
use crate::context::LogLevel;
use crate::tool::{CommandError, CommandSpec, Flag, Invocation};

const FLAGS: &[Flag] = &[
    Flag {
        names: &["debug"],
        value: None,
        default: "",
        help: "log at debug level",
    },
    Flag {
        names: &["l", "log-level"],
        value: Some("LEVEL"),
        default: "INFO",
        help: "log at this level (TRACE, DEBUG, INFO, WARNING, ERROR, CRITICAL)",
    },
    Flag {
        names: &["format"],
        value: Some("FORMAT"),
        default: "",
        help: "deprecated and ignored",
    },
];

const DOC: &str = "Logs the message, its arguments joined by spaces, in the \
                   runtime's log under the hook's name. In a relation hook the \
                   message is prefixed with the relation (`db:1: `).";

pub(super) const JUJU_LOG: CommandSpec = CommandSpec {
    name: "juju-log",
    args: "<message>",
    purpose: "write a message to the runtime's log",
    doc: DOC,
    flags: FLAGS,
};

pub(super) const LOG: CommandSpec = CommandSpec {
    name: "log",
    ..JUJU_LOG
};

pub(super) fn log(context: &HookContext, invocation: &mut Invocation) -> Result<(), CommandError> {
    let spec = if invocation.command() == LOG.name {
        &LOG
    } else {
        &JUJU_LOG
    };
    let args = spec.parse(invocation.args())?;
    if args.positional().is_empty() {
        return Err(CommandError::usage("no message specified"));
    }
    if args.is_set("format") {
        invocation.stderr.push_str(&format!(
            "--format flag deprecated for command {:?}\n",
            spec.name
        ));
    }
    let level = if args.bool("debug") {
        LogLevel::Debug
    } else {
        match args.value("log-level").map(str::parse::<LogLevel>) {
            None => LogLevel::Info,
            Some(Ok(level)) => level,
            Some(Err(error)) => {
                // Juju logs the message anyway: losing it would be worse.
                invocation
                    .stderr
                    .push_str(&format!("warning: {error}; logging at INFO\n"));
                LogLevel::Info
            }
        }
    };
    let mut message = context
        .relation_label()
        .map(|label| format!("{label}: "))
        .unwrap_or_default();
    message.push_str(&args.positional().join(" "));
    context.backend().log(level, context.hook_name(), &message);
    Ok(())
}
