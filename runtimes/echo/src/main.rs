//! The `steward-runtime-echo` binary; see the library for the runtime.

fn main() -> std::process::ExitCode {
    steward_runtime_echo::main_from(std::env::args_os())
}
