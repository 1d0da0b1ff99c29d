//! The agent's configuration file: which runtimes it hosts, their versions
//! and how to start each version's process.
//!
//! This module owns the TOML format (the [`Config`] model and its
//! defaults), parsing with `file:line:column` positions for every problem,
//! validation, resolution of each version's `command` to an absolute
//! executable path ([`CommandResolver`]).
//!
//! It must never start a process, touch the store or the network: it reads
//! one file (or a text it is given) and looks at the filesystem to resolve
//! commands, so `steward config check` can run it anywhere without side
//! effects.
//!
//! The format, for users of the agent:
#![doc = include_str!("../../docs/config.md")]

mod check;
pub(crate) use check::{check_etcd_url, check_fleet_prefix};
mod command;
mod error;
mod raw;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use steward_host::Liveness;
use steward_host::TransitionMode;

pub use command::CommandResolver;
pub use error::{ConfigError, ConfigErrors};

use check::Checker;
use error::{LineIndex, toml_message};
use raw::RawFile;

/// The longest runtime id accepted, in characters.
pub const MAX_ID_LEN: usize = 64;

/// The default deadline of one call made through the agent.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How many of each version's latest output lines the agent keeps when
/// the config does not say (`log-lines`).
pub const DEFAULT_LOG_LINES: usize = 1000;

/// The most `log-lines` accepted.
pub const MAX_LOG_LINES: usize = 100_000;

/// A validated agent configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// The hosted runtimes, in file order; may be empty (an agent serving
    /// nothing yet).
    pub runtimes: Vec<RuntimeConfig>,
    /// The relations: the `[[relation]]` tables in file order (each
    /// relates endpoints of two different runtimes of
    /// [`runtimes`](Self::runtimes), and no two relate the same pair), then
    /// each runtime's peer relations (`[[runtime.peer]]`, both ends the
    /// same endpoint).
    pub relations: Vec<RelationConfig>,
    /// `[fleet]`: the etcd this agent shares desired state, presence and
    /// relations through; read at start only (`--fleet` wins over it).
    pub fleet: Option<FleetConfig>,
}

/// `[fleet]`: where a fleet's shared state is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// etcd's client URLs, e.g. `http://127.0.0.1:2379`; at least one.
    pub endpoints: Vec<String>,
    /// The prefix of every key the fleet uses; `None` is `/steward/`.
    pub prefix: Option<String>,
    /// How long a dead agent's units stay listed; `None` is 10 s.
    pub lease_ttl: Option<Duration>,
}

impl Config {
    /// The runtime called `id`.
    pub fn runtime(&self, id: &str) -> Option<&RuntimeConfig> {
        self.runtimes.iter().find(|r| r.id == id)
    }

    /// The relation between exactly these two endpoints, in either order.
    pub fn relation(&self, endpoints: &[Endpoint; 2]) -> Option<&RelationConfig> {
        self.relations.iter().find(|r| r.relates(endpoints))
    }
}

/// One `[[relation]]`: two endpoints of two runtimes that learn about each
/// other through relation hooks and settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelationConfig {
    /// The two ends, as written.
    pub endpoints: [Endpoint; 2],
}

impl RelationConfig {
    /// The peer relation of `endpoint`'s runtime: its units, on every
    /// agent, relate to each other through it.
    pub fn peer(endpoint: Endpoint) -> Self {
        Self {
            endpoints: [endpoint.clone(), endpoint],
        }
    }

    /// Whether it relates a runtime's units to each other.
    pub fn is_peer(&self) -> bool {
        self.endpoints[0] == self.endpoints[1]
    }

    /// Whether this relation is the one between `endpoints` (in either
    /// order): a relation's identity is its pair of endpoints.
    pub fn relates(&self, endpoints: &[Endpoint; 2]) -> bool {
        let [a, b] = &self.endpoints;
        (a == &endpoints[0] && b == &endpoints[1]) || (a == &endpoints[1] && b == &endpoints[0])
    }
}

/// One end of a relation: a runtime and the endpoint name its hooks use
/// (`web:db` runs `db-relation-joined` in runtime `web`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// The runtime's id.
    pub runtime: String,
    /// The endpoint's name: a lowercase letter, then lowercase letters and
    /// digits, in words joined by single hyphens (juju's rule).
    pub name: String,
}

