//! The agent's configuration file: which runtimes it hosts, their versions
//! and how to start each version's process.
//!
//! This module owns the TOML format (the [`Config`] model and its
//! defaults), parsing with `file:line:column` positions for every problem,
//! validation, resolution of each version's `command` to an absolute
//! executable path ([`CommandResolver`]) and the built-in demo config
//! ([`DEMO_TOML`], [`demo`]).
//!
//! It must never start a process, touch the store or the network: it reads
//! one file (or the demo text) and looks at the filesystem to resolve
//! commands, so `steward config check` can run it anywhere without side
//! effects.
//!
//! # Format
//!
//! ```toml
//! [[runtime]]
//! id = "echo"                       # [A-Za-z0-9._-]{1,64}
//! active = "1.0.0"                  # started while the store holds no desired version
//! transition = "make-before-break"  # or "stop-then-start" (default make-before-break)
//! call-timeout = "30s"              # default 30s
//! [runtime.restart]                 # optional
//! initial = "500ms"                 # default 500ms
//! max = "30s"                       # default 30s, >= initial
//!
//! [[runtime.version]]
//! version = "1.0.0"
//! command = "steward"               # bare name, or a path containing '/'
//! args = ["example-runtime", "echo", "--version", "1.0.0"]
//! env = { RUST_LOG = "info" }       # the only environment the process gets
//! ```
//!
//! Unknown keys are errors, so a typo never silently falls back to a
//! default.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use steward_host::TransitionMode;
use steward_protocol::HOST_SOCKET_ENV;
use toml::Spanned;

/// The longest runtime id accepted, in characters.
pub const MAX_ID_LEN: usize = 64;

/// The default deadline of one call made through the agent.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The name [`demo`] gives the built-in config in error messages.
pub const DEMO_ORIGIN: &str = "<built-in demo config>";

/// The built-in demo config, printed by `steward config demo` and hosted by
/// `steward run` when no config is given.
///
/// Its commands are the bare name `steward`, which [`CommandResolver`]
/// finds next to the running `steward` binary first, so the demo works from
/// any directory without installing anything else.
pub const DEMO_TOML: &str = r#"# Steward agent configuration: the built-in demo.
#
# `steward config demo` prints this file; copy it as a starting point and
# validate your copy with `steward config check`. Unknown keys are errors.
# Durations are written like "500ms", "30s" or "2m".

# Each [[runtime]] table is one runtime the agent hosts, in this order.
[[runtime]]
# The runtime's name: 1 to 64 of A-Z a-z 0-9 . _ -
# (it appears in URLs and metric labels).
id = "echo"
# The version started while the agent's store holds no desired version
# yet; afterwards `steward set-version` decides.
active = "1.0.0"
# How a version switch happens: "make-before-break" starts the new version
# and moves calls over before stopping the old one (no call fails);
# "stop-then-start" never runs two versions at once.
transition = "make-before-break"
# The deadline of one call made through the agent.
call-timeout = "30s"

# How long to wait before restarting a crashed runtime process: from
# `initial`, doubling up to `max`. This table is optional.
[runtime.restart]
initial = "500ms"
max = "30s"

# Each [[runtime.version]] table is one version the runtime can switch to.
[[runtime.version]]
version = "1.0.0"
# A bare name is looked up next to the steward binary, then on PATH; a path
# containing '/' is taken as is, relative to this file's directory.
# "steward" is this agent's own binary, whose hidden `example-runtime`
# subcommand runs the example runtimes.
command = "steward"
# The process must report this same version to the host when it starts.
args = ["example-runtime", "echo", "--version", "1.0.0"]
# The process's whole environment (nothing is inherited).
env = { RUST_LOG = "info" }

[[runtime.version]]
version = "2.0.0"
command = "steward"
args = ["example-runtime", "echo", "--version", "2.0.0"]
env = { RUST_LOG = "info" }

# A key-value store. Its versions share the host's storage, so running two
# of them at once during a make-before-break switch is safe.
[[runtime]]
id = "kv"
active = "1.0.0"

[[runtime.version]]
version = "1.0.0"
command = "steward"
args = ["example-runtime", "kv", "--version", "1.0.0"]

[[runtime.version]]
version = "1.1.0"
command = "steward"
args = ["example-runtime", "kv", "--version", "1.1.0"]
"#;

/// A validated agent configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// The hosted runtimes, in file order; may be empty (an agent serving
    /// nothing yet).
    pub runtimes: Vec<RuntimeConfig>,
}

impl Config {
    /// The runtime called `id`.
    pub fn runtime(&self, id: &str) -> Option<&RuntimeConfig> {
        self.runtimes.iter().find(|r| r.id == id)
    }
}

/// One hosted runtime: an id and the versions it can switch between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The runtime's id: 1 to [`MAX_ID_LEN`] of `A-Z a-z 0-9 . _ -`.
    pub id: String,
    /// The version started while the store holds no desired version; always
    /// one of [`versions`](Self::versions).
    pub active: String,
    /// How a version switch replaces the active version.
    pub transition: TransitionMode,
    /// The deadline of one call made through the agent.
    pub call_timeout: Duration,
    /// The restart backoff of a crashed runtime process.
    pub restart: RestartConfig,
    /// The versions, in file order; at least one, with unique names.
    pub versions: Vec<VersionConfig>,
}

impl RuntimeConfig {
    /// The version called `v`.
    pub fn version(&self, v: &str) -> Option<&VersionConfig> {
        self.versions.iter().find(|c| c.version == v)
    }

    /// The names of the versions, in file order.
    pub fn version_names(&self) -> Vec<String> {
        self.versions.iter().map(|v| v.version.clone()).collect()
    }
}

/// The restart backoff of a crashed runtime process: the first delay, then
/// doubling up to the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartConfig {
    /// The first delay; greater than zero.
    pub initial: Duration,
    /// The longest delay; at least `initial`.
    pub max: Duration,
}

impl Default for RestartConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

/// How to start one version of a runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionConfig {
    /// The version's name; non-empty, without whitespace or control
    /// characters, unique within its runtime.
    pub version: String,
    /// The program, resolved to an absolute path of an executable file.
    pub command: PathBuf,
    /// Its arguments (without the program name).
    pub args: Vec<String>,
    /// Its whole environment; the host adds only its own socket variable.
    pub env: BTreeMap<String, String>,
}

/// Where bare command names (without a `/`) are looked up: next to the
/// `steward` binary first, then on a `PATH`-style list of directories.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandResolver {
    /// The directory searched first; [`from_env`](Self::from_env) uses the
    /// running binary's directory.
    pub exe_dir: Option<PathBuf>,
    /// A `PATH`-style list of directories searched next.
    pub path: Option<OsString>,
}

