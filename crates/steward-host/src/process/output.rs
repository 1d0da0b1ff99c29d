//! A runtime process's stdout and stderr: read line by line for as long
//! as the process keeps its pipes open, each line copied into the host's
//! log.
//!
//! The pipes are always drained, whatever the runtime prints: bytes that
//! are not UTF-8 are replaced (U+FFFD), and a line longer than
//! `max_line_bytes` keeps its start and a marker saying how much was cut
//! (the rest is read and thrown away, never buffered). A runtime whose
//! pipe is not read blocks on its next write, or dies of `EPIPE` when it
//! is closed: this module must never stop reading before the end.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tracing::{Instrument, info};

use super::ProcessConfig;

/// The default longest line passed on, in bytes (before the marker).
pub(super) const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// Reads `pipe` to its end on a task of its own (within the current span:
/// the runtime's id and version), logging each line.
pub(super) fn forward(
    pipe: Option<impl AsyncRead + Unpin + Send + 'static>,
    stream: OutputStream,
    config: &ProcessConfig,
) {
    let Some(pipe) = pipe else { return };
    let max_line_bytes = config.max_line_bytes;
    // `instrument`, not `span.enter()`: an entered guard held across an
    // await leaks the span into whatever else the thread polls meanwhile.
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            let mut lines = LineReader::new(pipe, max_line_bytes);
            while let Some(text) = lines.next_line().await {
                info!(stream = stream.as_str(), "{text}");
            }
        }
        .instrument(span),
    );
}

/// Splits a pipe into lines of at most `max` bytes (plus the marker).
struct LineReader<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
    /// Bytes of the current line beyond `max`, read and thrown away.
    cut: u64,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(reader: R, max: usize) -> Self {
        Self {
            reader: BufReader::new(reader),
            line: Vec::new(),
            cut: 0,
            max: max.max(1),
        }
    }

    /// The next line; `None` at the end of the stream (a read error ends
    /// it too: for a pipe, both mean the process closed it).
    async fn next_line(&mut self) -> Option<String> {
        loop {
            let available = match self.reader.fill_buf().await {
                Ok(available) if !available.is_empty() => available,
                _ => return self.take_rest(),
            };
            let newline = available.iter().position(|&byte| byte == b'\n');
            let end = newline.unwrap_or(available.len());
            let room = self.max - self.line.len();
            let kept = end.min(room);
            self.line.extend_from_slice(&available[..kept]);
            self.cut += u64::try_from(end - kept).unwrap_or(u64::MAX);
            match newline {
                Some(at) => {
                    self.reader.consume(at + 1);
                    return Some(self.take());
                }
                None => self.reader.consume(end),
            }
        }
    }

    fn take_rest(&mut self) -> Option<String> {
        (!self.line.is_empty() || self.cut > 0).then(|| self.take())
    }

    fn take(&mut self) -> String {
        if self.cut == 0 && self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        if self.cut > 0 {
            // A cut in the middle of a character would show as U+FFFD:
            // cut before it instead.
            let split = split_character(&self.line);
            self.cut += u64::try_from(self.line.len() - split).unwrap_or(0);
            self.line.truncate(split);
        }
        let mut text = String::from_utf8_lossy(&self.line).into_owned();
        if self.cut > 0 {
            text.push_str(&format!(" [truncated {} bytes]", self.cut));
        }
        self.line.clear();
        self.cut = 0;
        text
    }
}

/// Where the UTF-8 character that `bytes` ends in the middle of starts;
/// `bytes.len()` if it ends with a whole one (or with bytes that are not
/// UTF-8 anyway).
fn split_character(bytes: &[u8]) -> usize {
    let tail_start = bytes.len().saturating_sub(3);
    for start in (tail_start..bytes.len()).rev() {
        if bytes[start] & 0xc0 != 0x80 {
            // The last byte that starts a character: is it incomplete?
            return match std::str::from_utf8(&bytes[start..]) {
                Err(error) if error.error_len().is_none() => start,
                _ => bytes.len(),
            };
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut reader = LineReader::new(input, max);
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().await {
            lines.push(line);
        }
        lines
    }

    #[tokio::test]
    async fn splits_on_newlines_and_keeps_a_last_unterminated_line() {
        assert_eq!(lines(b"a\n\nb\r\nc", 100).await, ["a", "", "b", "c"]);
        assert_eq!(lines(b"", 100).await, Vec::<String>::new());
        assert_eq!(lines(b"x\n", 100).await, ["x"]);
    }

    #[tokio::test]
    async fn long_lines_are_cut_with_a_marker_and_the_rest_is_skipped() {
        assert_eq!(
            lines(b"abcdefg\nhi\n", 3).await,
            ["abc [truncated 4 bytes]", "hi"]
        );
        assert_eq!(lines(b"abc\n", 3).await, ["abc"]);
        assert_eq!(lines(b"abcd", 3).await, ["abc [truncated 1 bytes]"]);
        // Longer than the reader's buffer (8 KiB): skipped piece by piece.
        let long = [vec![b'y'; 100_000], b"\nnext\n".to_vec()].concat();
        assert_eq!(
            lines(&long, 10).await,
            ["yyyyyyyyyy [truncated 99990 bytes]", "next"]
        );
    }

    #[tokio::test]
    async fn a_cut_never_splits_a_character() {
        // "é" is two bytes: a cut after 2 bytes of "aé" would split it.
        assert_eq!(
            lines("aéb\n".as_bytes(), 2).await,
            ["a [truncated 3 bytes]"]
        );
        assert_eq!(lines("aé\n".as_bytes(), 3).await, ["aé"]);
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_are_replaced() {
        assert_eq!(
            lines(b"a\xffb\n\xfe\n", 100).await,
            ["a\u{fffd}b", "\u{fffd}"]
        );
    }
}
