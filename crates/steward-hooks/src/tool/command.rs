//! What a hook tool command is to the server: a [`Commands`] set that runs
//! a named command against a context, given an [`Invocation`] (arguments,
//! directory, output buffers), and the exit-code rules of juju's
//! `cmd.Main` ([`Invocation::finish`]).
//!
//! The server is generic over the set, so tests (and later the agent) can
//! serve other commands than the built-in ones. This module must never know
//! any particular command.

use std::path::{Path, PathBuf};

use steward_worker::BoxFuture;

use crate::tool::flags::{self, Flag, ParsedArgs};
use crate::tool::wire::ToolOutput;

/// The commands a [`ToolServer`](crate::tool::ToolServer) serves, and the
/// kind of context they run against.
///
/// The server refuses unknown commands itself (with `bad request: unknown
/// command "…"`), so [`run`](Commands::run) is only called for names
/// [`contains`](Commands::contains) accepted. Commands of one context run one
/// at a time (the server holds the context's lock), which is why they get
/// the context by `&mut`.
pub trait Commands: Send + Sync + 'static {
    /// What one hook run's commands run against.
    type Context: Send + 'static;

    /// The `<unit>:<hook>` part of the context ids the server hands out
    /// for `context` (juju's `<unit>:<hook>:<random>` format).
    fn context_label(&self, context: &Self::Context) -> String;

    /// Whether `command` is one of this set's commands.
    fn contains(&self, command: &str) -> bool;

    /// Runs `invocation`'s command against `context`. Output goes to the
    /// invocation's buffers; the result decides the exit code (see
    /// [`Invocation::finish`]).
    fn run<'a>(
        &'a self,
        context: &'a mut Self::Context,
        invocation: &'a mut Invocation,
    ) -> BoxFuture<'a, Result<(), CommandError>>;
}

/// How a command ended, when not with success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// `-h`/`--help` was given: the usage text goes to stdout, exit code 0.
    #[error("help requested")]
    Help(String),
    /// The flags or arguments are wrong: `error: <message>` on stderr, exit
    /// code 2.
    #[error("{0}")]
    Usage(String),
    /// The command ran and failed: `error: <message>` on stderr, exit code 1.
    #[error("{0}")]
    Failed(String),
}

impl CommandError {
    /// A [`CommandError::Failed`] from anything printable.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        CommandError::Failed(message.to_string())
    }

    /// A [`CommandError::Usage`] from anything printable.
    pub fn usage(message: impl std::fmt::Display) -> Self {
        CommandError::Usage(message.to_string())
    }
}

/// One command to run: its name, arguments and directory, and the output
/// it produces.
#[derive(Debug, Clone)]
pub struct Invocation {
    command: String,
    args: Vec<String>,
    dir: PathBuf,
    /// What the command prints on standard output.
    pub stdout: String,
    /// What the command prints on standard error.
    pub stderr: String,
}

impl Invocation {
    /// An invocation of `command` with `args`, from directory `dir` (the
    /// client's working directory, absolute).
    pub fn new(command: impl Into<String>, args: Vec<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            command: command.into(),
            args,
            dir: dir.into(),
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    /// The command's name.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The command's arguments.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The client's working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `path` relative to the client's working directory (unchanged if
    /// absolute). The server never changes its own working directory:
    /// commands of many hooks run in it at once.
    pub fn abs_path(&self, path: impl AsRef<Path>) -> PathBuf {
        self.dir.join(path)
    }

    /// The answer for the client, by juju's rules: success → 0; help → the
    /// usage text on stdout, 0; usage error → `error: …` on stderr, 2; run
    /// error → `error: …` on stderr, 1. Output printed before an error is
    /// kept.
    pub fn finish(mut self, result: Result<(), CommandError>) -> ToolOutput {
        let code = match result {
            Ok(()) => 0,
            Err(CommandError::Help(text)) => {
                self.stdout.push_str(&text);
                0
            }
            Err(CommandError::Usage(message)) => {
                push_error(&mut self.stderr, &message);
                2
            }
            Err(CommandError::Failed(message)) => {
                push_error(&mut self.stderr, &message);
                1
            }
        };
        ToolOutput {
            code,
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }
}

fn push_error(stderr: &mut String, message: &str) {
    stderr.push_str("error: ");
    stderr.push_str(message);
    stderr.push('\n');
}

/// What a command says about itself: name, arguments, flags and help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// The command's name (`config-get`).
    pub name: &'static str,
    /// Its arguments in the usage line (`"[<key>]"`).
    pub args: &'static str,
    /// One line about what it does.
    pub purpose: &'static str,
    /// More text for `--help`; empty for none.
    pub doc: &'static str,
    /// The flags it accepts (besides `-h`/`--help`).
    pub flags: &'static [Flag],
}

impl CommandSpec {
    /// Parses `args` against the command's flags; `--help` becomes
    /// [`CommandError::Help`] with this command's usage text.
    pub fn parse(&self, args: &[String]) -> Result<ParsedArgs, CommandError> {
        flags::parse(self.flags, args).map_err(|error| match error {
            CommandError::Help(_) => CommandError::Help(self.usage()),
            other => other,
        })
    }