impl CommandResolver {
    /// The directory of the running executable and the process's `$PATH`.
    pub fn from_env() -> Self {
        Self {
            exe_dir: std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf)),
            path: std::env::var_os("PATH"),
        }
    }

    /// Resolves `command` to the absolute path of an executable file.
    ///
    /// A command containing `/` is a path: absolute as is, relative to
    /// `base_dir` (the config file's directory). A bare name is looked up
    /// in [`exe_dir`](Self::exe_dir), then in each [`path`](Self::path)
    /// entry. The error is a one-line message for the operator.
    pub fn resolve(&self, command: &str, base_dir: &Path) -> Result<PathBuf, String> {
        if command.is_empty() {
            return Err("command is empty; give a program name or a path".to_owned());
        }
        if command.contains('\0') {
            return Err(format!(
                "command {command:?} contains a NUL character, which no file name can hold"
            ));
        }
        if command.contains('/') {
            return resolve_path(command, base_dir);
        }
        if let Some(dir) = &self.exe_dir
            && let Some(found) = executable_in(dir, command)
        {
            return Ok(found);
        }
        if let Some(path) = &self.path {
            // An empty PATH entry traditionally means the current directory;
            // skipping it keeps what runs from depending on where the agent
            // happened to be started.
            for dir in std::env::split_paths(path).filter(|d| !d.as_os_str().is_empty()) {
                if let Some(found) = executable_in(&dir, command) {
                    return Ok(found);
                }
            }
        }
        Err(match (&self.exe_dir, &self.path) {
            (Some(dir), Some(_)) => format!(
                "command {command:?} not found next to the steward binary ({}) or on PATH",
                dir.display()
            ),
            (Some(dir), None) => format!(
                "command {command:?} not found next to the steward binary ({}); PATH is not set, give its path instead",
                dir.display()
            ),
            (None, Some(_)) => format!("command {command:?} not found on PATH"),
            (None, None) => format!(
                "command {command:?} cannot be looked up (no steward binary directory and no PATH); give its path instead"
            ),
        })
    }
}

/// Resolves a command that is a path (contains `/`).
fn resolve_path(command: &str, base_dir: &Path) -> Result<PathBuf, String> {
    let given = Path::new(command);
    let relative = !given.is_absolute();
    let joined = if relative {
        base_dir.join(given)
    } else {
        given.to_path_buf()
    };
    let full = absolute(&joined).map_err(|e| {
        format!(
            "command {command:?}: cannot make {} absolute: {e}",
            joined.display()
        )
    })?;
    match std::fs::metadata(&full) {
        Ok(meta) if meta.is_dir() => Err(format!(
            "command {command:?}: {} is a directory, not a program",
            full.display()
        )),
        Ok(meta) if !is_executable(&meta) => Err(format!(
            "command {command:?}: {} is not executable; make it executable (chmod +x) or fix the path",
            full.display()
        )),
        Ok(_) => Ok(full),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(if relative {
            format!(
                "command {command:?} not found: {} does not exist (relative commands are resolved against the config file's directory)",
                full.display()
            )
        } else {
            format!(
                "command {command:?} not found: {} does not exist",
                full.display()
            )
        }),
        Err(e) => Err(format!(
            "command {command:?}: cannot inspect {}: {e}",
            full.display()
        )),
    }
}

/// `dir/name` as an absolute path, if it is an executable file.
fn executable_in(dir: &Path, name: &str) -> Option<PathBuf> {
    let candidate = dir.join(name);
    let meta = std::fs::metadata(&candidate).ok()?;
    if meta.is_file() && is_executable(&meta) {
        absolute(&candidate).ok()
    } else {
        None
    }
}

/// `path` made absolute without touching the filesystem; an empty path is
/// the current directory (which `std::path::absolute` refuses).
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    if path.as_os_str().is_empty() {
        std::env::current_dir()
    } else {
        std::path::absolute(path)
    }
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    meta.is_file()
}

/// One problem in a config file, at a 1-based line and column (columns
/// count characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct ConfigError {
    /// The file as given (or [`DEMO_ORIGIN`]).
    pub file: PathBuf,
    /// The 1-based line.
    pub line: usize,
    /// The 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what to do, in one lowercase line.
    pub message: String,
}

/// Every problem found in a config file, in file order; never empty.
/// Displayed one error per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

fn display_lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads the file at `path` and [`parse`]s it.
///
/// A file that cannot be read is one error at line 1, column 1.
pub fn load(path: &Path, resolver: &CommandResolver) -> Result<Config, ConfigErrors> {
    let at = |line, column, message| ConfigError {
        file: path.to_path_buf(),
        line,
        column,
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| at(1, 1, format!("cannot read: {e}")))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            // Point at the offending byte: a stray Latin-1 character in a
            // comment is much easier to find that way.
            let valid = e.utf8_error().valid_up_to();
            let prefix = std::str::from_utf8(&e.as_bytes()[..valid]).unwrap_or_default();
            let (line, column) = LineIndex::new(prefix).position(valid);
            return Err(at(
                line,
                column,
                "file is not valid UTF-8; save it as UTF-8".to_owned(),
            )
            .into());
        }
    };
    parse(&text, path, resolver)
}

/// The built-in demo config ([`DEMO_TOML`]), parsed; its relative paths
/// (it has none) would be resolved against the current directory.
pub fn demo(resolver: &CommandResolver) -> Result<Config, ConfigErrors> {
    parse(DEMO_TOML, Path::new(DEMO_ORIGIN), resolver)
}

/// Parses and validates `text`.
///
/// `origin` names the file in messages, and its parent directory (the
/// current directory when it has none) is the base of relative commands.
/// Syntax and type errors stop at the first one (the TOML parser cannot go
/// on); otherwise every validation problem is reported, in file order.
pub fn parse(
    text: &str,
    origin: &Path,
    resolver: &CommandResolver,
) -> Result<Config, ConfigErrors> {
    let lines = LineIndex::new(text);
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |span| lines.position(span.start));
        ConfigError {
            file: origin.to_path_buf(),
            line,
            column,
            message: toml_message(text, &e),
        }
    })?;
    let base_dir = match origin.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut check = Checker {
        file: origin,
        lines,
        resolver,
        base_dir,
        errors: Vec::new(),
        ids: HashMap::new(),
    };
    let runtimes: Vec<_> = raw
        .runtime
        .items
        .into_iter()
        .enumerate()
        .filter_map(|(i, rt)| check.runtime(i + 1, rt))
        .collect();
    if check.errors.is_empty() {
        Ok(Config { runtimes })
    } else {
        // Checks run per field, not per byte; a stable sort by position
        // gives file order while keeping problems found at the same place
        // in the order they were checked.
        check.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(check.errors))
    }
}

/// Names as an unquoted, comma-separated list, escaped so a control
/// character cannot garble the terminal.
fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| n.escape_debug().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parser's message for `error`, on one line, naming the key of a
/// duplicate key (the parser's message alone does not say which).
fn toml_message(text: &str, error: &toml::de::Error) -> String {
    let message = one_line(error.message());
    match error.span().and_then(|span| text.get(span)) {
        Some(key) if message == "duplicate key" && !key.contains('\n') => {
            format!("duplicate key `{key}`; a key may appear only once in a table")
        }
        _ => message,
    }
}

