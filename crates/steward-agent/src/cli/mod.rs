//! The `steward` command line: `run` starts the agent; `status`, `call`,
//! `set-version`, `abort` and `events` are clients of a running agent's
//! API; `config check|demo` work on config files offline; `completions`
//! and `man` print what clap generates from this module's definition.
//!
//! Output is for people by default (tables, one line per event) and for
//! programs with `--json`. Every failure is one line on stderr starting
//! with `error:` and a non-zero exit status: 2 for a bad config or bad
//! arguments, 1 for everything else; a closed standard output ends a
//! command quietly with 141 (see `output`). This module must never talk
//! to a runtime or the store directly: clients go through the API, and
//! nothing here prints but through `output`.
//!
#![doc = include_str!("../../docs/cli.md")]

mod client;
mod output;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use steward_hooks::leader::leader_main;
use steward_hooks::tool::{tool_main, tool_name};
use tracing_subscriber::EnvFilter;

use crate::agent::{self, Agent, DEFAULT_LISTEN, DEFAULT_MAX_REQUEST_BYTES, RunOptions};
use crate::config::{self, CommandResolver};
use crate::demo;
use crate::fleet::FleetOptions;

use self::client::{Client, LogsQuery};
use self::output::{Closed, EXIT_CLOSED};

/// The default API URL of the clients.
pub const DEFAULT_API: &str = "http://127.0.0.1:7171";

