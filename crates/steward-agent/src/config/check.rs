//! Validation: the file as written ([`raw`](super::raw)) into the model
//! ([`Config`]), one check per field, collecting every problem at its
//! position rather than stopping at the first. A table with a problem
//! contributes nothing to the model. This module must never read files
//! other than through the [`CommandResolver`].

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use steward_protocol::HOST_SOCKET_ENV;
use toml::Spanned;

use super::error::{ConfigError, LineIndex};
use super::raw::{
    DurationText, EndpointText, Env, Expected, IdText, List, OnFailureText, PathText, PeerList,
    RawBackoff, RawFleet, RawLiveness, RawPeer, RawRelation, RawRuntime, RawVersion, Text,
    VersionText,
};
use super::{
    BackoffConfig, CommandResolver, Config, DEFAULT_CALL_TIMEOUT, DEFAULT_HOOK_TIMEOUT, Endpoint,
    FleetConfig, HooksConfig, Liveness, MAX_ID_LEN, MAX_LIVENESS_FAILURES, OnHookFailure,
    ProcessTimeouts, RelationConfig, RuntimeConfig, Settings, Transition, VersionConfig,
};

/// The hook keys of a runtime table, as written.
struct HookKeys {
    dir: Option<Spanned<Text<PathText>>>,
    timeout: Option<Spanned<Text<DurationText>>>,
    on_failure: Option<Spanned<Text<OnFailureText>>>,
    retry: Option<Spanned<RawBackoff<super::raw::HookRetryTable>>>,
}