impl Endpoint {
    /// The endpoint `runtime:name`.
    pub fn new(runtime: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            runtime: runtime.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.runtime, self.name)
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
    pub transition: Transition,
    /// The deadline of one call made through the agent.
    pub call_timeout: Duration,
    /// The restart backoff of a crashed runtime process.
    pub restart: BackoffConfig,
    /// Its lifecycle hooks, if it has any.
    pub hooks: Option<HooksConfig>,
    /// Its settings, for its hooks (`config-get`); empty when not given.
    pub settings: Settings,
    /// How long its processes have to start and to answer.
    pub timeouts: ProcessTimeouts,
    /// How the host finds a serving process hung (`[runtime.liveness]`).
    pub liveness: Liveness,
    /// How many of the latest output lines the agent keeps per version (and
    /// of its hooks' output), up to [`MAX_LOG_LINES`]; 0 keeps none.
    pub log_lines: usize,
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

/// How a version switch replaces the active version, by the names the
/// config file and the API both use (`make-before-break`,
/// `stop-then-start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Transition {
    /// Start the new version, move calls over, then stop the old one.
    #[default]
    MakeBeforeBreak,
    /// Stop the old version, then start the new one.
    StopThenStart,
}

impl Transition {
    /// Every transition, in the order messages list them.
    pub const ALL: [Transition; 2] = [Transition::MakeBeforeBreak, Transition::StopThenStart];

    /// Its name, e.g. `make-before-break`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::MakeBeforeBreak => "make-before-break",
            Transition::StopThenStart => "stop-then-start",
        }
    }

    /// The transition called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl From<Transition> for TransitionMode {
    fn from(transition: Transition) -> Self {
        match transition {
            Transition::MakeBeforeBreak => TransitionMode::MakeBeforeBreak,
            Transition::StopThenStart => TransitionMode::StopThenStart,
        }
    }
}

/// How long a runtime's process has at each step of its life (the
/// config's `start-timeout`, `handshake-timeout`, `abort-timeout`): a
/// slow interpreter needs more than the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessTimeouts {
    /// From being spawned to connecting to the host's socket.
    pub start: Duration,
    /// From connecting to answering the handshake.
    pub handshake: Duration,
    /// To answer `RuntimeAbort` before it is killed instead.
    pub abort: Duration,
}

impl Default for ProcessTimeouts {
    fn default() -> Self {
        Self {
            start: Duration::from_secs(10),
            handshake: Duration::from_secs(5),
            abort: Duration::from_secs(1),
        }
    }
}

/// The most unanswered pings in a row a `[runtime.liveness]` may wait for.
pub const MAX_LIVENESS_FAILURES: i64 = 1000;

/// Delays between attempts: the first delay, then doubling (with jitter)
/// up to the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first delay; greater than zero.
    pub initial: Duration,
    /// The longest delay; at least `initial`.
    pub max: Duration,
}

impl BackoffConfig {
    /// The default restart backoff of a crashed runtime process.
    pub const RESTART: BackoffConfig = BackoffConfig {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(30),
    };

    /// The default retry backoff of a failed hook (juju's: 5 s doubling to
    /// 5 min).
    pub const HOOK_RETRY: BackoffConfig = BackoffConfig {
        initial: Duration::from_secs(5),
        max: Duration::from_secs(300),
    };
}

/// A runtime's lifecycle hooks: where they are and how patient to be with
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksConfig {
    /// The hooks directory, absolute; it exists and is a directory.
    pub dir: PathBuf,
    /// How long a hook may run before its process group is killed (and
    /// the hook has failed).
    pub timeout: Duration,
    /// What a failed hook leads to.
    pub on_failure: OnHookFailure,
    /// The retry delays of a failed hook (with [`OnHookFailure::Retry`]).
    pub retry: BackoffConfig,
}

/// The default deadline of one hook.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// What happens after a hook failed (the config's `on-hook-failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnHookFailure {
    /// Run it again with backoff until it succeeds (or an operator
    /// resolves it).
    #[default]
    Retry,
    /// Wait for an operator (`steward resolve`).
    Block,
}

impl OnHookFailure {
    /// Every choice, in the order messages list them.
    pub const ALL: [OnHookFailure; 2] = [OnHookFailure::Retry, OnHookFailure::Block];

    /// Its name in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            OnHookFailure::Retry => "retry",
            OnHookFailure::Block => "block",
        }
    }

    /// The choice called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|choice| choice.as_str() == name)
    }
}

/// What `config-get` returns to a runtime's hooks: the `[runtime.settings]`
/// table, as JSON values.
pub type Settings = serde_json::Map<String, serde_json::Value>;

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
    Checker::new(origin, lines, resolver, base_dir)
        .config(raw.runtime.items, raw.relation.items, raw.fleet)
        .map_err(ConfigErrors)
}