    /// The text `--help` prints.
    pub fn usage(&self) -> String {
        let mut text = format!("Usage: {}", self.name);
        if !self.flags.is_empty() {
            text.push_str(" [options]");
        }
        if !self.args.is_empty() {
            text.push(' ');
            text.push_str(self.args);
        }
        text.push_str("\n\nSummary:\n");
        text.push_str(self.purpose);
        text.push('\n');
        if !self.flags.is_empty() {
            text.push_str("\nOptions:\n");
            for flag in self.flags {
                let names: Vec<String> = flag
                    .names
                    .iter()
                    .map(|name| {
                        if name.len() == 1 {
                            format!("-{name}")
                        } else {
                            format!("--{name}")
                        }
                    })
                    .collect();
                text.push_str(&names.join(", "));
                if let Some(value) = flag.value {
                    text.push(' ');
                    text.push_str(value);
                }
                if !flag.default.is_empty() {
                    text.push_str(&format!(" (= {})", flag.default));
                }
                text.push_str("\n    ");
                text.push_str(flag.help);
                text.push('\n');
            }
        }
        if !self.doc.is_empty() {
            text.push_str("\nDetails:\n");
            text.push_str(self.doc.trim_end());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: CommandSpec = CommandSpec {
        name: "thing-get",
        args: "[<key>]",
        purpose: "print a thing",
        doc: "Prints the thing.\n",
        flags: &[Flag {
            names: &["a", "all"],
            value: None,
            default: "",
            help: "print all things",
        }],
    };

    #[test]
    fn finish_maps_results_to_juju_exit_codes() {
        let mut ran = Invocation::new("x", vec![], "/");
        ran.stdout.push_str("out\n");
        assert_eq!(
            ran.clone().finish(Ok(())),
            ToolOutput {
                code: 0,
                stdout: "out\n".into(),
                stderr: String::new()
            }
        );
        let usage = ran.clone().finish(Err(CommandError::usage("bad")));
        assert_eq!((usage.code, usage.stderr.as_str()), (2, "error: bad\n"));
        assert_eq!(usage.stdout, "out\n", "output before an error is kept");
        let failed = ran.clone().finish(Err(CommandError::failed("blam")));
        assert_eq!((failed.code, failed.stderr.as_str()), (1, "error: blam\n"));
        let help = ran.finish(Err(CommandError::Help("usage\n".into())));
        assert_eq!((help.code, help.stdout.as_str()), (0, "out\nusage\n"));
    }

    #[test]
    fn help_carries_the_usage_text() {
        let Err(CommandError::Help(text)) = SPEC.parse(&["--help".into()]) else {
            panic!("expected help");
        };
        assert_eq!(
            text,
            "Usage: thing-get [options] [<key>]\n\nSummary:\nprint a thing\n\n\
             Options:\n-a, --all\n    print all things\n\nDetails:\nPrints the thing.\n"
        );
    }

    #[test]
    fn paths_are_relative_to_the_invocation_dir() {
        let invocation = Invocation::new("x", vec![], "/hooks/dir");
        assert_eq!(
            invocation.abs_path("local"),
            PathBuf::from("/hooks/dir/local")
        );
        assert_eq!(invocation.abs_path("/tmp/f"), PathBuf::from("/tmp/f"));
    }
}
