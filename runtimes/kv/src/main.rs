//! The `steward-runtime-kv` binary; see the library for the runtime.

fn main() -> std::process::ExitCode {
    steward_runtime_kv::main_from(std::env::args_os())
}
