//! The hook tool client: what runs when a hook calls `config-get` & co.
//!
//! It forwards `{context id, absolute cwd, command, args}` to the agent and
//! prints the answer. It is plain blocking std code with no async runtime,
//! because every hook tool call pays for its start-up. It must never
//! interpret a command itself: the agent decides everything.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::Error;
use crate::tool::server::{
    AGENT_SOCKET_ENV, CONTEXT_ID_ENV, JUJU_AGENT_SOCKET_ENV, JUJU_CONTEXT_ID_ENV,
};
use crate::tool::wire::{self, FrameError, ToolAnswer, ToolRequest};

/// Runs the hook tool `command` (a name, or a path whose file name is the
/// name: `argv[0]`) with `args` (the arguments after it), with the process's
/// environment, working directory, stdout and stderr. The body of the
/// `steward` binary when it is called through a tool's name.
pub fn tool_main(command: &str, args: &[OsString]) -> ExitCode {
    let mut stdout = io::stdout().lock();
    let mut stderr = io::stderr().lock();
    let code = match std::env::current_dir() {
        Ok(cwd) => run_tool(
            command,
            args,
            |name| std::env::var_os(name),
            &cwd,
            &mut stdout,
            &mut stderr,
        ),
        Err(error) => {
            // Nothing useful to do if stderr itself is gone.
            let _ = writeln!(stderr, "error: cannot read the current directory: {error}");
            1
        }
    };
    ExitCode::from(code)
}

/// [`tool_main`] with everything it reads and writes given explicitly:
/// `env` looks up environment variables, `cwd` is the working directory
/// (absolute). Returns the exit code.
///
/// Reads the context id from `STEWARD_CONTEXT_ID` (or `JUJU_CONTEXT_ID`)
/// and the socket from `STEWARD_AGENT_SOCKET` (or `JUJU_AGENT_SOCKET`).
/// Exits with the command's code; 1 with `error: …` on stderr when the
/// command cannot be sent or is refused.
pub fn run_tool(
    command: &str,
    args: &[OsString],
    env: impl Fn(&str) -> Option<OsString>,
    cwd: &Path,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> u8 {
    match send(command, args, env, cwd) {
        Ok(ToolAnswer::Output(output)) => {
            // A closed stdout (`tool | head -1`) must not change the exit
            // code the hook sees.
            let _ = stdout.write_all(output.stdout.as_bytes());
            let _ = stdout.flush();
            let _ = stderr.write_all(output.stderr.as_bytes());
            u8::try_from(output.code).unwrap_or(1)
        }
        Ok(ToolAnswer::Refused { error }) => {
            let _ = writeln!(stderr, "error: {error}");
            1
        }
        Err(message) => {
            let _ = writeln!(stderr, "error: {message}");
            1
        }
    }
}

fn send(
    command: &str,
    args: &[OsString],
    env: impl Fn(&str) -> Option<OsString>,
    cwd: &Path,
) -> Result<ToolAnswer, String> {
    let lookup = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|name| env(name).filter(|value| !value.is_empty()))
            .ok_or_else(|| {
                format!(
                    "{} not set (this command is a hook tool: run it from a hook)",
                    names[0]
                )
            })
    };
    let context_id = lookup([CONTEXT_ID_ENV, JUJU_CONTEXT_ID_ENV])?
        .into_string()
        .map_err(|id| format!("{CONTEXT_ID_ENV} is not valid UTF-8: {id:?}"))?;
    let socket = PathBuf::from(lookup([AGENT_SOCKET_ENV, JUJU_AGENT_SOCKET_ENV])?);
    let dir = cwd
        .to_str()
        .ok_or_else(|| format!("the current directory is not valid UTF-8: {cwd:?}"))?
        .to_string();
    let args = args
        .iter()
        .enumerate()
        .map(|(index, arg)| {
            arg.clone()
                .into_string()
                .map_err(|arg| format!("argument {} is not valid UTF-8: {arg:?}", index + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let command = Path::new(command)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or(command)
        .to_string();
    let request = ToolRequest {
        context_id,
        dir,
        command,
        args,
    };
    call(&socket, &request).map_err(|error| error.to_string())
}

/// Sends one request to the agent's socket and returns its answer
/// (blocking). For clients other than [`run_tool`], and tests.
pub fn call(socket: &Path, request: &ToolRequest) -> Result<ToolAnswer, Error> {
    let mut stream = UnixStream::connect(socket).map_err(|source| Error::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    let lost = |reason: String| Error::ConnectionLost {
        path: socket.to_path_buf(),
        reason,
    };
    let payload = serde_json::to_vec(request).map_err(|error| lost(error.to_string()))?;
    wire::write_frame(&mut stream, &payload).map_err(|error| lost(error.to_string()))?;
    let answer = match wire::read_frame(&mut stream, wire::MAX_ANSWER_BYTES) {
        Ok(answer) => answer,
        Err(FrameError::Closed) => return Err(lost("it closed the connection".into())),
        Err(error) => return Err(lost(error.to_string())),
    };
    serde_json::from_slice(&answer).map_err(|error| Error::MalformedAnswer {
        reason: error.to_string(),
    })
}
