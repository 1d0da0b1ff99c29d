//! The `steward` binary: see the `steward_agent` library for what it does.

fn main() -> std::process::ExitCode {
    steward_agent::cli::main()
}
