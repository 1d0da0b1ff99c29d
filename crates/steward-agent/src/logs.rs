//! Runtimes' recent output: [`RuntimeLogs`] keeps the latest lines of one
//! runtime in bounded rings (one per version, one for its hooks' output)
//! and passes each new line to its followers; [`LogLine`] is a line as the
//! API serves it and the CLI prints it.
//!
//! Lines come from the host's [`OutputSink`] (a version's stdout and
//! stderr, taken off its channel by a task per process host) and from the
//! hook driver (a hook's stdout and stderr). Memory is bounded per ring:
//! at most `log-lines` lines and `log-lines` KiB of text (the newest line
//! is always kept, and no line is longer than [`MAX_LINE_BYTES`] plus its
//! marker), the oldest going first. This module must never block a
//! writer: its lock is held only to push or copy lines, and a follower
//! that falls behind loses lines and is told how many
//! (`broadcast::error::RecvError::Lagged`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use steward_host::{OutputLine, OutputSink, OutputStream};
use tokio::sync::broadcast;

/// The longest line kept, in bytes (a longer hook line is cut there, with
/// a marker; the host cuts runtime lines at the same length).
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;

/// The text a ring may hold per line it may hold, on average.
const BYTES_PER_LINE: usize = 1024;

/// Lines a process host may have waiting for the task that keeps them.
const SINK_CAPACITY: usize = 1024;

/// New lines kept for followers that fall behind.
const FOLLOW_BUFFER: usize = 1024;

/// Where a line came from (its wire name in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// A process of one of the runtime's versions (`runtime`).
    Runtime,
    /// One of the runtime's hooks (`hook`).
    Hook,
}

/// Which pipe a line was printed on (its wire name in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// Standard output (`stdout`).
    Stdout,
    /// Standard error (`stderr`).
    Stderr,
}

impl LogStream {
    /// Its wire name, e.g. `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

impl From<OutputStream> for LogStream {
    fn from(stream: OutputStream) -> Self {
        match stream {
            OutputStream::Stdout => LogStream::Stdout,
            OutputStream::Stderr => LogStream::Stderr,
        }
    }
}

impl From<steward_hooks::runner::OutputStream> for LogStream {
    fn from(stream: steward_hooks::runner::OutputStream) -> Self {
        match stream {
            steward_hooks::runner::OutputStream::Stdout => LogStream::Stdout,
            steward_hooks::runner::OutputStream::Stderr => LogStream::Stderr,
        }
    }
}

/// One output line of a runtime's process or hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Its number in the runtime's log: increasing in the order the agent
    /// got the lines, across versions and hooks (gaps are lines of other
    /// versions, or no longer kept).
    pub seq: u64,
    /// When the agent read it (RFC 3339, UTC).
    pub time: String,
    /// The version whose process printed it; for a hook's line, the
    /// version the hook ran for.
    pub version: String,
    /// A version's process or a hook.
    pub source: LogSource,
    /// The hook that printed it (hook lines only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// Standard output or standard error.
    pub stream: LogStream,
    /// The line, without its newline: bytes that were not UTF-8 replaced
    /// by U+FFFD, a line longer than 16 KiB cut and ended with
    /// ` [truncated N bytes]`.
    pub text: String,
    /// Lines of the same stream lost just before this one, because the
    /// agent could not keep up with the runtime (left out when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl LogLine {
    /// The line as `steward logs` prints it: time, version (or
    /// `hook:NAME`), stream, text, separated by spaces, so that `grep`,
    /// `cut` and `awk` take it apart; the text is last and as printed.
    pub fn to_line(&self) -> String {
        let source = match &self.hook {
            Some(hook) => format!("hook:{hook}"),
            None => self.version.clone(),
        };
        let mut line = format!(
            "{}  {:<10} {}  {}",
            self.time,
            source,
            self.stream.as_str(),
            self.text
        );
        if self.dropped > 0 {
            line.push_str(&format!("  ({} lines lost before this one)", self.dropped));
        }
        line
    }
}

/// `GET /v1/runtimes/{id}/logs` without `follow`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogList {
    /// The lines, oldest first.
    pub lines: Vec<LogLine>,
}

/// Which lines of a runtime's log.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogFilter {
    /// Only the lines whose `version` is this.
    pub(crate) version: Option<String>,
    /// Only the last this many (of those that match).
    pub(crate) tail: Option<usize>,
}