/// TOML's messages are meant to stand alone, but ours are one line each.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Converts byte offsets into 1-based lines and character columns.
struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        // Spans at or past the end (an unexpected end of file) and spans
        // inside a multi-byte character still get a real position.
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }
}

// --- The file as written -------------------------------------------------
//
// Every field is optional and every string is spanned so that validation,
// not serde, reports missing and wrong values: serde stops at the first
// problem, and validation must report all of them at their positions.

/// What a wrongly typed value should have been, for serde's "invalid type:
/// …, expected …" message (the default "a string" or "struct RawRuntime"
/// would not tell the user what to write).
trait Expected {
    const WHAT: &'static str;
}

macro_rules! expected {
    ($($name:ident => $what:literal;)*) => {$(
        enum $name {}
        impl Expected for $name {
            const WHAT: &'static str = $what;
        }
    )*};
}

expected! {
    IdText => r#"a runtime id string such as "echo""#;
    VersionText => r#"a version string such as "1.0.0""#;
    TransitionText => r#""make-before-break" or "stop-then-start""#;
    DurationText => r#"a duration string such as "30s" or "500ms""#;
    CommandText => r#"a command string such as "steward" or "./bin/my-runtime""#;
    ArgText => r#"a string (quote numbers, e.g. "8080")"#;
    EnvValueText => r#"a string (quote numbers and booleans, e.g. "8080")"#;
    RuntimeList => "[[runtime]] tables (with double brackets)";
    VersionList => "[[runtime.version]] tables (with double brackets)";
    ArgList => r#"an array of strings such as ["--port", "8080"]"#;
}

/// A string whose type error says what `E` expects.
struct Text<E>(String, PhantomData<E>);

impl<'de, E: Expected> Deserialize<'de> for Text<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<E>(PhantomData<E>);

        impl<E: Expected> Visitor<'_> for TextVisitor<E> {
            type Value = String;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(E::WHAT)
            }

            fn visit_str<Err: de::Error>(self, v: &str) -> Result<String, Err> {
                Ok(v.to_owned())
            }

            fn visit_string<Err: de::Error>(self, v: String) -> Result<String, Err> {
                Ok(v)
            }
        }

        deserializer
            .deserialize_str(TextVisitor::<E>(PhantomData))
            .map(|s| Text(s, PhantomData))
    }
}

/// An array of spanned `T` whose type error says what `E` expects (e.g.
/// `[runtime]` written for `[[runtime]]`).
struct List<T, E> {
    items: Vec<Spanned<T>>,
    kind: PhantomData<E>,
}

