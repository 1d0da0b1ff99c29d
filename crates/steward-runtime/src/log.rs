//! Where a runtime's logs go: stderr, which the host copies into its own
//! log. Writing there must never take the runtime down: when the host dies
//! its end of the pipe closes, writes fail with `EPIPE`, and a logger that
//! panics on that (as `eprintln!` and tracing's internal error report do)
//! would kill the task that was about to notice the host is gone — leaving
//! a runtime that outlives its host. This module must never fail a write.

use std::io::{self, Write};

/// Standard error, losing what cannot be written.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Nobody is listening any more: the line is lost, not the process.
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// Logs to stderr, filtered by `RUST_LOG`, never failing on a closed pipe.
pub(crate) fn init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(|| LossyStderr)
        .with_ansi(false)
        .log_internal_errors(false)
        .try_init();
}

/// One line on stderr, or nothing if stderr is gone.
pub(crate) fn line(text: &str) {
    let _ = writeln!(LossyStderr, "{text}");
}