impl LogFilter {
    pub(crate) fn matches(&self, line: &LogLine) -> bool {
        self.version.as_ref().is_none_or(|v| *v == line.version)
    }
}

/// A ring's key: a version's processes, or the hooks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum RingKey {
    Hooks,
    Version(String),
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<Arc<LogLine>>,
    /// The text bytes of `lines`.
    bytes: usize,
}

impl Ring {
    fn push(&mut self, line: Arc<LogLine>, max_lines: usize) {
        self.bytes += line.text.len();
        self.lines.push_back(line);
        self.trim(max_lines);
    }

    /// Drops the oldest lines beyond the bounds (the newest stays).
    fn trim(&mut self, max_lines: usize) {
        let max_bytes = max_lines.saturating_mul(BYTES_PER_LINE);
        while self.lines.len() > max_lines || (self.bytes > max_bytes && self.lines.len() > 1) {
            let Some(oldest) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= oldest.text.len();
        }
    }
}

#[derive(Debug)]
struct State {
    /// `log-lines`: the most lines per ring (0 keeps none).
    max_lines: usize,
    rings: BTreeMap<RingKey, Ring>,
    next_seq: u64,
}

/// The recent output of one runtime, and its followers.
#[derive(Debug)]
pub(crate) struct RuntimeLogs {
    state: Mutex<State>,
    live: broadcast::Sender<Arc<LogLine>>,
}