impl<T, E> Default for List<T, E> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            kind: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>, E: Expected> Deserialize<'de> for List<T, E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T, E>(PhantomData<(T, E)>);

        impl<'de, T: Deserialize<'de>, E: Expected> Visitor<'de> for ListVisitor<T, E> {
            type Value = Vec<Spanned<T>>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(E::WHAT)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(items)
            }
        }

        deserializer
            .deserialize_seq(ListVisitor::<T, E>(PhantomData))
            .map(|items| List {
                items,
                kind: PhantomData,
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    runtime: List<RawRuntime, RuntimeList>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[serde(expecting = "a [[runtime]] table")]
struct RawRuntime {
    id: Option<Spanned<Text<IdText>>>,
    active: Option<Spanned<Text<VersionText>>>,
    transition: Option<Spanned<Text<TransitionText>>>,
    call_timeout: Option<Spanned<Text<DurationText>>>,
    restart: Option<Spanned<RawRestart>>,
    #[serde(default)]
    version: List<RawVersion, VersionList>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a [runtime.restart] table with initial and max durations")]
struct RawRestart {
    initial: Option<Spanned<Text<DurationText>>>,
    max: Option<Spanned<Text<DurationText>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a [[runtime.version]] table")]
struct RawVersion {
    version: Option<Spanned<Text<VersionText>>>,
    command: Option<Spanned<Text<CommandText>>>,
    #[serde(default)]
    args: List<Text<ArgText>, ArgList>,
    #[serde(default)]
    env: Env,
}

/// The `env` table, with each name and value spanned.
#[derive(Default)]
struct Env(BTreeMap<Spanned<String>, Spanned<Text<EnvValueText>>>);

impl<'de> Deserialize<'de> for Env {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvVisitor;

        impl<'de> Visitor<'de> for EnvVisitor {
            type Value = Env;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a table of strings such as { RUST_LOG = "info" }"#)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Env, A::Error> {
                let mut env = BTreeMap::new();
                while let Some((name, value)) = map.next_entry()? {
                    env.insert(name, value);
                }
                Ok(Env(env))
            }
        }

        deserializer.deserialize_map(EnvVisitor)
    }
}

// --- Validation ----------------------------------------------------------

const MAKE_BEFORE_BREAK: &str = "make-before-break";
const STOP_THEN_START: &str = "stop-then-start";

/// Validates the raw file into a [`Config`], collecting every problem.
struct Checker<'a> {
    file: &'a Path,
    lines: LineIndex<'a>,
    resolver: &'a CommandResolver,
    base_dir: &'a Path,
    errors: Vec<ConfigError>,
    /// Runtime ids seen so far, with the line of the first use.
    ids: HashMap<String, usize>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, message: String) {
        let (line, column) = self.lines.position(span.start);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
        });
    }

    /// Checks the `number`th runtime (1-based); `None` when it has a
    /// problem (already recorded).
    fn runtime(&mut self, number: usize, raw: Spanned<RawRuntime>) -> Option<RuntimeConfig> {
        let table = raw.span();
        let raw = raw.into_inner();
        let errors_before = self.errors.len();

        let id = match raw.id {
            Some(id) => {
                let span = id.span();
                let id = id.into_inner().0;
                self.check_id(&id, span);
                Some(id)
            }
            None => {
                self.error(
                    table.clone(),
                    format!(
                        r#"runtime #{number} has no id; add id = "..." (1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ -)"#
                    ),
                );
                None
            }
        };
        let who = match &id {
            Some(id) => format!("runtime {id:?}"),
            None => format!("runtime #{number}"),
        };

        let transition = match raw.transition {
            None => TransitionMode::default(),
            Some(t) => match t.get_ref().0.as_str() {
                MAKE_BEFORE_BREAK => TransitionMode::MakeBeforeBreak,
                STOP_THEN_START => TransitionMode::StopThenStart,
                other => {
                    let message = format!(
                        "{who}: unknown transition {other:?}; use {MAKE_BEFORE_BREAK:?} or {STOP_THEN_START:?}"
                    );
                    self.error(t.span(), message);
                    TransitionMode::default()
                }
            },
        };

        let call_timeout = self.duration(&who, "call-timeout", raw.call_timeout.as_ref());
        let restart = self.restart(&who, raw.restart);

        if raw.version.items.is_empty() {
            self.error(
                table.clone(),
                format!(
                    r#"{who} has no versions; add a [[runtime.version]] table with version = "..." and command = "...""#
                ),
            );
        }
        // Every name given, valid or not, so a bad version string is not
        // reported a second time as an unknown `active`.
        let mut names: Vec<String> = Vec::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        let mut versions = Vec::new();
        for (i, v) in raw.version.items.into_iter().enumerate() {
            if let Some(name) = v.get_ref().version.as_ref() {
                names.push(name.get_ref().0.clone());
            }
            if let Some(v) = self.version(&who, i + 1, v, &mut first_line) {
                versions.push(v);
            }
        }

        let active = match raw.active {
            Some(active) => {
                let name = &active.get_ref().0;
                if !names.is_empty() && !names.contains(name) {
                    let message = format!(
                        "{who}: active version {name:?} is not one of its versions ({})",
                        list(&names)
                    );
                    self.error(active.span(), message);
                }
                active.into_inner().0
            }
            None => {
                let hint = if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", list(&names))
                };
                self.error(
                    table,
                    format!(
                        r#"{who} has no active version; add active = "..." naming the version to start first{hint}"#
                    ),
                );
                String::new()
            }
        };

        if self.errors.len() > errors_before {
            return None;
        }
        Some(RuntimeConfig {
            id: id.unwrap_or_default(),
            active,
            transition,
            call_timeout: call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT),
            restart,
            versions,
        })
    }

    fn check_id(&mut self, id: &str, span: Range<usize>) {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let problem = if id.is_empty() {
            Some(format!(
                "runtime id is empty; use 1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ -"
            ))
        } else if let Some(c) = id.chars().find(|&c| !allowed(c)) {
            Some(format!(
                "runtime id {id:?} contains {c:?}; use only A-Z a-z 0-9 . _ - (ids appear in URLs and metric labels)"
            ))
        } else if id.len() > MAX_ID_LEN {
            Some(format!(
                "runtime id {id:?} is {} characters long; shorten it to at most {MAX_ID_LEN}",
                id.len()
            ))
        } else if id == "." || id == ".." {
            // They pass the character rule but mean "this/parent directory"
            // as a URL path segment, so the runtime could not be addressed.
            Some(format!(
                "runtime id {id:?} is not allowed (it is a special URL path segment); choose a name"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            self.error(span, problem);
            return;
        }
        let line = self.lines.position(span.start).0;
        match self.ids.get(id) {
            Some(first) => {
                let message = format!(
                    "runtime id {id:?} is already used on line {first}; give each runtime its own id"
                );
                self.error(span, message);
            }
            None => {
                self.ids.insert(id.to_owned(), line);
            }
        }
    }

    /// A duration setting of `who`; `None` when absent or invalid (the
    /// problem is recorded).
    fn duration(
        &mut self,
        who: &str,
        name: &str,
        raw: Option<&Spanned<Text<DurationText>>>,
    ) -> Option<Duration> {
        let raw = raw?;
        let text = &raw.get_ref().0;
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.error(
                    raw.span(),
                    format!("{who}: {name} {text:?} must be greater than zero"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    raw.span(),
                    format!(
                        r#"{who}: {name} {text:?} is not a duration ({e}); write it like "30s" or "500ms""#
                    ),
                );
                None
            }
        }
    }

    fn restart(&mut self, who: &str, raw: Option<Spanned<RawRestart>>) -> RestartConfig {
        let defaults = RestartConfig::default();
        let Some(raw) = raw else {
            return defaults;
        };
        let raw = raw.into_inner();
        let initial = self.duration(who, "restart.initial", raw.initial.as_ref());
        let max = self.duration(who, "restart.max", raw.max.as_ref());
        // Compare only values that are valid (or defaulted because absent),
        // so one bad duration is not reported twice.
        let initial_ok = raw.initial.is_none() || initial.is_some();
        let max_ok = raw.max.is_none() || max.is_some();
        let config = RestartConfig {
            initial: initial.unwrap_or(defaults.initial),
            max: max.unwrap_or(defaults.max),
        };
        if initial_ok && max_ok && config.max < config.initial {
            let shown = |d| humantime::format_duration(d);
            // Point at what the user wrote: max if given, else initial
            // (which then exceeds the default max).
            match (&raw.max, &raw.initial) {
                (Some(max), _) => self.error(
                    max.span(),
                    format!(
                        "{who}: restart.max ({}) is less than restart.initial ({}); raise max or lower initial",
                        shown(config.max),
                        shown(config.initial)
                    ),
                ),
                (None, Some(initial)) => self.error(
                    initial.span(),
                    format!(
                        "{who}: restart.initial ({}) is more than the default restart.max ({}); lower initial or set max",
                        shown(config.initial),
                        shown(config.max)
                    ),
                ),
                (None, None) => {}
            }
        }
        config
    }

    /// Checks the `number`th version (1-based) of `who`; `first_line` maps
    /// the version names seen so far to their lines.
    fn version(
        &mut self,
        who: &str,
        number: usize,
        raw: Spanned<RawVersion>,
        first_line: &mut HashMap<String, usize>,
    ) -> Option<VersionConfig> {
        let table = raw.span();
        let raw = raw.into_inner();
        let errors_before = self.errors.len();

        let name = match raw.version {
            Some(name) => {
                let span = name.span();
                let name = name.into_inner().0;
                self.check_version_name(who, &name, span.clone());
                let line = self.lines.position(span.start).0;
                if let Some(first) = first_line.get(&name) {
                    let message = format!(
                        "{who}: version {name:?} is already defined on line {first}; give each version its own name"
                    );
                    self.error(span, message);
                } else {
                    first_line.insert(name.clone(), line);
                }
                Some(name)
            }
            None => {
                self.error(
                    table.clone(),
                    format!(
                        r#"{who}: [[runtime.version]] #{number} has no version; add version = "...""#
                    ),
                );
                None
            }
        };
        let what = match &name {
            Some(name) => format!("{who} version {name:?}"),
            None => format!("{who} version #{number}"),
        };

        let command = match raw.command {
            Some(command) => match self.resolver.resolve(&command.get_ref().0, self.base_dir) {
                Ok(path) => Some(path),
                Err(problem) => {
                    self.error(command.span(), format!("{what}: {problem}"));
                    None
                }
            },
            None => {
                self.error(
                    table,
                    format!(r#"{what} has no command; add command = "...""#),
                );
                None
            }
        };

        let mut args = Vec::with_capacity(raw.args.items.len());
        for (i, arg) in raw.args.items.into_iter().enumerate() {
            if arg.get_ref().0.contains('\0') {
                self.error(
                    arg.span(),
                    format!(
                        "{what}: argument {} contains a NUL character, which a command line cannot carry; remove it",
                        i + 1
                    ),
                );
            }
            args.push(arg.into_inner().0);
        }

        let mut env = BTreeMap::new();
        // A BTreeMap iterates by name; the final sort puts the errors back
        // into file order.
        for (key, value) in raw.env.0 {
            let name = key.get_ref();
            let problem = if name.is_empty() {
                Some("environment variable name is empty; remove it or name it".to_owned())
            } else if name.contains('=') {
                Some(format!(
                    "environment variable name {name:?} contains '=', which names cannot hold; remove it"
                ))
            } else if name.contains('\0') {
                Some(format!(
                    "environment variable name {name:?} contains a NUL character; remove it"
                ))
            } else if name == HOST_SOCKET_ENV {
                // The host sets it for each process to its own socket; a
                // configured value would be overwritten, so reject it
                // rather than silently ignore it.
                Some(format!(
                    "environment variable {name} is set by the host for each process; remove it"
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                self.error(key.span(), format!("{what}: {problem}"));
            }
            if value.get_ref().0.contains('\0') {
                self.error(
                    value.span(),
                    format!(
                        "{what}: environment variable {name:?} contains a NUL character, which an environment cannot carry; remove it"
                    ),
                );
            }
            env.insert(key.into_inner(), value.into_inner().0);
        }

        if self.errors.len() > errors_before {
            return None;
        }
        Some(VersionConfig {
            version: name.unwrap_or_default(),
            command: command.unwrap_or_default(),
            args,
            env,
        })
    }

    fn check_version_name(&mut self, who: &str, name: &str, span: Range<usize>) {
        let problem = if name.is_empty() {
            Some(r#"version is empty; give it a name such as "1.0.0""#.to_owned())
        } else if name.chars().any(char::is_whitespace) {
            Some(format!(
                r#"version {name:?} contains whitespace; use a single word such as "1.0.0-beta""#
            ))
        } else if name.chars().any(char::is_control) {
            Some(format!(
                "version {name:?} contains a control character; remove it"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            self.error(span, format!("{who}: {problem}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temp dir holding an executable `steward`, and a resolver that
    /// finds it there (and searches no PATH).
    struct Fixture {
        dir: tempfile::TempDir,
        resolver: CommandResolver,
    }

    fn executable(path: &Path) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        executable(&dir.path().join("steward"));
        let resolver = CommandResolver {
            exe_dir: Some(dir.path().to_path_buf()),
            path: None,
        };
        Fixture { dir, resolver }
    }

    impl Fixture {
        fn steward(&self) -> PathBuf {
            self.dir.path().join("steward")
        }

        fn parse(&self, text: &str) -> Result<Config, ConfigErrors> {
            parse(text, Path::new("/etc/steward/agent.toml"), &self.resolver)
        }

        /// The errors of `text`, as (line, column, message).
        fn errors(&self, text: &str) -> Vec<(usize, usize, String)> {
            let errors = self.parse(text).expect_err("config should be invalid");
            assert!(!errors.0.is_empty());
            errors
                .0
                .into_iter()
                .map(|e| {
                    assert_eq!(e.file, Path::new("/etc/steward/agent.toml"));
                    (e.line, e.column, e.message)
                })
                .collect()
        }

        /// The only error of `text`.
        fn error(&self, text: &str) -> (usize, usize, String) {
            let mut errors = self.errors(text);
            assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
            errors.remove(0)
        }
    }

    const EXAMPLE: &str = r#"# Runtimes hosted by this agent, in order.
[[runtime]]
id = "echo"                       # [A-Za-z0-9._-]+, 1..=64 chars
active = "1.0.0"                  # started when the store holds no desired version yet
transition = "make-before-break"  # or "stop-then-start"
call-timeout = "30s"
[runtime.restart]
initial = "500ms"
max = "30s"

[[runtime.version]]
version = "1.0.0"
command = "steward"
args = ["example-runtime", "echo", "--version", "1.0.0"]
env = { RUST_LOG = "info" }
"#;

    /// A valid runtime with `extra` lines in its table, then one version.
    fn runtime_with(extra: &str) -> String {
        format!(
            "[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\"\n{extra}\n[[runtime.version]]\nversion = \"1.0.0\"\ncommand = \"steward\"\n"
        )
    }

    #[test]
    fn example_parses_to_the_model() {
        let f = fixture();
        let config = f.parse(EXAMPLE).unwrap();
        assert_eq!(
            config,
            Config {
                runtimes: vec![RuntimeConfig {
                    id: "echo".into(),
                    active: "1.0.0".into(),
                    transition: TransitionMode::MakeBeforeBreak,
                    call_timeout: Duration::from_secs(30),
                    restart: RestartConfig {
                        initial: Duration::from_millis(500),
                        max: Duration::from_secs(30),
                    },
                    versions: vec![VersionConfig {
                        version: "1.0.0".into(),
                        command: f.steward(),
                        args: vec![
                            "example-runtime".into(),
                            "echo".into(),
                            "--version".into(),
                            "1.0.0".into()
                        ],
                        env: BTreeMap::from([("RUST_LOG".into(), "info".into())]),
                    }],
                }],
            }
        );
        let echo = config.runtime("echo").unwrap();
        assert!(config.runtime("kv").is_none());
        assert_eq!(echo.version("1.0.0").unwrap().command, f.steward());
        assert!(echo.version("2.0.0").is_none());
        assert_eq!(echo.version_names(), vec!["1.0.0".to_owned()]);
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let f = fixture();
        let config = f.parse(&runtime_with("")).unwrap();
        let rt = &config.runtimes[0];
        assert_eq!(rt.transition, TransitionMode::MakeBeforeBreak);
        assert_eq!(rt.call_timeout, DEFAULT_CALL_TIMEOUT);
        assert_eq!(rt.restart, RestartConfig::default());
        assert_eq!(
            RestartConfig::default(),
            RestartConfig {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(30)
            }
        );
        assert!(rt.versions[0].args.is_empty());
        assert!(rt.versions[0].env.is_empty());

        // A partial restart table keeps the other default.
        let config = f
            .parse(&runtime_with("[runtime.restart]\ninitial = \"2s\""))
            .unwrap();
        assert_eq!(
            config.runtimes[0].restart,
            RestartConfig {
                initial: Duration::from_secs(2),
                max: Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn other_settings_are_read() {
        let f = fixture();
        let config = f
            .parse(&runtime_with(
                "transition = \"stop-then-start\"\ncall-timeout = \"2m\"\n[runtime.restart]\ninitial = \"1s\"\nmax = \"1s\"",
            ))
            .unwrap();
        let rt = &config.runtimes[0];
        assert_eq!(rt.transition, TransitionMode::StopThenStart);
        assert_eq!(rt.call_timeout, Duration::from_secs(120));
        assert_eq!(rt.restart.initial, Duration::from_secs(1));
        assert_eq!(rt.restart.max, Duration::from_secs(1));
    }

    #[test]
    fn empty_config_is_valid() {
        let f = fixture();
        assert_eq!(f.parse("").unwrap(), Config::default());
        assert_eq!(f.parse("# nothing yet\n").unwrap().runtimes, vec![]);
    }

    #[test]
    fn runtimes_keep_file_order() {
        let f = fixture();
        let text = format!(
            "{}{}",
            runtime_with("").replace("echo", "zeta"),
            runtime_with("").replace("echo", "alpha")
        );
        let config = f.parse(&text).unwrap();
        let ids: Vec<_> = config.runtimes.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["zeta", "alpha"]);
    }

    #[test]
    fn demo_parses_and_finds_steward() {
        let f = fixture();
        let config = demo(&f.resolver).unwrap();
        assert_eq!(config.runtimes.len(), 2);
        let echo = config.runtime("echo").unwrap();
        assert_eq!(echo.active, "1.0.0");
        assert_eq!(echo.version_names(), ["1.0.0", "2.0.0"]);
        let kv = config.runtime("kv").unwrap();
        assert_eq!(kv.active, "1.0.0");
        assert_eq!(kv.version_names(), ["1.0.0", "1.1.0"]);
        assert_eq!(kv.transition, TransitionMode::MakeBeforeBreak);
        for rt in &config.runtimes {
            for v in &rt.versions {
                assert_eq!(v.command, f.steward());
                assert_eq!(
                    v.args,
                    [
                        "example-runtime",
                        rt.id.as_str(),
                        "--version",
                        v.version.as_str()
                    ]
                );
            }
        }
    }

    #[test]
    fn demo_without_steward_names_the_demo() {
        let empty = tempfile::tempdir().unwrap();
        let resolver = CommandResolver {
            exe_dir: Some(empty.path().to_path_buf()),
            path: None,
        };
        let errors = demo(&resolver).unwrap_err();
        assert_eq!(errors.0.len(), 4);
        assert!(
            errors.to_string().starts_with("<built-in demo config>:"),
            "{errors}"
        );
    }

    #[test]
    fn syntax_error_position() {
        let f = fixture();
        let (line, column, message) = f.error("[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\n");
        assert_eq!((line, column), (3, 16));
        assert!(message.contains("string"), "{message}");
        assert!(!message.contains('\n'));
    }

    #[test]
    fn duplicate_key_is_named() {
        let f = fixture();
        let (line, column, message) = f.error("[[runtime]]\nid = \"a\"\nid = \"b\"\n");
        assert_eq!((line, column), (3, 1));
        assert_eq!(
            message,
            "duplicate key `id`; a key may appear only once in a table"
        );
    }

    #[test]
    fn unknown_key_positions() {
        let f = fixture();
        let (line, column, message) = f.error(&runtime_with("  call_timeout = \"1s\""));
        assert_eq!((line, column), (4, 3));
        assert!(
            message.starts_with("unknown field `call_timeout`, expected one of"),
            "{message}"
        );
        assert!(message.contains("`call-timeout`"), "{message}");

        let (line, column, message) = f.error("[runtimes]\n");
        assert_eq!((line, column), (1, 2));
        assert!(message.contains("unknown field `runtimes`"), "{message}");

        let text = format!("{}argv = []\n", runtime_with(""));
        let (line, column, _) = f.error(&text);
        assert_eq!((line, column), (8, 1));

        let text = format!("{}[runtime.restart]\nmin = \"1s\"\n", runtime_with(""));
        let (line, column, message) = f.error(&text);
        assert_eq!((line, column), (9, 1));
        assert!(message.contains("unknown field `min`"), "{message}");
    }

    #[test]
    fn type_error_position_and_message() {
        let f = fixture();
        let (line, column, message) = f.error(&runtime_with("call-timeout = 5"));
        assert_eq!((line, column), (4, 16));
        assert_eq!(
            message,
            r#"invalid type: integer `5`, expected a duration string such as "30s" or "500ms""#
        );

        let (_, _, message) = f.error("[[runtime]]\nid = \"a\"\nactive = 1\n");
        assert!(
            message.contains(r#"expected a version string such as "1.0.0""#),
            "{message}"
        );

        // `[runtime]` instead of `[[runtime]]`.
        let (line, column, message) = f.error("[runtime]\nid = \"a\"\n");
        assert_eq!(line, 1, "{message}");
        assert!(column <= 2, "{column}");
        assert!(message.contains("[[runtime]] tables"), "{message}");

        let (_, _, message) = f.error("[[runtime]]\nrestart = \"1s\"\n");
        assert!(message.contains("a [runtime.restart] table"), "{message}");

        let text = format!("{}args = \"--fast\"\n", runtime_with(""));
        let (line, column, message) = f.error(&text);
        assert_eq!((line, column), (8, 8));
        assert!(message.contains("an array of strings"), "{message}");

        let text = format!("{}env = \"PORT=8080\"\n", runtime_with(""));
        let (line, column, message) = f.error(&text);
        assert_eq!((line, column), (8, 7));
        assert!(message.contains("a table of strings"), "{message}");

        let text = format!("{}env = {{ PORT = 8080 }}\n", runtime_with(""));
        let (line, column, message) = f.error(&text);
        assert_eq!((line, column), (8, 16));
        assert!(message.contains("quote numbers"), "{message}");
    }

    #[test]
    fn id_rules() {
        let f = fixture();
        let bad = |id: &str| f.error(&runtime_with("").replace("\"echo\"", &format!("{id:?}")));

        let (line, column, message) = bad("my echo");
        assert_eq!((line, column), (2, 6));
        assert_eq!(
            message,
            "runtime id \"my echo\" contains ' '; use only A-Z a-z 0-9 . _ - (ids appear in URLs and metric labels)"
        );
        assert!(bad("").2.contains("runtime id is empty"));
        assert!(bad("écho").2.contains("contains 'é'"));
        assert!(bad("a/b").2.contains("contains '/'"));
        assert!(bad("..").2.contains("is not allowed"));
        let long = "a".repeat(MAX_ID_LEN + 1);
        assert!(bad(&long).2.contains("is 65 characters long"));
        f.parse(&runtime_with("").replace("echo", &"a".repeat(MAX_ID_LEN)))
            .unwrap();
        f.parse(&runtime_with("").replace("echo", "A-z_0.9"))
            .unwrap();
    }

    #[test]
    fn missing_fields_point_at_their_table() {
        let f = fixture();
        let errors = f.errors(
            "[[runtime]]\ntransition = \"stop-then-start\"\n\n[[runtime]]\nid = \"kv\"\nactive = \"1\"\n[[runtime.version]]\nargs = []\n",
        );
        assert_eq!(
            errors,
            vec![
                (
                    1,
                    1,
                    r#"runtime #1 has no id; add id = "..." (1 to 64 of A-Z a-z 0-9 . _ -)"#.to_owned()
                ),
                (
                    1,
                    1,
                    r#"runtime #1 has no versions; add a [[runtime.version]] table with version = "..." and command = "...""#.to_owned()
                ),
                (
                    1,
                    1,
                    r#"runtime #1 has no active version; add active = "..." naming the version to start first"#.to_owned()
                ),
                (
                    7,
                    1,
                    r#"runtime "kv": [[runtime.version]] #1 has no version; add version = "...""#.to_owned()
                ),
                (
                    7,
                    1,
                    r#"runtime "kv" version #1 has no command; add command = "...""#.to_owned()
                ),
            ]
        );
    }

    #[test]
    fn missing_active_lists_versions() {
        let f = fixture();
        let text = runtime_with("").replace("active = \"1.0.0\"\n", "");
        let (line, column, message) = f.error(&text);
        assert_eq!((line, column), (1, 1));
        assert_eq!(
            message,
            r#"runtime "echo" has no active version; add active = "..." naming the version to start first (1.0.0)"#
        );
    }

    #[test]
    fn active_must_be_a_version() {
        let f = fixture();
        let text = "[[runtime]]\nid = \"echo\"\nactive = \"3.0.0\"\n\
            [[runtime.version]]\nversion = \"1.0.0\"\ncommand = \"steward\"\n\
            [[runtime.version]]\nversion = \"2.0.0\"\ncommand = \"steward\"\n";
        let (line, column, message) = f.error(text);
        assert_eq!((line, column), (3, 10));
        assert_eq!(
            message,
            r#"runtime "echo": active version "3.0.0" is not one of its versions (1.0.0, 2.0.0)"#
        );
    }

    #[test]
    fn transition_must_be_known() {
        let f = fixture();
        let (line, column, message) = f.error(&runtime_with("transition = \"fast\""));
        assert_eq!((line, column), (4, 14));
        assert_eq!(
            message,
            r#"runtime "echo": unknown transition "fast"; use "make-before-break" or "stop-then-start""#
        );
    }

    #[test]
    fn durations_must_parse_and_be_positive() {
        let f = fixture();
        let (line, column, message) = f.error(&runtime_with("call-timeout = \"soon\""));
        assert_eq!((line, column), (4, 16));
        assert!(
            message.starts_with(r#"runtime "echo": call-timeout "soon" is not a duration ("#),
            "{message}"
        );
        assert!(
            message.ends_with(r#"; write it like "30s" or "500ms""#),
            "{message}"
        );

        let (line, column, message) = f.error(&runtime_with("[runtime.restart]\ninitial = \"0s\""));
        assert_eq!((line, column), (5, 11));
        assert_eq!(
            message,
            r#"runtime "echo": restart.initial "0s" must be greater than zero"#
        );

        let (_, _, message) = f.error(&runtime_with("call-timeout = \"0ms\""));
        assert!(message.contains("call-timeout \"0ms\" must be greater than zero"));
    }

    #[test]
    fn restart_max_must_cover_initial() {
        let f = fixture();
        let (line, column, message) = f.error(&runtime_with(
            "[runtime.restart]\ninitial = \"5s\"\nmax = \"1s\"",
        ));
        assert_eq!((line, column), (6, 7));
        assert_eq!(
            message,
            r#"runtime "echo": restart.max (1s) is less than restart.initial (5s); raise max or lower initial"#
        );

        // Against the default max, the error points at initial.
        let (line, column, message) = f.error(&runtime_with("[runtime.restart]\ninitial = \"1m\""));
        assert_eq!((line, column), (5, 11));
        assert!(
            message.contains("more than the default restart.max (30s)"),
            "{message}"
        );

        // A bad initial is reported once, not also compared.
        let errors = f.errors(&runtime_with(
            "[runtime.restart]\ninitial = \"x\"\nmax = \"1ms\"",
        ));
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn version_rules() {
        let f = fixture();
        let with_version = |v: &str| {
            runtime_with("")
                .replace("active = \"1.0.0\"", &format!("active = {v:?}"))
                .replace("version = \"1.0.0\"", &format!("version = {v:?}"))
        };
        let (line, column, message) = f.error(&with_version("1.0 beta"));
        assert_eq!((line, column), (6, 11));
        assert_eq!(
            message,
            r#"runtime "echo": version "1.0 beta" contains whitespace; use a single word such as "1.0.0-beta""#
        );
        assert!(f.error(&with_version("")).2.contains("version is empty"));
        let control = runtime_with("").replace("version = \"1.0.0\"", "version = \"1\\u0007\"");
        let errors = f.errors(&control);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(
            errors[0].2,
            r#"runtime "echo": active version "1.0.0" is not one of its versions (1\u{7})"#
        );
        assert_eq!(
            errors[1].2,
            r#"runtime "echo": version "1\u{7}" contains a control character; remove it"#
        );

        let none = "[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\"\n";
        let (line, column, message) = f.error(none);
        assert_eq!((line, column), (1, 1));
        assert!(message.starts_with(r#"runtime "echo" has no versions"#));
    }

    #[test]
    fn versions_must_be_unique() {
        let f = fixture();
        let text = format!(
            "{}\n[[runtime.version]]\nversion = \"1.0.0\"\ncommand = \"steward\"\n",
            runtime_with("")
        );
        let (line, column, message) = f.error(&text);
        assert_eq!((line, column), (10, 11));
        assert_eq!(
            message,
            r#"runtime "echo": version "1.0.0" is already defined on line 6; give each version its own name"#
        );
    }

    #[test]
    fn duplicate_id_mentions_the_first_line() {
        let f = fixture();
        let text = format!("{}\n{}", runtime_with(""), runtime_with(""));
        let (line, column, message) = f.error(&text);
        assert_eq!((line, column), (10, 6));
        assert_eq!(
            message,
            r#"runtime id "echo" is already used on line 2; give each runtime its own id"#
        );
    }

    #[test]
    fn env_and_args_rules() {
        let f = fixture();
        let text = format!(
            "{}args = [\"ok\", \"a\\u0000b\"]\nenv = {{ \"\" = \"x\", \"A=B\" = \"y\", STEWARD_HOST = \"z\", OK = \"nul\\u0000\" }}\n",
            runtime_with("")
        );
        let errors = f.errors(&text);
        let r#where = r#"runtime "echo" version "1.0.0": "#;
        assert_eq!(
            errors,
            vec![
                (
                    8,
                    15,
                    format!(
                        "{where}argument 2 contains a NUL character, which a command line cannot carry; remove it"
                    )
                ),
                (
                    9,
                    9,
                    format!("{where}environment variable name is empty; remove it or name it")
                ),
                (
                    9,
                    19,
                    format!(
                        "{where}environment variable name \"A=B\" contains '=', which names cannot hold; remove it"
                    )
                ),
                (
                    9,
                    32,
                    format!(
                        "{where}environment variable STEWARD_HOST is set by the host for each process; remove it"
                    )
                ),
                (
                    9,
                    57,
                    format!(
                        "{where}environment variable \"OK\" contains a NUL character, which an environment cannot carry; remove it"
                    )
                ),
            ]
        );
    }

    #[test]
    fn all_errors_are_collected_in_file_order() {
        let f = fixture();
        let text = "\
[[runtime]]
id = \"bad id\"
active = \"9\"
transition = \"sideways\"
call-timeout = \"0s\"

[[runtime.version]]
version = \"1\"
command = \"no-such-program\"

[[runtime]]
id = \"ok\"
active = \"1\"
";
        let errors = f.errors(text);
        let positions: Vec<_> = errors.iter().map(|(l, c, _)| (*l, *c)).collect();
        assert_eq!(
            positions,
            vec![(2, 6), (3, 10), (4, 14), (5, 16), (9, 11), (11, 1)],
            "{errors:#?}"
        );
        assert!(errors[1].2.contains("is not one of its versions (1)"));
        assert!(errors[4].2.contains("not found next to the steward binary"));
        assert!(errors[5].2.starts_with(r#"runtime "ok" has no versions"#));
    }

    #[test]
    fn relative_command_resolves_against_the_config_dir() {
        let f = fixture();
        let config_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(config_dir.path().join("bin")).unwrap();
        executable(&config_dir.path().join("bin/rt"));
        let text = runtime_with("").replace("\"steward\"", "\"./bin/rt\"");
        let config = parse(&text, &config_dir.path().join("agent.toml"), &f.resolver).unwrap();
        assert_eq!(
            config.runtimes[0].versions[0].command,
            config_dir.path().join("bin/rt")
        );

        // A config named without a directory resolves against the current
        // directory, and the result is still absolute.
        let resolved = f.resolver.resolve("bin/rt", Path::new("")).unwrap_err();
        assert!(resolved.contains("does not exist"), "{resolved}");
        assert!(
            resolved.contains(&std::env::current_dir().unwrap().display().to_string()),
            "{resolved}"
        );
    }

    #[test]
    fn path_commands_must_be_executable_files() {
        let f = fixture();
        let dir = f.dir.path();
        std::fs::write(dir.join("plain"), "").unwrap();
        let resolve = |c: &str| f.resolver.resolve(c, Path::new("/nonexistent"));
        assert_eq!(resolve(&f.steward().display().to_string()), Ok(f.steward()));
        let missing = resolve("./missing").unwrap_err();
        assert_eq!(
            missing,
            "command \"./missing\" not found: /nonexistent/missing does not exist (relative commands are resolved against the config file's directory)"
        );
        let dir_err = resolve(&dir.display().to_string()).unwrap_err();
        assert!(
            dir_err.contains("is a directory, not a program"),
            "{dir_err}"
        );
        #[cfg(unix)]
        {
            let plain = resolve(&dir.join("plain").display().to_string()).unwrap_err();
            assert!(plain.contains("is not executable"), "{plain}");
        }
        assert!(resolve("").unwrap_err().contains("command is empty"));

        // The same problems surface at the command's position.
        let text = runtime_with("").replace("\"steward\"", "\"/nonexistent/rt\"");
        let (line, column, message) = f.error(&text);
        assert_eq!((line, column), (7, 11));
        assert_eq!(
            message,
            r#"runtime "echo" version "1.0.0": command "/nonexistent/rt" not found: /nonexistent/rt does not exist"#
        );
    }

    #[test]
    fn bare_names_search_exe_dir_then_path() {
        let exe_dir = tempfile::tempdir().unwrap();
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        executable(&first.path().join("rt"));
        executable(&second.path().join("rt"));
        // Not executable: skipped, the search goes on.
        std::fs::write(exe_dir.path().join("rt"), "").unwrap();
        let path = std::env::join_paths([Path::new(""), first.path(), second.path()]).unwrap();
        let mut resolver = CommandResolver {
            exe_dir: Some(exe_dir.path().to_path_buf()),
            path: Some(path),
        };
        let base = Path::new("/nonexistent");
        #[cfg(unix)]
        assert_eq!(resolver.resolve("rt", base), Ok(first.path().join("rt")));

        executable(&exe_dir.path().join("rt"));
        assert_eq!(resolver.resolve("rt", base), Ok(exe_dir.path().join("rt")));

        resolver.exe_dir = None;
        assert_eq!(resolver.resolve("rt", base), Ok(first.path().join("rt")));
        assert_eq!(
            resolver.resolve("nope", base).unwrap_err(),
            r#"command "nope" not found on PATH"#
        );
    }

    #[test]
    fn bare_name_not_found_message() {
        let f = fixture();
        let resolver = CommandResolver {
            path: Some(OsString::new()),
            ..f.resolver.clone()
        };
        let message = resolver.resolve("nope", Path::new("/")).unwrap_err();
        assert_eq!(
            message,
            format!(
                "command \"nope\" not found next to the steward binary ({}) or on PATH",
                f.dir.path().display()
            )
        );
        let text = runtime_with("").replace("\"steward\"", "\"nope\"");
        let (line, column, message) = f.error(&text);
        assert_eq!((line, column), (7, 11));
        assert!(message.starts_with(r#"runtime "echo" version "1.0.0": command "nope" not found next to the steward binary ("#));
    }

    #[test]
    fn display_is_file_line_column_message() {
        let error = ConfigError {
            file: PathBuf::from("/etc/steward/agent.toml"),
            line: 3,
            column: 10,
            message: "bad".into(),
        };
        assert_eq!(error.to_string(), "/etc/steward/agent.toml:3:10: bad");
        let errors = ConfigErrors(vec![
            error.clone(),
            ConfigError {
                line: 4,
                ..error.clone()
            },
        ]);
        assert_eq!(
            errors.to_string(),
            "/etc/steward/agent.toml:3:10: bad\n/etc/steward/agent.toml:4:10: bad"
        );
        assert_eq!(ConfigErrors::from(error.clone()).0, vec![error]);
    }

    #[test]
    fn load_reads_files_and_reports_read_errors() {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, runtime_with("")).unwrap();
        assert_eq!(load(&path, &f.resolver).unwrap().runtimes.len(), 1);

        let missing = dir.path().join("missing.toml");
        let errors = load(&missing, &f.resolver).unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert_eq!((errors.0[0].line, errors.0[0].column), (1, 1));
        assert_eq!(errors.0[0].file, missing);
        assert!(errors.0[0].message.starts_with("cannot read: "));

        std::fs::write(&path, b"# ok\n# caf\xe9\n").unwrap();
        let errors = load(&path, &f.resolver).unwrap_err();
        assert_eq!((errors.0[0].line, errors.0[0].column), (2, 6));
        assert!(errors.0[0].message.contains("not valid UTF-8"));

        // Errors in a loaded file name the file.
        std::fs::write(&path, "[[runtime]]\nid = 5\n").unwrap();
        let errors = load(&path, &f.resolver).unwrap_err();
        assert!(
            errors
                .to_string()
                .starts_with(&format!("{}:2:6: ", path.display())),
            "{errors}"
        );
    }

    #[test]
    fn positions_count_characters() {
        let index = LineIndex::new("ab\né\u{1F600}x\n");
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(2), (1, 3));
        assert_eq!(index.position(3), (2, 1));
        assert_eq!(index.position(5), (2, 2)); // after 'é' (2 bytes)
        assert_eq!(index.position(9), (2, 3)); // after the emoji (4 bytes)
        assert_eq!(index.position(7), (2, 2)); // inside the emoji
        assert_eq!(index.position(11), (3, 1));
        assert_eq!(index.position(99), (3, 1));
        assert_eq!(LineIndex::new("").position(0), (1, 1));
    }

    #[test]
    fn columns_count_characters_in_real_errors() {
        let f = fixture();
        // 'é' is two bytes but one column; the value starts at column 15.
        let text = format!(
            "# café\n{}env = {{ \"é\" = \"a\\u0000\" }}\n",
            runtime_with("")
        );
        let (line, column, message) = f.error(&text);
        assert_eq!((line, column), (9, 15), "{message}");
        assert!(message.contains(r#"environment variable "é" contains a NUL"#));
    }
}