#[derive(Debug, Parser)]
#[command(
    name = "steward",
    version,
    about = "Hosts versioned runtimes under supervision and switches their versions without downtime.",
    after_help = "Start with `steward run` (a demo config when none is given), then try `steward status` in another terminal."
)]
struct Cli {
    /// The agent's API, for the client commands.
    #[arg(long, global = true, env = "STEWARD_API", default_value = DEFAULT_API)]
    api: String,
    /// A file holding the API's bearer token: `run` requires it from
    /// clients, the client commands present it.
    #[arg(long, global = true, env = "STEWARD_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: host the runtimes of a config, serve the control API.
    Run {
        /// The TOML config (watched for changes); without it, a built-in
        /// demo config hosts the example runtimes `echo` and `kv`.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where desired state and the runtimes' storage live [default:
        /// the user's data directory, e.g. ~/.local/share/steward].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The API's address; port 0 picks a free port. A non-loopback
        /// address requires --token-file.
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// The largest request body the API accepts, in bytes.
        #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
        max_request_bytes: usize,
        /// This agent's name, in its units' names (`<runtime>/<name>`)
        /// [default: the host name].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// How long an API client may take to send a request's head or
        /// body, and a connection may sit idle, e.g. `15s`.
        #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
        http_timeout: std::time::Duration,
        /// Join a fleet: share desired versions, presence and relations
        /// with the other agents of this etcd (client URLs, comma-separated,
        /// e.g. http://127.0.0.1:2379) [default: the config's `[fleet]`,
        /// else no fleet].
        #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',', value_parser = parse_etcd_url)]
        fleet: Vec<String>,
        /// The prefix of every key the fleet uses in etcd [default: the
        /// config's, else /steward/].
        #[arg(long, value_name = "PREFIX", requires = "fleet", value_parser = parse_fleet_prefix)]
        fleet_prefix: Option<String>,
    },
    #[command(flatten)]
    Client(ClientCommand),
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script, e.g. `steward completions bash >
    /// /etc/bash_completion.d/steward`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff, from this command line's definition),
    /// e.g. `steward man | man -l -`; or write one page per command into a
    /// directory.
    Man {
        /// Write `steward.1` and a `steward-COMMAND.1` per command into this
        /// directory instead (e.g. /usr/local/share/man/man1).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run a hook tool command (what hooks reach as `config-get`, `state-set`
    /// and the others, through the agent's tools directory).
    HookTool {
        /// The command, e.g. `config-get`.
        command: String,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Lead a hook's process group so that it dies with the agent (the
    /// agent starts hooks this way itself).
    #[command(hide = true)]
    HookLeader {
        /// `[--parent PID] -- PROGRAM [ARGS...]`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Run a built-in example runtime (the agent starts these itself).
    #[command(hide = true)]
    ExampleRuntime {
        /// `echo` or `kv`.
        name: String,
        /// Its arguments, e.g. `--version 1.0.0`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// The commands that are clients of a running agent's API.
#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Show every runtime: versions, state, restarts, last error; or one
    /// runtime in detail, with the pid and uptime of each version.
    Status {
        /// Only this runtime, in detail.
        runtime: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Call a runtime's method and print its answer as JSON.
    Call {
        /// The runtime's id.
        runtime: String,
        /// The method.
        method: String,
        /// The arguments, as JSON [default: null].
        #[arg(value_name = "ARGS_JSON")]
        args: Option<String>,
    },
    /// Switch a runtime to another version; returns once it serves (in a
    /// fleet: once every live unit of it serves the version, showing
    /// progress).
    SetVersion {
        /// The runtime's id.
        runtime: String,
        /// The version to switch to.
        version: String,
        /// Give up waiting after this long (exit status 1, naming what did
        /// not get there), e.g. `30s`; the switch goes on.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// Return as soon as desired state says the version.
        #[arg(long)]
        no_wait: bool,
    },
    /// Resolve a runtime's failed hook: run it again now (the default), or
    /// mark it done without running it.
    Resolve {
        /// The runtime's id.
        runtime: String,
        /// Run the failed hook again now (the default).
        #[arg(long, conflicts_with = "skip")]
        retry: bool,
        /// Mark the failed hook done without running it (its changes are
        /// dropped).
        #[arg(long)]
        skip: bool,
    },
    /// Ask a runtime to abandon its work in progress.
    Abort {
        /// The runtime's id.
        runtime: String,
        /// Kill and restart its process instead of asking.
        #[arg(long)]
        force: bool,
    },
    /// Print a runtime's recent output lines: its versions' stdout and
    /// stderr, and its hooks' (as `hook:NAME`), each with time, version
    /// and stream; with -f, keep printing new ones (Ctrl-C to stop).
    Logs {
        /// The runtime's id.
        runtime: String,
        /// Keep printing new lines as the runtime prints them.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines kept [default: all kept, up to the
        /// runtime's `log-lines` per version].
        #[arg(short = 'n', long = "tail", value_name = "N")]
        tail: Option<usize>,
        /// Only this version's lines (its processes' and its hooks').
        #[arg(long, value_name = "V")]
        version: Option<String>,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// The fleet this agent is in (`steward run --fleet`).
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Follow the agent's events live (Ctrl-C to stop).
    Events {
        /// Only this runtime's events.
        #[arg(long, value_name = "ID")]
        runtime: Option<String>,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Every unit of the fleet (agent, runtime, active and desired
    /// version, state, hooks, error, last seen), from etcd.
    Status {
        /// Only this runtime's units.
        runtime: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a config file; print every problem as file:line:column.
    Check {
        /// The config file.
        file: PathBuf,
    },
    /// Print the built-in demo config, a starting point for your own.
    Demo,
}

/// A positive duration such as `15s` or `500ms`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be greater than zero".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!("{error}; write it like \"15s\" or \"500ms\"")),
    }
}

/// An etcd client URL for `--fleet`.
fn parse_etcd_url(text: &str) -> Result<String, String> {
    config::check_etcd_url(text).map(|()| text.to_owned())
}

/// A key prefix for `--fleet-prefix`.
fn parse_fleet_prefix(text: &str) -> Result<String, String> {
    config::check_fleet_prefix(text).map(|()| text.to_owned())
}

/// The error status of bad configs and arguments.
const EXIT_USAGE: u8 = 2;

/// Runs the command line; the body of `steward`'s `main`.
pub fn main() -> ExitCode {
    // A hook tool is this binary reached through a link named after the
    // tool (as juju's jujuc is): it must start fast and speak juju's
    // command line, not this one's.
    let mut argv = std::env::args_os();
    if let Some(tool) = argv.next().as_deref().and_then(tool_name) {
        return tool_main(tool, &argv.collect::<Vec<_>>());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return clap_exit(&error),
    };
    match cli.command {
        Command::ExampleRuntime { name, args } => return example_runtime(&name, args),
        Command::Completions { shell } => return completions(shell),
        Command::Man { dir } => return man(dir.as_deref()),
        Command::HookLeader { args } => return leader_main(args),
        Command::HookTool { command, args } => return tool_main(&command, &args),
        _ => {}
    }
    let is_run = matches!(cli.command, Command::Run { .. });
    init_logging(if is_run { "info" } else { "warn" });
    let tokio = if is_run {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let tokio = match tokio {
        Ok(tokio) => tokio,
        Err(error) => return fail(1, format!("cannot start the async runtime: {error}")),
    };
    tokio.block_on(dispatch(cli))
}

/// Prints clap's help, version or usage error and gives its exit status;
/// help and version into a closed pipe end like any other output.
fn clap_exit(error: &clap::Error) -> ExitCode {
    let status = u8::try_from(error.exit_code()).unwrap_or(EXIT_USAGE);
    if status != 0 || std::io::stdout().is_terminal() {
        // Usage errors go to stderr, which nobody can be told about
        // when closed; a terminal does not close like a pipe.
        let _ = error.print();
        return ExitCode::from(status);
    }
    match output::print(&error.render().to_string()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(closed) => output_failed(&closed),
    }
}

/// The exit of a command whose standard output failed: quiet for a closed
/// pipe, one error line otherwise.
fn output_failed(closed: &Closed) -> ExitCode {
    match closed {
        Closed::Pipe => ExitCode::from(EXIT_CLOSED),
        Closed::Failed(_) => fail(1, closed),
    }
}

fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_env("STEWARD_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A closed stderr (`steward run 2>&1 | head`) loses log lines; the
        // formatter's own report of that would panic in `eprintln!`.
        .log_internal_errors(false)
        .try_init();
}

fn fail(status: u8, message: impl std::fmt::Display) -> ExitCode {
    output::eprint_line(&format!("error: {message}"));
    ExitCode::from(status)
}

fn example_runtime(name: &str, args: Vec<OsString>) -> ExitCode {
    match demo::example_runtime(name, args) {
        Some(code) => code,
        None if demo::text().is_none() => fail(
            EXIT_USAGE,
            "this steward was built without its demo (cargo feature `demo`), so it has no example runtimes",
        ),
        None => fail(
            EXIT_USAGE,
            format!("no example runtime {name:?}; there are `echo` and `kv`"),
        ),
    }
}

async fn dispatch(cli: Cli) -> ExitCode {
    let command = match cli.command {
        Command::Run {
            config,
            data_dir,
            listen,
            max_request_bytes,
            name,
            http_timeout,
            fleet,
            fleet_prefix,
        } => {
            let fleet = (!fleet.is_empty()).then_some(FleetOptions {
                endpoints: fleet,
                prefix: fleet_prefix,
                lease_ttl: None,
            });
            return run(RunOptions {
                config,
                data_dir,
                listen,
                token_file: cli.token_file,
                max_request_bytes,
                name,
                http_timeout,
                fleet,
            })
            .await;
        }
        Command::Config(ConfigCommand::Check { file }) => return config_check(&file),
        Command::Config(ConfigCommand::Demo) => {
            let Some(text) = demo::text() else {
                return fail(
                    EXIT_USAGE,
                    "this steward was built without its demo (cargo feature `demo`)",
                );
            };
            return match output::print(text) {
                Ok(()) => ExitCode::SUCCESS,
                Err(closed) => output_failed(&closed),
            };
        }
        Command::ExampleRuntime { .. }
        | Command::HookLeader { .. }
        | Command::HookTool { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => {
            unreachable!("handled before the async runtime")
        }
        Command::Client(command) => command,
    };
    let result = match Client::new(&cli.api, cli.token_file.as_deref()) {
        Ok(client) => match command {
            ClientCommand::Status { runtime, json } => match runtime {
                Some(runtime) => client.status_of(&runtime, json).await,
                None => client.status(json).await,
            },
            ClientCommand::Call {
                runtime,
                method,
                args,
            } => client.call(&runtime, &method, args.as_deref()).await,
            ClientCommand::SetVersion {
                runtime,
                version,
                timeout,
                no_wait,
            } => {
                client
                    .set_version(&runtime, &version, timeout, !no_wait)
                    .await
            }
            ClientCommand::Fleet(FleetCommand::Status { runtime, json }) => {
                client.fleet_status(runtime.as_deref(), json).await
            }
            ClientCommand::Abort { runtime, force } => client.abort(&runtime, force).await,
            ClientCommand::Resolve { runtime, skip, .. } => client.resolve(&runtime, !skip).await,
            ClientCommand::Logs {
                runtime,
                follow,
                tail,
                version,
                json,
            } => {
                let query = LogsQuery {
                    version: version.as_deref(),
                    tail,
                    follow,
                };
                client.logs(&runtime, &query, json).await
            }
            ClientCommand::Events { runtime, json } => {
                client.events(runtime.as_deref(), json).await
            }
        },
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is_quiet() => ExitCode::from(error.exit_status()),
        Err(error) => fail(error.exit_status(), error),
    }
}

/// The command line's definition, as `steward` (the name it is installed
/// under, whatever the binary's file is called).
fn definition() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().bin_name("steward")
}

/// [`definition`] without its hidden commands (entry points the agent
/// and hooks run themselves), which clap_complete would offer too.
fn visible_definition() -> clap::Command {
    let full = definition();
    let mut visible = clap::Command::new("steward")
        .bin_name("steward")
        .version(env!("CARGO_PKG_VERSION"));
    if let Some(about) = full.get_about() {
        visible = visible.about(about.clone());
    }
    for arg in full.get_arguments() {
        visible = visible.arg(arg.clone());
    }
    for command in full
        .get_subcommands()
        .filter(|command| !command.is_hide_set())
    {
        visible = visible.subcommand(command.clone());
    }
    visible
}

/// `steward completions SHELL`: the script, generated from the command
/// line's definition.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut script = Vec::new();
    // Into a buffer: the generators panic on a failed write.
    clap_complete::generate(shell, &mut visible_definition(), "steward", &mut script);
    match output::print(&String::from_utf8_lossy(&script)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(closed) => output_failed(&closed),
    }
}

/// `steward man [--dir DIR]`: the manual page of [`definition`] on stdout,
/// or one page per command in `dir`.
fn man(dir: Option<&std::path::Path>) -> ExitCode {
    if let Some(dir) = dir {
        let mut definition = definition().disable_help_subcommand(true);
        definition.build();
        return match write_pages(&definition, dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(
                1,
                format!(
                    "cannot write the manual pages into {}: {error}",
                    dir.display()
                ),
            ),
        };
    }
    let mut page = Vec::new();
    if let Err(error) = clap_mangen::Man::new(definition()).render(&mut page) {
        return fail(1, format!("cannot render the manual page: {error}"));
    }
    match output::print(&String::from_utf8_lossy(&page)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(closed) => output_failed(&closed),
    }
}

/// Writes the page of `command` and of each of its visible subcommands
/// (`steward-status.1`, …), every one saying which steward it documents.
fn write_pages(command: &clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    for subcommand in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(subcommand, dir)?;
    }
    clap_mangen::Man::new(command.clone())
        .source(format!("steward {}", env!("CARGO_PKG_VERSION")))
        .generate_to(dir)
        .map(drop)
}

fn config_check(file: &std::path::Path) -> ExitCode {
    match config::load(file, &CommandResolver::from_env()) {
        Ok(config) => {
            let line = format!(
                "{}: ok ({} runtime{})",
                file.display(),
                config.runtimes.len(),
                if config.runtimes.len() == 1 { "" } else { "s" }
            );
            match output::print_line(&line) {
                Ok(()) => ExitCode::SUCCESS,
                Err(closed) => output_failed(&closed),
            }
        }
        Err(errors) => {
            for error in &errors.0 {
                output::eprint_line(&format!("error: {error}"));
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

async fn run(options: RunOptions) -> ExitCode {
    let listen = options.listen;
    match agent::run(options, |agent| print_banner(agent, listen)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(crate::Error::Config(errors)) => {
            for error in &errors.0 {
                output::eprint_line(&format!("error: {error}"));
            }
            ExitCode::from(EXIT_USAGE)
        }
        Err(error) => fail(1, error),
    }
}

/// What a newcomer sees first: where the API is and what to try. The
/// hints are commands that work as printed (address, token, runtimes).
///
/// An agent whose stdout is closed keeps running: it serves whether or
/// not anybody reads its banner (its logs go to stderr).
fn print_banner(agent: &Agent, asked: SocketAddr) {
    let _ = output::print(&banner(agent, asked));
}

fn banner(agent: &Agent, asked: SocketAddr) -> String {
    let mut text = format!(
        "steward {}: control API on http://{}\ndata dir: {}\n",
        env!("CARGO_PKG_VERSION"),
        agent.addr,
        agent.data_dir.display()
    );
    if agent.runtimes.is_empty() {
        text.push_str(
            "runtimes: none yet (add [[runtime]] tables to the config file; it is watched)\n",
        );
    } else {
        let ids: Vec<&str> = agent.runtimes.iter().map(|(id, _)| id.as_str()).collect();
        text.push_str(&format!("runtimes: {}\n", ids.join(", ")));
    }
    text.push_str("\nTry, in another terminal:\n");
    for hint in hints(agent, asked) {
        text.push_str(&format!("  {hint}\n"));
    }
    text.push_str("Stop with Ctrl-C.\n");
    text
}

fn hints(agent: &Agent, asked: SocketAddr) -> Vec<String> {
    let mut program = program_hint();
    if asked.to_string() != DEFAULT_LISTEN {
        // A wildcard address is not one a client can connect to.
        let mut reachable = agent.addr;
        if reachable.ip().is_unspecified() {
            reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        program.push_str(&format!(" --api http://{reachable}"));
    }
    if agent.token_required {
        program.push_str(" --token-file FILE");
    }
    let mut hints = vec![format!("{program} status")];
    if agent.demo {
        hints.push(format!(
            "{program} call echo echo '{{\"hello\": \"world\"}}'"
        ));
        hints.push(format!("{program} set-version echo 2.0.0"));
        return hints;
    }
    if let Some((id, versions)) = agent.runtimes.iter().find(|(_, v)| v.len() > 1) {
        let other = versions.last().map(String::as_str).unwrap_or_default();
        hints.push(format!("{program} set-version {id} {other}"));
    }
    hints.push(format!("{program} events"));
    hints
}

/// How to invoke this binary from the current directory: `steward` if it
/// is what `PATH` finds, else its path (relative when under the current
/// directory, as after `cargo run`).
fn program_hint() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "steward".to_owned();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join("steward")
                .canonicalize()
                .is_ok_and(|found| exe.canonicalize().is_ok_and(|exe| exe == found))
        })
    });
    if on_path {
        return "steward".to_owned();
    }
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(PathBuf::from));
    match relative {
        Some(relative) => format!("./{}", relative.display()),
        None => exe.display().to_string(),
    }
}