/// Validates the raw file into a [`Config`], collecting every problem.
pub(super) struct Checker<'a> {
    file: &'a Path,
    lines: LineIndex<'a>,
    resolver: &'a CommandResolver,
    base_dir: &'a Path,
    errors: Vec<ConfigError>,
    /// Runtime ids seen so far, with the line of the first use.
    ids: HashMap<String, usize>,
    /// Each runtime's peer relations' names, in file order.
    peers: BTreeMap<String, Vec<String>>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(
        file: &'a Path,
        lines: LineIndex<'a>,
        resolver: &'a CommandResolver,
        base_dir: &'a Path,
    ) -> Self {
        Self {
            file,
            lines,
            resolver,
            base_dir,
            errors: Vec::new(),
            ids: HashMap::new(),
            peers: BTreeMap::new(),
        }
    }

    /// The config, or every problem in file order.
    pub(super) fn config(
        mut self,
        runtimes: Vec<Spanned<RawRuntime>>,
        relations: Vec<Spanned<RawRelation>>,
        fleet: Option<Spanned<RawFleet>>,
    ) -> Result<Config, Vec<ConfigError>> {
        let fleet = fleet.and_then(|fleet| self.fleet(fleet));
        let runtimes: Vec<_> = runtimes
            .into_iter()
            .enumerate()
            .filter_map(|(i, runtime)| self.runtime(i + 1, runtime))
            .collect();
        // After the runtimes: a relation names runtime ids, which must all
        // be known (a runtime with other problems still counts as known, so
        // its relations get no second, misleading error).
        let mut seen = Vec::new();
        let mut relations: Vec<_> = relations
            .into_iter()
            .enumerate()
            .filter_map(|(i, relation)| self.relation(i + 1, relation, &mut seen))
            .collect();
        for runtime in &runtimes {
            for name in self.peers.get(&runtime.id).into_iter().flatten() {
                relations.push(RelationConfig::peer(Endpoint::new(&runtime.id, name)));
            }
        }
        if self.errors.is_empty() {
            return Ok(Config {
                runtimes,
                relations,
                fleet,
            });
        }
        // Checks run per field, not per byte; a stable sort by position
        // gives file order while keeping problems found at the same place
        // in the order they were checked.
        self.errors.sort_by_key(|e| (e.line, e.column));
        Err(self.errors)
    }

    fn error(&mut self, span: Range<usize>, message: String) {
        let (line, column) = self.lines.position(span.start);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
        });
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.lines.position(span.start).0
    }

    /// Checks the `number`th runtime (1-based); `None` when it has a
    /// problem (already recorded).
    fn runtime(&mut self, number: usize, raw: Spanned<RawRuntime>) -> Option<RuntimeConfig> {
        let table = raw.span();
        let raw = raw.into_inner();
        let errors_before = self.errors.len();

        let id = self.runtime_id(number, raw.id, &table);
        let who = match &id {
            Some(id) => format!("runtime {id:?}"),
            None => format!("runtime #{number}"),
        };
        let transition = self.transition(&who, raw.transition);
        let call_timeout = self.duration(&who, "call-timeout", raw.call_timeout.as_ref());
        let restart = self.backoff(&who, "restart", raw.restart, BackoffConfig::RESTART);
        let hooks = self.hooks(
            &who,
            HookKeys {
                dir: raw.hooks,
                timeout: raw.hook_timeout,
                on_failure: raw.on_hook_failure,
                retry: raw.hook_retry,
            },
        );
        let settings = self.settings(&who, raw.settings);
        let defaults = ProcessTimeouts::default();
        let timeouts = ProcessTimeouts {
            start: self
                .duration(&who, "start-timeout", raw.start_timeout.as_ref())
                .unwrap_or(defaults.start),
            handshake: self
                .duration(&who, "handshake-timeout", raw.handshake_timeout.as_ref())
                .unwrap_or(defaults.handshake),
            abort: self
                .duration(&who, "abort-timeout", raw.abort_timeout.as_ref())
                .unwrap_or(defaults.abort),
        };
        let liveness = self.liveness(&who, raw.liveness);
        let peers = self.peers(&who, raw.peer);
        if let Some(id) = &id {
            self.peers.insert(id.clone(), peers);
        }
        let log_lines = self.log_lines(&who, raw.log_lines);
        let (names, versions) = self.versions(&who, raw.version, &table);
        let active = self.active(&who, raw.active, &names, table);

        if self.errors.len() > errors_before {
            return None;
        }
        Some(RuntimeConfig {
            id: id.unwrap_or_default(),
            active,
            transition,
            call_timeout: call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT),
            restart,
            hooks,
            settings,
            timeouts,
            liveness,
            log_lines,
            versions,
        })
    }

    /// The names of `who`'s peer relations (valid and unique).
    fn peers(&mut self, who: &str, raw: List<RawPeer, PeerList>) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for table in raw.items {
            let span = table.span();
            let Some(name) = table.into_inner().name else {
                self.error(
                    span,
                    format!(r#"{who}: a [[runtime.peer]] has no name; add name = "..." (e.g. "cluster")"#),
                );
                continue;
            };
            let span = name.span();
            let name = name.into_inner().0;
            if let Some(problem) = endpoint_name_problem(&name) {
                self.error(span, format!("{who}: peer relation: {problem}"));
                continue;
            }
            if names.contains(&name) {
                self.error(
                    span,
                    format!("{who}: peer relation {name:?} is declared twice; remove one"),
                );
                continue;
            }
            names.push(name);
        }
        names
    }

    /// `[runtime.liveness]` of `who`: its values, or the host's defaults
    /// for what is left out (or wrong: the problem is recorded).
    fn liveness(&mut self, who: &str, raw: Option<Spanned<RawLiveness>>) -> Liveness {
        let defaults = Liveness::default();
        let Some(raw) = raw else {
            return defaults;
        };
        let raw = raw.into_inner();
        let interval = self.duration(who, "liveness.interval", raw.interval.as_ref());
        let timeout = self.duration(who, "liveness.timeout", raw.timeout.as_ref());
        let failures = match raw.failures {
            None => defaults.failures,
            Some(count) => match u32::try_from(count.get_ref().0) {
                Ok(failures) if i64::from(failures) <= MAX_LIVENESS_FAILURES => failures,
                _ => {
                    let message = format!(
                        "{who}: liveness.failures {} must be from 0 (no liveness checks) to {MAX_LIVENESS_FAILURES}",
                        count.get_ref().0
                    );
                    self.error(count.span(), message);
                    defaults.failures
                }
            },
        };
        Liveness {
            interval: interval.unwrap_or(defaults.interval),
            timeout: timeout.unwrap_or(defaults.timeout),
            failures,
        }
    }

    /// `log-lines` of `who`: 0 to [`MAX_LOG_LINES`](super::MAX_LOG_LINES).
    fn log_lines(
        &mut self,
        who: &str,
        raw: Option<Spanned<super::raw::Integer<super::raw::LineCountNumber>>>,
    ) -> usize {
        use super::{DEFAULT_LOG_LINES, MAX_LOG_LINES};
        let Some(raw) = raw else {
            return DEFAULT_LOG_LINES;
        };
        let n = raw.get_ref().0;
        match usize::try_from(n) {
            Ok(n) if n <= MAX_LOG_LINES => n,
            _ => {
                self.error(
                    raw.span(),
                    format!(
                        "{who}: log-lines {n} is out of range; keep 0 (none) to {MAX_LOG_LINES} lines per version"
                    ),
                );
                DEFAULT_LOG_LINES
            }
        }
    }

    fn runtime_id(
        &mut self,
        number: usize,
        raw: Option<Spanned<Text<IdText>>>,
        table: &Range<usize>,
    ) -> Option<String> {
        let Some(id) = raw else {
            self.error(
                table.clone(),
                format!(
                    r#"runtime #{number} has no id; add id = "..." (1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ -)"#
                ),
            );
            return None;
        };
        let span = id.span();
        let id = id.into_inner().0;
        if let Some(problem) = id_problem(&id) {
            self.error(span, problem);
            return Some(id);
        }
        let line = self.line(&span);
        match self.ids.get(&id) {
            Some(first) => {
                let message = format!(
                    "runtime id {id:?} is already used on line {first}; give each runtime its own id"
                );
                self.error(span, message);
            }
            None => {
                self.ids.insert(id.clone(), line);
            }
        }
        Some(id)
    }

    fn transition(
        &mut self,
        who: &str,
        raw: Option<Spanned<Text<super::raw::TransitionText>>>,
    ) -> Transition {
        let Some(raw) = raw else {
            return Transition::default();
        };
        let name = raw.get_ref().0.as_str();
        if let Some(transition) = Transition::from_name(name) {
            return transition;
        }
        let [first, second] = Transition::ALL.map(Transition::as_str);
        let message = format!("{who}: unknown transition {name:?}; use {first:?} or {second:?}");
        self.error(raw.span(), message);
        Transition::default()
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

    /// Checks `[fleet]`; `None` when it has a problem (already recorded).
    fn fleet(&mut self, raw: Spanned<RawFleet>) -> Option<FleetConfig> {
        let table = raw.span();
        let raw = raw.into_inner();
        let errors_before = self.errors.len();
        let Some(list) = raw.endpoints else {
            self.error(
                table,
                r#"[fleet] has no endpoints; add endpoints = ["http://127.0.0.1:2379"] (etcd's client URLs)"#
                    .to_owned(),
            );
            return None;
        };
        let list_span = list.span();
        let items = list.into_inner().items;
        if items.is_empty() {
            self.error(
                list_span,
                r#"[fleet] endpoints is empty; name at least one etcd client URL, e.g. "http://127.0.0.1:2379""#
                    .to_owned(),
            );
        }
        let mut endpoints = Vec::with_capacity(items.len());
        for item in items {
            let span = item.span();
            let url = item.into_inner().0;
            match check_etcd_url(&url) {
                Ok(()) => endpoints.push(url),
                Err(reason) => self.error(span, format!("[fleet] endpoint {url:?} {reason}")),
            }
        }
        let prefix = raw.prefix.and_then(|prefix| {
            let span = prefix.span();
            let text = prefix.into_inner().0;
            match check_fleet_prefix(&text) {
                Ok(()) => Some(text),
                Err(reason) => {
                    self.error(span, format!("[fleet] prefix {text:?} {reason}"));
                    None
                }
            }
        });
        let lease_ttl = self.duration("[fleet]", "lease-ttl", raw.lease_ttl.as_ref());
        if let (Some(ttl), Some(raw)) = (lease_ttl, &raw.lease_ttl)
            && ttl < Duration::from_secs(2)
        {
            self.error(
                raw.span(),
                format!(
                    "[fleet] lease-ttl {:?} is shorter than etcd's minimum of 2s",
                    raw.get_ref().0
                ),
            );
        }
        (self.errors.len() == errors_before).then_some(FleetConfig {
            endpoints,
            prefix,
            lease_ttl,
        })
    }

    /// Checks the `number`th relation (1-based); `seen` holds the
    /// relations before it with the line they are on, for duplicates.
    fn relation(
        &mut self,
        number: usize,
        raw: Spanned<RawRelation>,
        seen: &mut Vec<([Endpoint; 2], usize)>,
    ) -> Option<RelationConfig> {
        let table = raw.span();
        let Some(list) = raw.into_inner().endpoints else {
            self.error(
                table,
                format!(
                    r#"relation #{number} has no endpoints; add endpoints = ["<runtime>:<endpoint>", "<runtime>:<endpoint>"]"#
                ),
            );
            return None;
        };
        let list_span = list.span();
        let items = list.into_inner().items;
        if items.len() != 2 {
            self.error(
                list_span,
                format!(
                    "relation #{number} has {} endpoints; a relation relates exactly two, e.g. [\"web:db\", \"kv:store\"]",
                    items.len()
                ),
            );
            return None;
        }
        let errors_before = self.errors.len();
        let endpoints: Vec<(Endpoint, Range<usize>)> = items
            .into_iter()
            .filter_map(|item| {
                let span = item.span();
                self.endpoint(number, item).map(|endpoint| (endpoint, span))
            })
            .collect();
        let [(a, _), (b, b_span)] = <[_; 2]>::try_from(endpoints).ok()?;
        if self.errors.len() > errors_before {
            return None;
        }
        if a.runtime == b.runtime {
            let message = if a.name == b.name {
                format!("relation #{number} relates {a} to itself; relate two runtimes")
            } else {
                format!(
                    "relation #{number} relates runtime {:?} to itself ({a} and {b}); \
                     a unit never sees itself in a relation: relate two different runtimes, \
                     or relate the runtime's units to each other with a [[runtime.peer]]",
                    a.runtime
                )
            };
            self.error(b_span, message);
            return None;
        }
        let endpoints = [a, b];
        let line = self.line(&table);
        let relation = RelationConfig { endpoints };
        if let Some((_, first)) = seen.iter().find(|(other, _)| relation.relates(other)) {
            let [a, b] = &relation.endpoints;
            let message = format!(
                "relation #{number} between {a} and {b} is already declared on line {first}; remove one of them"
            );
            self.error(table, message);
            return None;
        }
        seen.push((relation.endpoints.clone(), line));
        Some(relation)
    }

    /// Checks one endpoint of relation `number`: `<runtime>:<name>`, of a
    /// runtime the config has.
    fn endpoint(&mut self, number: usize, raw: Spanned<Text<EndpointText>>) -> Option<Endpoint> {
        let span = raw.span();
        let text = raw.into_inner().0;
        let Some((runtime, name)) = text.split_once(':') else {
            self.error(
                span,
                format!(
                    "relation #{number}: endpoint {text:?} has no endpoint name; write <runtime>:<endpoint>, e.g. \"web:db\""
                ),
            );
            return None;
        };
        if let Some(problem) = endpoint_name_problem(name) {
            self.error(
                span,
                format!("relation #{number}: endpoint {text:?}: {problem}"),
            );
            return None;
        }
        if self
            .peers
            .get(runtime)
            .is_some_and(|peers| peers.iter().any(|peer| peer == name))
        {
            self.error(
                span,
                format!(
                    "relation #{number}: endpoint {text:?} is {runtime:?}'s peer relation; give this relation another endpoint name"
                ),
            );
            return None;
        }
        if !self.ids.contains_key(runtime) {
            let known: Vec<String> = {
                let mut ids: Vec<_> = self.ids.keys().cloned().collect();
                ids.sort();
                ids
            };
            let message = match known.is_empty() {
                true => format!(
                    "relation #{number}: endpoint {text:?} names runtime {runtime:?}, but the config has no runtimes"
                ),
                false => format!(
                    "relation #{number}: endpoint {text:?} names runtime {runtime:?}, which the config does not have; known runtimes: {}",
                    list(&known)
                ),
            };
            self.error(span, message);
            return None;
        }
        Some(Endpoint::new(runtime, name))
    }

    /// A backoff table (`restart`, `hook-retry`) of `who`: its values, or
    /// `defaults` for what is left out (or wrong: the problem is recorded).
    fn backoff<E: Expected>(
        &mut self,
        who: &str,
        table: &str,
        raw: Option<Spanned<RawBackoff<E>>>,
        defaults: BackoffConfig,
    ) -> BackoffConfig {
        let Some(raw) = raw else {
            return defaults;
        };
        let raw = raw.into_inner();
        let initial = self.duration(who, &format!("{table}.initial"), raw.initial.as_ref());
        let max = self.duration(who, &format!("{table}.max"), raw.max.as_ref());
        // Compare only values that are valid (or defaulted because absent),
        // so one bad duration is not reported twice.
        let initial_ok = raw.initial.is_none() || initial.is_some();
        let max_ok = raw.max.is_none() || max.is_some();
        let config = BackoffConfig {
            initial: initial.unwrap_or(defaults.initial),
            max: max.unwrap_or(defaults.max),
        };
        if !(initial_ok && max_ok && config.max < config.initial) {
            return config;
        }
        let shown = |d| humantime::format_duration(d);
        // Point at what the user wrote: max if given, else initial (which
        // then exceeds the default max).
        match (&raw.max, &raw.initial) {
            (Some(max), _) => self.error(
                max.span(),
                format!(
                    "{who}: {table}.max ({}) is less than {table}.initial ({}); raise max or lower initial",
                    shown(config.max),
                    shown(config.initial)
                ),
            ),
            (None, Some(initial)) => self.error(
                initial.span(),
                format!(
                    "{who}: {table}.initial ({}) is more than the default {table}.max ({}); lower initial or set max",
                    shown(config.initial),
                    shown(config.max)
                ),
            ),
            (None, None) => {}
        }
        config
    }

    /// The hooks settings of `who`; `None` without `hooks` (then the other
    /// hook keys are errors: they would do nothing).
    fn hooks(&mut self, who: &str, raw: HookKeys) -> Option<HooksConfig> {
        let Some(dir) = &raw.dir else {
            let stray = [
                raw.timeout.as_ref().map(|t| ("hook-timeout", t.span())),
                raw.on_failure
                    .as_ref()
                    .map(|f| ("on-hook-failure", f.span())),
                raw.retry.as_ref().map(|r| ("hook-retry", r.span())),
            ];
            for (key, span) in stray.into_iter().flatten() {
                self.error(
                    span,
                    format!(r#"{who}: {key} has no effect without hooks; add hooks = "DIR" or remove it"#),
                );
            }
            return None;
        };
        let dir = self.hooks_dir(who, dir);
        let timeout = self.duration(who, "hook-timeout", raw.timeout.as_ref());
        let on_failure = match &raw.on_failure {
            None => OnHookFailure::default(),
            Some(choice) => {
                let name = choice.get_ref().0.as_str();
                OnHookFailure::from_name(name).unwrap_or_else(|| {
                    let [first, second] = OnHookFailure::ALL.map(OnHookFailure::as_str);
                    let message = format!(
                        "{who}: unknown on-hook-failure {name:?}; use {first:?} or {second:?}"
                    );
                    self.error(choice.span(), message);
                    OnHookFailure::default()
                })
            }
        };
        let retry = self.backoff(who, "hook-retry", raw.retry, BackoffConfig::HOOK_RETRY);
        Some(HooksConfig {
            dir: dir?,
            timeout: timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT),
            on_failure,
            retry,
        })
    }

    /// The hooks directory, absolute: relative to the config file's
    /// directory; it must exist and be a directory.
    fn hooks_dir(&mut self, who: &str, raw: &Spanned<Text<PathText>>) -> Option<PathBuf> {
        let given = raw.get_ref().0.as_str();
        let problem = if given.is_empty() {
            Err("hooks is empty; give the hooks directory".to_owned())
        } else {
            let path = Path::new(given);
            let joined = if path.is_absolute() {
                path.to_path_buf()
            } else {
                self.base_dir.join(path)
            };
            match std::path::absolute(&joined) {
                Err(error) => Err(format!(
                    "hooks {given:?}: cannot make {} absolute: {error}",
                    joined.display()
                )),
                Ok(full) => match std::fs::metadata(&full) {
                    Ok(meta) if meta.is_dir() => Ok(full),
                    Ok(_) => Err(format!(
                        "hooks {given:?}: {} is not a directory",
                        full.display()
                    )),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(format!(
                        "hooks {given:?}: {} does not exist{}",
                        full.display(),
                        if path.is_absolute() {
                            ""
                        } else {
                            " (relative paths are resolved against the config file's directory)"
                        }
                    )),
                    Err(error) => Err(format!(
                        "hooks {given:?}: cannot inspect {}: {error}",
                        full.display()
                    )),
                },
            }
        };
        match problem {
            Ok(dir) => Some(dir),
            Err(problem) => {
                self.error(raw.span(), format!("{who}: {problem}"));
                None
            }
        }
    }

    /// The `[runtime.settings]` table as JSON values.
    fn settings(&mut self, who: &str, raw: Option<Spanned<toml::Table>>) -> Settings {
        let Some(raw) = raw else {
            return Settings::new();
        };
        let span = raw.span();
        let mut settings = Settings::new();
        for (key, value) in raw.into_inner() {
            match json_of(&value) {
                Ok(json) => {
                    settings.insert(key, json);
                }
                Err(problem) => {
                    self.error(span.clone(), format!("{who}: settings.{key}: {problem}"))
                }
            }
        }
        settings
    }

    /// The runtime's versions, and every name given, valid or not, so a
    /// bad version string is not reported a second time as an unknown
    /// `active`.
    fn versions(
        &mut self,
        who: &str,
        raw: List<RawVersion, super::raw::VersionList>,
        table: &Range<usize>,
    ) -> (Vec<String>, Vec<VersionConfig>) {
        if raw.items.is_empty() {
            self.error(
                table.clone(),
                format!(
                    r#"{who} has no versions; add a [[runtime.version]] table with version = "..." and command = "...""#
                ),
            );
        }
        let mut names = Vec::new();
        let mut first_line = HashMap::new();
        let mut versions = Vec::new();
        for (i, version) in raw.items.into_iter().enumerate() {
            if let Some(name) = version.get_ref().version.as_ref() {
                names.push(name.get_ref().0.clone());
            }
            if let Some(version) = self.version(who, i + 1, version, &mut first_line) {
                versions.push(version);
            }
        }
        (names, versions)
    }

    fn active(
        &mut self,
        who: &str,
        raw: Option<Spanned<Text<VersionText>>>,
        names: &[String],
        table: Range<usize>,
    ) -> String {
        let Some(active) = raw else {
            let hint = if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", list(names))
            };
            self.error(
                table,
                format!(
                    r#"{who} has no active version; add active = "..." naming the version to start first{hint}"#
                ),
            );
            return String::new();
        };
        let name = &active.get_ref().0;
        if !names.is_empty() && !names.contains(name) {
            let message = format!(
                "{who}: active version {name:?} is not one of its versions ({})",
                list(names)
            );
            self.error(active.span(), message);
        }
        active.into_inner().0
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

        let name = self.version_name(who, number, raw.version, &table, first_line);
        let what = match &name {
            Some(name) => format!("{who} version {name:?}"),
            None => format!("{who} version #{number}"),
        };
        let command = self.command(&what, raw.command, table);
        let args = self.args(&what, raw.args);
        let env = self.env(&what, raw.env);

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

    fn version_name(
        &mut self,
        who: &str,
        number: usize,
        raw: Option<Spanned<Text<VersionText>>>,
        table: &Range<usize>,
        first_line: &mut HashMap<String, usize>,
    ) -> Option<String> {
        let Some(name) = raw else {
            self.error(
                table.clone(),
                format!(
                    r#"{who}: [[runtime.version]] #{number} has no version; add version = "...""#
                ),
            );
            return None;
        };
        let span = name.span();
        let name = name.into_inner().0;
        if let Some(problem) = version_name_problem(&name) {
            self.error(span.clone(), format!("{who}: {problem}"));
        }
        let line = self.line(&span);
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

    fn command(
        &mut self,
        what: &str,
        raw: Option<Spanned<Text<super::raw::CommandText>>>,
        table: Range<usize>,
    ) -> Option<std::path::PathBuf> {
        let Some(command) = raw else {
            self.error(
                table,
                format!(r#"{what} has no command; add command = "...""#),
            );
            return None;
        };
        match self.resolver.resolve(&command.get_ref().0, self.base_dir) {
            Ok(path) => Some(path),
            Err(problem) => {
                self.error(command.span(), format!("{what}: {problem}"));
                None
            }
        }
    }

    fn args(
        &mut self,
        what: &str,
        raw: List<Text<super::raw::ArgText>, super::raw::ArgList>,
    ) -> Vec<String> {
        let mut args = Vec::with_capacity(raw.items.len());
        for (i, arg) in raw.items.into_iter().enumerate() {
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
        args
    }

    fn env(&mut self, what: &str, raw: Env) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        // A BTreeMap iterates by name; the final sort puts the errors back
        // into file order.
        for (key, value) in raw.0 {
            let name = key.get_ref();
            if let Some(problem) = env_name_problem(name) {
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
        env
    }
}

/// What is wrong with a runtime id, if anything (its uniqueness aside).
fn id_problem(id: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() {
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
        // They pass the character rule but mean "this/parent directory" as
        // a URL path segment, so the runtime could not be addressed.
        Some(format!(
            "runtime id {id:?} is not allowed (it is a special URL path segment); choose a name"
        ))
    } else {
        None
    }
}

/// What is wrong with an endpoint name, if anything: juju's rule (a
/// lowercase letter, then lowercase letters and digits, in words joined by
/// single hyphens), because the name becomes part of hook file names
/// (`db-relation-joined`) and `-r` flags (`db:3`).
fn endpoint_name_problem(name: &str) -> Option<String> {
    const RULE: &str = "use a lowercase letter, then lowercase letters, digits and single hyphens, e.g. \"db\" or \"cache-peer\"";
    if name.is_empty() {
        return Some(format!("the endpoint name is empty; {RULE}"));
    }
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split('-').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && name.len() <= MAX_ID_LEN;
    match valid {
        true => None,
        false => Some(format!(
            "invalid endpoint name {name:?}; {RULE} (at most {MAX_ID_LEN} characters)"
        )),
    }
}

/// What is wrong with a version name, if anything (its uniqueness aside).
fn version_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
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
    }
}

/// What is wrong with an environment variable's name, if anything.
fn env_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
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
        // configured value would be overwritten, so reject it rather than
        // silently ignore it.
        Some(format!(
            "environment variable {name} is set by the host for each process; remove it"
        ))
    } else {
        None
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

/// A TOML value as JSON: dates and times become their TOML text; a float
/// JSON cannot hold (NaN, an infinity) is refused.
fn json_of(value: &toml::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as Json;
    Ok(match value {
        toml::Value::String(text) => Json::String(text.clone()),
        toml::Value::Integer(n) => Json::from(*n),
        toml::Value::Float(x) => serde_json::Number::from_f64(*x)
            .map(Json::Number)
            .ok_or_else(|| format!("{x} cannot be a setting (hooks read settings as JSON)"))?,
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(when) => Json::String(when.to_string()),
        toml::Value::Array(items) => {
            Json::Array(items.iter().map(json_of).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(key, value)| Ok((key.clone(), json_of(value)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Why `url` is not an etcd client URL (`http://host:port`, or
/// `https://`), if it is not.
pub(crate) fn check_etcd_url(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(
            "is not an etcd client URL; write it like \"http://127.0.0.1:2379\"".to_owned(),
        );
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || authority.contains(char::is_whitespace) {
        return Err(
            "has no host:port after the scheme; write it like \"http://127.0.0.1:2379\"".to_owned(),
        );
    }
    Ok(())
}

/// Why `prefix` cannot prefix the fleet's keys, if it cannot.
pub(crate) fn check_fleet_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err("must start with \"/\", e.g. \"/steward/\"".to_owned());
    }
    if prefix.contains(char::is_whitespace) || prefix.contains("//") {
        return Err("must not contain spaces or \"//\"".to_owned());
    }
    Ok(())
}
