//! Everything the command line prints goes through here, so that a
//! closed pipe ends a command the way it ends any Unix tool.
//!
//! Rust ignores `SIGPIPE`, so writing to a pipe whose reader has gone
//! (`steward status --json | head -3`) fails with `EPIPE`, and `println!`
//! panics on that ("failed printing to stdout: Broken pipe"). Here a write
//! to standard output returns [`Closed`] instead; the command stops writing
//! and exits with [`EXIT_CLOSED`] (141), without a word: the status a
//! shell reports for `cat`, `grep`, `jq` or `kubectl` killed by `SIGPIPE`,
//! so `set -o pipefail` scripts see steward as they see those. (ripgrep
//! exits 0 instead; steward follows the larger family.) Any other write
//! error (a full disk behind `>`) is a real failure and says so.
//!
//! Standard error is written to without ever failing: when it is closed
//! there is nobody left to tell. This module must never panic on output.

use std::fmt;
use std::io::{self, Write};

/// The exit status of a command whose output was closed early: 128 +
/// `SIGPIPE` (13), what a shell shows for a tool the signal killed.
pub(crate) const EXIT_CLOSED: u8 = 141;

/// Why standard output could not be written.
#[derive(Debug)]
pub(crate) enum Closed {
    /// The reader went away (`EPIPE`): stop quietly.
    Pipe,
    /// Another failure, e.g. a full disk behind a redirection.
    Failed(io::Error),
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::Pipe => f.write_str("standard output was closed"),
            Closed::Failed(error) => write!(f, "cannot write to standard output: {error}"),
        }
    }
}

impl From<io::Error> for Closed {
    fn from(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::BrokenPipe {
            Closed::Pipe
        } else {
            Closed::Failed(error)
        }
    }
}

/// Writes `text` to standard output and flushes it (a follower's lines
/// must show as they come, and a closed pipe must be noticed at once).
pub(crate) fn print(text: &str) -> Result<(), Closed> {
    write_to(&mut io::stdout().lock(), text)
}

/// [`print`] with a newline after `text`.
pub(crate) fn print_line(text: &str) -> Result<(), Closed> {
    let mut out = io::stdout().lock();
    write_to(&mut out, text)?;
    write_to(&mut out, "\n")
}

fn write_to(out: &mut impl Write, text: &str) -> Result<(), Closed> {
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Writes `text` and a newline to standard error, losing it if standard
/// error is closed.
pub(crate) fn eprint_line(text: &str) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.write_all(b"\n");
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader has gone.
    struct BrokenPipe;

    impl Write for BrokenPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer on a full disk.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::StorageFull.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_pipe_is_a_quiet_close_and_other_errors_are_failures() {
        assert!(matches!(write_to(&mut BrokenPipe, "x"), Err(Closed::Pipe)));
        let full = write_to(&mut Full, "x").unwrap_err();
        assert!(matches!(full, Closed::Failed(_)));
        assert!(
            full.to_string()
                .starts_with("cannot write to standard output")
        );
        let mut buffer = Vec::new();
        write_to(&mut buffer, "ok").unwrap();
        assert_eq!(buffer, b"ok");
    }
}
