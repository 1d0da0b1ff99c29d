//! A stand-in for the `steward` binary in this crate's tests (the agent
//! crate depends on this one, so its binary cannot be used here). It
//! dispatches the way the agent's `main` will: a hook tool when called by
//! a tool's name (`argv[0]`), the leader for `hook-leader`.

use std::process::ExitCode;

use steward_hooks::leader::leader_main;
use steward_hooks::tool::{tool_main, tool_name};

const USAGE: &str = "usage: steward-hooks-test hook-leader [--parent PID] -- PROGRAM [ARGS...]";

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    if let Some(tool) = tool_name(&argv0) {
        return tool_main(tool, &args.collect::<Vec<_>>());
    }
    match args.next() {
        Some(command) if command == "hook-leader" => leader_main(args.collect()),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
