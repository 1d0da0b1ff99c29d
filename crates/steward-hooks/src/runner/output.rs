//! A hook's output: both pipes read as one stream of tagged lines, with a
//! bound on line length (a hook that prints megabytes without a newline
//! must not make the agent buffer them). This module only turns bytes into
//! lines; it must never decide where lines go.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::{OutputLine, OutputStream};

/// Lines longer than this are handed on in pieces of this size.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Reads lines (without their `\n`) from a pipe. Cancel safe: a partly
/// read line stays buffered for the next call.
struct LineReader<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(reader: R) -> Self {
        Self::with_max(reader, MAX_LINE_BYTES)
    }

    fn with_max(reader: R, max: usize) -> Self {
        Self {
            reader: BufReader::new(reader),
            line: Vec::new(),
            max: max.max(1),
        }
    }

    /// The next line; `None` at the end of the stream (or when reading
    /// fails, which for a pipe means the same). Invalid UTF-8 is replaced.
    async fn next_line(&mut self) -> Option<String> {
        loop {
            let available = match self.reader.fill_buf().await {
                Ok(available) => available,
                Err(_) => return self.take_rest(),
            };
            if available.is_empty() {
                return self.take_rest();
            }
            let room = self.max - self.line.len();
            // `room + 1`: a newline right after a full line ends that line
            // rather than making an empty one.
            if let Some(newline) = available.iter().take(room + 1).position(|b| *b == b'\n') {
                self.line.extend_from_slice(&available[..newline]);
                self.reader.consume(newline + 1);
                return Some(self.take());
            }
            let taken = available.len().min(room);
            self.line.extend_from_slice(&available[..taken]);
            self.reader.consume(taken);
            if self.line.len() >= self.max {
                return Some(self.take());
            }
        }
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        line
    }

    fn take_rest(&mut self) -> Option<String> {
        (!self.line.is_empty()).then(|| self.take())
    }
}

type Pipe = Box<dyn AsyncRead + Send + Unpin>;

/// Both output pipes, read as one stream of tagged lines.
pub(super) struct Output {
    stdout: Option<LineReader<Pipe>>,
    stderr: Option<LineReader<Pipe>>,
    /// Which pipe reported its end most recently, for `close`.
    ended: Option<OutputStream>,
}

impl Output {
    pub(super) fn new(
        stdout: Option<impl AsyncRead + Send + Unpin + 'static>,
        stderr: Option<impl AsyncRead + Send + Unpin + 'static>,
    ) -> Self {
        let reader = |pipe: Pipe| LineReader::new(pipe);
        Self {
            stdout: stdout.map(|pipe| reader(Box::new(pipe))),
            stderr: stderr.map(|pipe| reader(Box::new(pipe))),
            ended: None,
        }
    }

    /// The next line from either pipe; `None` when one pipe ended (call
    /// [`close`](Output::close)), pending forever once both did.
    pub(super) async fn next_line(&mut self) -> Option<OutputLine> {
        let (stream, line) = tokio::select! {
            line = next(&mut self.stdout) => (OutputStream::Stdout, line),
            line = next(&mut self.stderr) => (OutputStream::Stderr, line),
        };
        if line.is_none() {
            self.ended = Some(stream);
        }
        line.map(|line| OutputLine { stream, line })
    }

    /// Stops reading the pipe that ended.
    pub(super) fn close(&mut self) {
        match self.ended.take() {
            Some(OutputStream::Stdout) => self.stdout = None,
            Some(OutputStream::Stderr) => self.stderr = None,
            None => {}
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }
}

async fn next(reader: &mut Option<LineReader<Pipe>>) -> Option<String> {
    match reader {
        Some(reader) => reader.next_line().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut reader = LineReader::with_max(input, max);
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().await {
            lines.push(line);
        }
        lines
    }

    #[tokio::test]
    async fn splits_on_newlines_and_keeps_a_last_unterminated_line() {
        assert_eq!(lines(b"a\n\nb\nc", 100).await, ["a", "", "b", "c"]);
        assert_eq!(lines(b"", 100).await, Vec::<String>::new());
        assert_eq!(lines(b"x\n", 100).await, ["x"]);
    }

    #[tokio::test]
    async fn long_lines_come_in_pieces() {
        assert_eq!(lines(b"abcdefg\nhi\n", 3).await, ["abc", "def", "g", "hi"]);
        assert_eq!(lines(b"abc\n", 3).await, ["abc"]);
        assert_eq!(lines(b"abcd\n", 3).await, ["abc", "d"]);
    }

    #[tokio::test]
    async fn invalid_utf8_is_replaced() {
        assert_eq!(lines(b"a\xffb\n", 100).await, ["a\u{fffd}b"]);
    }
}
