//! The `steward` binary: see the `steward_agent` library for what it does.

// The binary, not the library, picks the allocator: a program embedding
// `steward_agent` keeps its own. mimalloc because the control API's path
// allocates and frees a few dozen small buffers per call across threads,
// which glibc's malloc served at several times the cost (the figures are
// in docs/benchmarks.md, "The HTTP API next to its floors").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    steward_agent::cli::main()
}