impl RuntimeLogs {
    /// Logs keeping `max_lines` lines per ring (`log-lines`).
    pub(crate) fn new(max_lines: usize) -> Self {
        Self {
            state: Mutex::new(State {
                max_lines,
                rings: BTreeMap::new(),
                next_seq: 0,
            }),
            live: broadcast::channel(FOLLOW_BUFFER).0,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a config: `max_lines` from now on (trimming the rings at
    /// once), and only the rings of `versions` (and the hooks') kept.
    pub(crate) fn configure(&self, max_lines: usize, versions: &[String]) {
        let mut state = self.state();
        state.max_lines = max_lines;
        state.rings.retain(|key, ring| {
            let known = match key {
                RingKey::Hooks => true,
                RingKey::Version(version) => versions.contains(version),
            };
            ring.trim(max_lines);
            known && max_lines > 0
        });
    }

    /// Whether lines are kept at all (`log-lines` is not 0).
    pub(crate) fn keeps_lines(&self) -> bool {
        self.state().max_lines > 0
    }

    /// A sink for the host of one version: a task takes the lines off its
    /// channel into these logs, until the host and its processes are gone.
    pub(crate) fn sink(self: &Arc<Self>) -> OutputSink {
        let (sink, mut lines) = OutputSink::channel(SINK_CAPACITY);
        let logs = self.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(64);
            while lines.recv_many(&mut batch, 64).await > 0 {
                logs.push_output(batch.drain(..));
            }
        });
        sink
    }

    /// Keeps lines of a version's processes (one lock for all of them).
    pub(crate) fn push_output(&self, lines: impl IntoIterator<Item = OutputLine>) {
        let mut state = self.state();
        for line in lines {
            let version = line.version.to_string();
            let entry = Entry {
                time: line.time,
                version: version.clone(),
                hook: None,
                stream: line.stream.into(),
                text: line.text,
                dropped: line.dropped,
            };
            self.push(&mut state, RingKey::Version(version), entry);
        }
    }

    /// Keeps a line of `hook`, run for `version`.
    pub(crate) fn push_hook(&self, hook: &str, version: &str, stream: LogStream, text: String) {
        let entry = Entry {
            time: SystemTime::now(),
            version: version.to_owned(),
            hook: Some(hook.to_owned()),
            stream,
            text: truncate(text),
            dropped: 0,
        };
        self.push(&mut self.state(), RingKey::Hooks, entry);
    }

    /// Keeps `entry` in the ring of `key` and passes it to the followers,
    /// both under the lock: a follower's tail and its live lines then
    /// neither overlap nor leave a gap.
    fn push(&self, state: &mut State, key: RingKey, entry: Entry) {
        if state.max_lines == 0 {
            return;
        }
        let line = Arc::new(LogLine {
            seq: state.next_seq,
            time: humantime::format_rfc3339_millis(entry.time).to_string(),
            version: entry.version,
            source: match entry.hook {
                Some(_) => LogSource::Hook,
                None => LogSource::Runtime,
            },
            hook: entry.hook,
            stream: entry.stream,
            text: entry.text,
            dropped: entry.dropped,
        });
        state.next_seq += 1;
        let max_lines = state.max_lines;
        state
            .rings
            .entry(key)
            .or_default()
            .push(line.clone(), max_lines);
        // No follower is not an error.
        let _ = self.live.send(line);
    }

    /// The lines kept that `filter` selects, oldest first.
    pub(crate) fn lines(&self, filter: &LogFilter) -> Vec<Arc<LogLine>> {
        Self::select(&self.state(), filter)
    }

    /// The lines kept that `filter` selects, and a receiver of every line
    /// kept after them (for the caller to filter the same way).
    pub(crate) fn follow(
        &self,
        filter: &LogFilter,
    ) -> (Vec<Arc<LogLine>>, broadcast::Receiver<Arc<LogLine>>) {
        let state = self.state();
        (Self::select(&state, filter), self.live.subscribe())
    }

    fn select(state: &State, filter: &LogFilter) -> Vec<Arc<LogLine>> {
        let mut lines: Vec<Arc<LogLine>> = state
            .rings
            .values()
            .flat_map(|ring| ring.lines.iter())
            .filter(|line| filter.matches(line))
            .cloned()
            .collect();
        lines.sort_unstable_by_key(|line| line.seq);
        if let Some(tail) = filter.tail {
            lines.drain(..lines.len().saturating_sub(tail));
        }
        lines
    }
}

/// A line on its way into a ring.
struct Entry {
    time: SystemTime,
    version: String,
    hook: Option<String>,
    stream: LogStream,
    text: String,
    dropped: u64,
}

/// `text` cut to [`MAX_LINE_BYTES`] at a character boundary, with the
/// marker the host puts on the lines it cuts.
fn truncate(mut text: String) -> String {
    if text.len() <= MAX_LINE_BYTES {
        return text;
    }
    let mut end = MAX_LINE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!(" [truncated {cut} bytes]"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(version: &str, stream: OutputStream, text: &str) -> OutputLine {
        OutputLine {
            version: Arc::from(version),
            stream,
            text: text.to_owned(),
            time: SystemTime::UNIX_EPOCH,
            dropped: 0,
        }
    }

    fn texts(lines: &[Arc<LogLine>]) -> Vec<&str> {
        lines.iter().map(|line| line.text.as_str()).collect()
    }

    fn all() -> LogFilter {
        LogFilter::default()
    }

    #[test]
    fn lines_are_kept_in_order_across_versions_and_hooks() {
        let logs = RuntimeLogs::new(10);
        logs.push_output([output("1", OutputStream::Stdout, "a")]);
        logs.push_hook("install", "1", LogStream::Stderr, "b".into());
        logs.push_output([
            output("2", OutputStream::Stderr, "c"),
            output("1", OutputStream::Stdout, "d"),
        ]);
        let lines = logs.lines(&all());
        assert_eq!(texts(&lines), ["a", "b", "c", "d"]);
        let seqs: Vec<u64> = lines.iter().map(|line| line.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
        assert_eq!(lines[0].time, "1970-01-01T00:00:00.000Z");
        assert_eq!(
            (lines[1].source, lines[1].hook.as_deref(), lines[1].stream),
            (LogSource::Hook, Some("install"), LogStream::Stderr)
        );
        assert_eq!(
            (lines[2].source, lines[2].hook.as_deref()),
            (LogSource::Runtime, None)
        );

        let version_1 = LogFilter {
            version: Some("1".into()),
            tail: None,
        };
        assert_eq!(texts(&logs.lines(&version_1)), ["a", "b", "d"]);
        let last_2 = LogFilter {
            version: None,
            tail: Some(2),
        };
        assert_eq!(texts(&logs.lines(&last_2)), ["c", "d"]);
        let none = LogFilter {
            version: None,
            tail: Some(0),
        };
        assert!(logs.lines(&none).is_empty());
    }

    #[test]
    fn each_ring_keeps_its_latest_lines_by_count() {
        let logs = RuntimeLogs::new(3);
        for i in 0..10 {
            logs.push_output([output("1", OutputStream::Stdout, &format!("1.{i}"))]);
        }
        logs.push_output([output("2", OutputStream::Stdout, "2.0")]);
        for i in 0..5 {
            logs.push_hook("start", "1", LogStream::Stdout, format!("h{i}"));
        }
        // A chatty version pushes out its own lines, not the others'.
        assert_eq!(
            texts(&logs.lines(&all())),
            ["1.7", "1.8", "1.9", "2.0", "h2", "h3", "h4"]
        );
    }

    #[test]
    fn each_ring_keeps_at_most_a_kibibyte_per_line_of_text() {
        let logs = RuntimeLogs::new(4);
        let big = "x".repeat(1500);
        for _ in 0..4 {
            logs.push_output([output("1", OutputStream::Stdout, &big)]);
        }
        // 4 KiB: two lines of 1500 bytes fit, three do not.
        assert_eq!(logs.lines(&all()).len(), 2);
        // One line over the budget alone is still kept (the newest is).
        logs.push_hook("install", "1", LogStream::Stdout, "y".repeat(10_000));
        let hooks: Vec<_> = logs
            .lines(&all())
            .into_iter()
            .filter(|line| line.source == LogSource::Hook)
            .collect();
        assert_eq!(hooks.len(), 1);
    }

    #[test]
    fn long_hook_lines_are_cut_with_the_hosts_marker() {
        let logs = RuntimeLogs::new(4);
        let text = format!("{}é{}", "a".repeat(MAX_LINE_BYTES - 1), "b".repeat(99));
        logs.push_hook("install", "1", LogStream::Stdout, text);
        let kept = &logs.lines(&all())[0].text;
        // The cut falls inside "é" (2 bytes), so it goes before it.
        assert_eq!(
            *kept,
            format!("{} [truncated 101 bytes]", "a".repeat(MAX_LINE_BYTES - 1))
        );
    }

    #[test]
    fn zero_keeps_nothing_and_a_new_bound_applies_at_once() {
        let logs = RuntimeLogs::new(0);
        assert!(!logs.keeps_lines());
        logs.push_output([output("1", OutputStream::Stdout, "lost")]);
        assert!(logs.lines(&all()).is_empty());

        logs.configure(5, &["1".into(), "2".into()]);
        for i in 0..5 {
            logs.push_output([
                output("1", OutputStream::Stdout, &format!("1.{i}")),
                output("2", OutputStream::Stdout, &format!("2.{i}")),
            ]);
        }
        logs.configure(2, &["1".into()]);
        // Lower bound: the oldest go; version 2 left the config: its lines go.
        assert_eq!(texts(&logs.lines(&all())), ["1.3", "1.4"]);
        logs.configure(0, &["1".into()]);
        assert!(logs.lines(&all()).is_empty());
    }

    #[test]
    fn a_follower_gets_the_tail_then_every_later_line_once() {
        let logs = RuntimeLogs::new(10);
        logs.push_output([output("1", OutputStream::Stdout, "old")]);
        let (tail, mut live) = logs.follow(&all());
        assert_eq!(texts(&tail), ["old"]);
        logs.push_hook("start", "1", LogStream::Stdout, "new".into());
        assert_eq!(live.try_recv().unwrap().text, "new");
        assert!(live.try_recv().is_err());
    }

    #[test]
    fn a_follower_that_falls_behind_never_holds_writers_up_and_is_told_what_it_lost() {
        let logs = RuntimeLogs::new(10);
        let (_, mut live) = logs.follow(&all());
        // Nobody reads `live` while more lines come than it may queue.
        for i in 0..FOLLOW_BUFFER + 5 {
            logs.push_output([output("1", OutputStream::Stdout, &i.to_string())]);
        }
        assert_eq!(
            live.try_recv().unwrap_err(),
            broadcast::error::TryRecvError::Lagged(5)
        );
        assert_eq!(live.try_recv().unwrap().text, "5");
        // The ring still has the newest lines.
        let last = logs.lines(&LogFilter {
            version: None,
            tail: Some(1),
        });
        assert_eq!(texts(&last), [(FOLLOW_BUFFER + 4).to_string()]);
    }

    #[test]
    fn a_line_with_lost_lines_before_it_says_so() {
        let logs = RuntimeLogs::new(10);
        let mut line = output("1", OutputStream::Stderr, "after");
        line.dropped = 7;
        logs.push_output([line]);
        let line = (*logs.lines(&all())[0]).clone();
        assert_eq!(
            line.to_line(),
            "1970-01-01T00:00:00.000Z  1          stderr  after  (7 lines lost before this one)"
        );
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(json["dropped"], 7);
        assert_eq!(json["source"], "runtime");
        assert!(json.get("hook").is_none());
    }
}
