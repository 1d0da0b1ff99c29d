//! The `steward` binary: see the `steward_agent` library for what it does.

// The binary, not the library, picks the allocator: a program embedding
// `steward_agent` keeps its own. mimalloc because the control API's path
// allocates and frees a few dozen small buffers per call across threads:
// perf at 64 connections put ~13 µs of CPU per call in glibc's malloc
// against ~1 µs in the bare HTTP floor, and api_bench's echo call went
// from 27.8k to 32.6k req/s at 16 connections (medians of 5 runs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    steward_agent::cli::main()
}
