//! A stand-in for the `steward` binary in this crate's tests (the agent
//! crate depends on this one, so its binary cannot be used here). It
//! dispatches the way the agent's `main` will: a hook tool when called by
//! a tool's name (`argv[0]`), the leader for `hook-leader`; and, to play an
//! agent that tests can kill, `run-hook HOOKS_DIR HOOK TIMEOUT_SECS`, which
//! runs one hook under the leader and prints its output and outcome.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use steward_hooks::leader::leader_main;
use steward_hooks::runner::{HookSpec, LeaderCommand, run_hook};
use steward_hooks::tool::{tool_main, tool_name};

const USAGE: &str = "usage: steward-hooks-test hook-leader [--parent PID] -- PROGRAM [ARGS...]\n       \
                     steward-hooks-test run-hook HOOKS_DIR HOOK TIMEOUT_SECS";

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    if let Some(tool) = tool_name(&argv0) {
        return tool_main(tool, &args.collect::<Vec<_>>());
    }
    match args.next() {
        Some(command) if command == "hook-leader" => leader_main(args.collect()),
        Some(command) if command == "run-hook" => run_hook_main(args.collect()),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run_hook_main(args: Vec<OsString>) -> ExitCode {
    let [dir, hook, timeout] = args.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let Some(timeout) = timeout.to_str().and_then(|t| t.parse().ok()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let Ok(executable) = std::env::current_exe() else {
        eprintln!("cannot find this executable");
        return ExitCode::from(1);
    };
    let mut spec = HookSpec::new(
        dir,
        hook.to_string_lossy(),
        dir,
        Duration::from_secs(timeout),
    );
    // What the hook gets: this process's PATH and test variables.
    spec.env = std::env::vars_os()
        .filter(|(name, _)| name == "PATH" || name.to_string_lossy().starts_with("STEWARD_TEST_"))
        .collect();
    spec.leader = Some(LeaderCommand {
        program: executable,
        args: vec!["hook-leader".into()],
    });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start a runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let report = runtime.block_on(run_hook(&spec, &Default::default(), |line| {
        println!("{:?}: {}", line.stream, line.line);
    }));
    println!("{report}");
    if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
