//! A runtime process's stdout and stderr: read line by line for as long
//! as the process keeps its pipes open, each line copied into the host's
//! log and, when the config has an [`OutputSink`], passed on to it.
//!
//! The pipes are always drained, whatever the runtime prints: bytes that
//! are not UTF-8 are replaced (U+FFFD), a line longer than
//! `max_line_bytes` keeps its start and a marker saying how much was cut
//! (the rest is read and thrown away, never buffered), and a sink whose
//! reader is behind loses lines rather than hold the pipe up: a runtime
//! blocked writing its log would stop serving. This module must never
//! wait for the sink.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tracing::{Instrument, info, warn};

use super::ProcessConfig;

/// The default longest line passed on, in bytes (before the marker).
pub(super) const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

impl OutputStream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

impl std::fmt::Display for OutputStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line a runtime process printed, as an [`OutputSink`] receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// The version whose process printed it.
    pub version: Arc<str>,
    /// Where it was printed.
    pub stream: OutputStream,
    /// The line without its `\n` (and a `\r` before it): bytes that are not
    /// UTF-8 replaced by U+FFFD; a line longer than the config's
    /// `max_line_bytes` cut there, at a character boundary, and ended with
    /// ` [truncated N bytes]`.
    pub text: String,
    /// When the host read it.
    pub time: SystemTime,
    /// Lines of the same process and stream that were lost just before
    /// this one because the sink's reader was behind (0 almost always).
    pub dropped: u64,
}

/// Where a runtime's output lines go besides the host's log: a bounded
/// channel, made with [`OutputSink::channel`], whose receiver the host's
/// user reads. Cheap to clone; the versions of a runtime may share one.
///
/// The host never waits for the receiver: a line that finds the channel
/// full is dropped and counted (see [`OutputLine::dropped`] and
/// [`OutputSink::dropped`]), and a closed receiver is ignored. The host's
/// log gets every line either way.
#[derive(Debug, Clone)]
pub struct OutputSink {
    sender: mpsc::Sender<OutputLine>,
    dropped: Arc<AtomicU64>,
}

impl OutputSink {
    /// A sink holding up to `capacity` lines (at least 1) that the
    /// receiver has not taken yet.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<OutputLine>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let sink = Self {
            sender,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (sink, receiver)
    }

    /// How many lines were dropped so far because the channel was full
    /// (by every process that had this sink or a clone of it).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Passes `line` on, or drops it if the channel is full; `lost` counts
    /// the lines dropped since the last one that went through, and goes
    /// with the next one that does.
    fn offer(&self, mut line: OutputLine, lost: &mut u64) {
        line.dropped = *lost;
        match self.sender.try_send(line) {
            Ok(()) => *lost = 0,
            Err(mpsc::error::TrySendError::Full(_)) => {
                *lost += 1;
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // Nobody reads any more: the log still has the lines.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Reads `pipe` to its end on a task of its own (within the current span:
/// the runtime's id and version), logging each line and passing it on to
/// the config's sink.
pub(super) fn forward(
    pipe: Option<impl AsyncRead + Unpin + Send + 'static>,
    stream: OutputStream,
    config: &ProcessConfig,
) {
    let Some(pipe) = pipe else { return };
    let (version, sink) = (config.version.clone(), config.output.clone());
    let max_line_bytes = config.max_line_bytes;
    // `instrument`, not `span.enter()`: an entered guard held across an
    // await leaks the span into whatever else the thread polls meanwhile.
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            let mut lines = LineReader::new(pipe, max_line_bytes);
            let mut lost = 0;
            while let Some(text) = lines.next_line().await {
                info!(stream = stream.as_str(), "{text}");
                if let Some(sink) = &sink {
                    let line = OutputLine {
                        version: version.clone(),
                        stream,
                        text,
                        time: SystemTime::now(),
                        dropped: 0,
                    };
                    sink.offer(line, &mut lost);
                }
            }
            if lost > 0 {
                warn!(
                    stream = stream.as_str(),
                    lost, "the last output lines were not passed on: their reader was behind"
                );
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

    #[test]
    fn a_full_sink_drops_and_counts_and_the_next_line_says_how_many() {
        let (sink, mut receiver) = OutputSink::channel(1);
        let line = |text: &str| OutputLine {
            version: Arc::from("1"),
            stream: OutputStream::Stdout,
            text: text.to_owned(),
            time: SystemTime::UNIX_EPOCH,
            dropped: 0,
        };
        let mut lost = 0;
        sink.offer(line("a"), &mut lost);
        sink.offer(line("b"), &mut lost);
        sink.offer(line("c"), &mut lost);
        assert_eq!((lost, sink.dropped()), (2, 2));
        assert_eq!(receiver.try_recv().unwrap().text, "a");
        sink.offer(line("d"), &mut lost);
        let next = receiver.try_recv().unwrap();
        assert_eq!((next.text.as_str(), next.dropped, lost), ("d", 2, 0));
        drop(receiver);
        sink.offer(line("e"), &mut lost);
        assert_eq!(sink.dropped(), 2, "a closed receiver is not a full one");
    }
}
