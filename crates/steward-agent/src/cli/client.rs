//! The client commands: one HTTP request each (two for `status`), output
//! for people or, with `--json`, for programs. This module must never
//! print a multi-line error: failures are one [`ClientError`] line.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::api::types::{
    AbortOutcome, AbortRequest, AbortResponse, AgentEvent, CallRequest, CallResponse,
    ErrorResponse, FleetConnection, FleetStatus, FleetUnit, Health, Hooks, HooksState, Lagged,
    LogLine, LogList, RelationList, RelationSummary, ResolveRequest, ResolveResponse,
    RuntimeDetail, RuntimeList, VersionRequest, VersionResponse, Workload,
};
use crate::json::ExactJson;
use crate::token::read_token_file;

use super::output::{self, Closed, EXIT_CLOSED};

/// Why a client command failed.
#[derive(Debug)]
pub(super) enum ClientError {
    /// Bad arguments (exit status 2).
    Usage(String),
    /// The agent could not be reached.
    Unreachable { api: String, reason: String },
    /// The agent answered with an error.
    Api {
        status: StatusCode,
        error: ErrorResponse,
    },
    /// Anything else (an unreadable answer, a broken stream).
    Other(String),
    /// Standard output could not be written; a closed pipe is a quiet end
    /// (see [`output`]).
    Output(Closed),
}

impl ClientError {
    pub(super) fn exit_status(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            ClientError::Output(Closed::Pipe) => EXIT_CLOSED,
            _ => 1,
        }
    }

    /// Whether the failure is worth a line on stderr (a reader that went
    /// away is not).
    pub(super) fn is_quiet(&self) -> bool {
        matches!(self, ClientError::Output(Closed::Pipe))
    }
}

impl From<Closed> for ClientError {
    fn from(closed: Closed) -> Self {
        ClientError::Output(closed)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Usage(message) | ClientError::Other(message) => f.write_str(message),
            ClientError::Output(closed) => closed.fmt(f),
            ClientError::Unreachable { api, reason } => write!(
                f,
                "cannot reach the steward API at {api} ({reason}); is `steward run` running? (set --api or STEWARD_API)"
            ),
            ClientError::Api { status, error } => {
                let detail = &error.error;
                if detail.module == crate::api::MODULE {
                    write!(f, "{} ({})", detail.message, status.as_u16())
                } else {
                    write!(
                        f,
                        "{} error {}: {} ({})",
                        detail.module,
                        detail.code,
                        detail.message,
                        status.as_u16()
                    )
                }
            }
        }
    }
}

/// A connection to one agent's API.
pub(super) struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

/// The root cause of a transport error, which is what a user can act on
/// ("Connection refused"), rather than reqwest's outer layers.
fn root_cause(error: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

impl Client {
    pub(super) fn new(api: &str, token_file: Option<&Path>) -> Result<Self, ClientError> {
        let base = api.trim_end_matches('/').to_owned();
        if base.starts_with("https://") {
            return Err(ClientError::Usage(format!(
                "--api {api:?}: the agent serves plain HTTP only; use http://, and reach a remote agent through an SSH tunnel"
            )));
        }
        if !base.starts_with("http://") {
            return Err(ClientError::Usage(format!(
                "--api {api:?} is not an http:// URL (e.g. http://127.0.0.1:7171)"
            )));
        }
        let token = token_file
            .map(|path| {
                read_token_file(path).map_err(|reason| {
                    ClientError::Usage(format!("token file {}: {reason}", path.display()))
                })
            })
            .transpose()?;
        let http = reqwest::Client::builder()
            .build()
            .map_err(|error| ClientError::Other(format!("cannot build an HTTP client: {error}")))?;
        Ok(Self { base, http, token })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| ClientError::Unreachable {
                api: self.base.clone(),
                reason: root_cause(&error),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        match serde_json::from_str::<ErrorResponse>(&text) {
            Ok(error) => Err(ClientError::Api { status, error }),
            Err(_) => Err(ClientError::Other(format!(
                "the API answered {status} without an error body: {}",
                text.trim()
            ))),
        }
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        self.send(method, path, body)
            .await?
            .json()
            .await
            .map_err(|error| ClientError::Other(format!("unreadable answer from the API: {error}")))
    }

    pub(super) async fn status(&self, json: bool) -> Result<(), ClientError> {
        let list: RuntimeList = self
            .request(Method::GET, "/v1/runtimes", None::<&()>)
            .await?;
        let health: Health = self.request(Method::GET, "/healthz", None::<&()>).await?;
        if let Some(store) = &health.store {
            output::eprint_line(&format!(
                "warning: the agent's store refuses writes since {} ({}); calls are served, switches and stored data wait until it works again",
                store.since, store.reason
            ));
        }
        warn_if_disconnected(&health);
        let mut details = Vec::with_capacity(list.runtimes.len());
        for runtime in &list.runtimes {
            let detail: RuntimeDetail = self
                .request(Method::GET, &runtime_path(&runtime.id, ""), None::<&()>)
                .await?;
            details.push(detail);
        }
        let relations: RelationList = self
            .request(Method::GET, "/v1/relations", None::<&()>)
            .await?;
        if json {
            #[derive(Serialize)]
            struct Details<'a> {
                runtimes: &'a [RuntimeDetail],
                relations: &'a [RelationSummary],
            }
            return print_json(&Details {
                runtimes: &details,
                relations: &relations.relations,
            });
        }
        if details.is_empty() {
            output::print_line("no runtimes (the config has none)")?;
            return Ok(());
        }
        output::print(&status_table(&details))?;
        if !relations.relations.is_empty() {
            output::print("\n")?;
            output::print(&relations_table(&relations.relations))?;
        }
        Ok(())
    }

    /// `status RUNTIME`: one runtime in detail, with its versions'
    /// processes.
    pub(super) async fn status_of(&self, runtime: &str, json: bool) -> Result<(), ClientError> {
        let detail: RuntimeDetail = self
            .request(Method::GET, &runtime_path(runtime, ""), None::<&()>)
            .await?;
        if json {
            return print_json(&detail);
        }
        output::print(&detail_text(&detail))?;
        Ok(())
    }

    pub(super) async fn call(
        &self,
        runtime: &str,
        method: &str,
        args: Option<&str>,
    ) -> Result<(), ClientError> {
        // Kept as text: a `serde_json::Value` would round integers beyond
        // 64 bits.
        let args: Option<Box<RawValue>> = args
            .map(|text| {
                serde_json::from_str(text).map_err(|error| {
                    ClientError::Usage(format!(
                        "ARGS_JSON is not valid JSON ({error}); e.g. '{{\"key\": \"a\"}}' or '\"text\"'"
                    ))
                })
            })
            .transpose()?;
        let answer: CallResponse = self
            .request(
                Method::POST,
                &runtime_path(runtime, "call"),
                Some(&CallRequest {
                    method: method.to_owned(),
                    args,
                }),
            )
            .await?;
        print_json(&ExactJson(&answer.result))
    }

    /// `steward set-version`: on one agent, the switch; in a fleet (the
    /// agent's `/healthz` says so), the fleet-wide desired version and
    /// then every live unit's progress towards it.
    pub(super) async fn set_version(
        &self,
        runtime: &str,
        version: &str,
        timeout: Duration,
        wait: bool,
    ) -> Result<(), ClientError> {
        let health: Health = self.request(Method::GET, "/healthz", None::<&()>).await?;
        let in_fleet = health.fleet.is_some();
        let deadline = tokio::time::Instant::now() + timeout;
        let request = VersionRequest {
            version: version.to_owned(),
            // In a fleet the CLI waits for every unit, this agent's too.
            wait: wait && !in_fleet,
        };
        let path = runtime_path(runtime, "version");
        let put = self.request::<VersionResponse>(Method::PUT, &path, Some(&request));
        let answer = match tokio::time::timeout_at(deadline, put).await {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(ClientError::Other(format!(
                    "gave up waiting after {}: the switch of {runtime} to {version} goes on (see `steward status`)",
                    humantime::format_duration(timeout)
                )));
            }
        };
        if !wait {
            let line = match answer.fleet {
                true => format!(
                    "{}: desired version {} across the fleet; `steward fleet status` shows the units",
                    answer.id, answer.version
                ),
                false if answer.done => format!("{}: at {}", answer.id, answer.version),
                false => format!(
                    "{}: desired version {}; the switch goes on (see `steward status`)",
                    answer.id, answer.version
                ),
            };
            output::print_line(&line)?;
            return Ok(());
        }
        if answer.fleet {
            return self.converge(runtime, version, timeout, deadline).await;
        }
        let line = match answer.previous {
            Some(previous) if previous != answer.version => {
                format!("{}: now at {} (was {previous})", answer.id, answer.version)
            }
            _ => format!("{}: at {}", answer.id, answer.version),
        };
        output::print_line(&line)?;
        Ok(())
    }

    /// Waits until every live unit of `runtime` in the fleet serves
    /// `version`, showing how many do: redrawn on a terminal, a line per
    /// change otherwise.
    async fn converge(
        &self,
        runtime: &str,
        version: &str,
        timeout: Duration,
        deadline: tokio::time::Instant,
    ) -> Result<(), ClientError> {
        let terminal = std::io::stdout().is_terminal();
        let path = format!("/v1/fleet?runtime={}", path_segment(runtime));
        let mut shown = None;
        loop {
            let fleet: FleetStatus = self.request(Method::GET, &path, None::<&()>).await?;
            let progress = Progress::of(&fleet.units, version);
            let line = progress.line(runtime, version);
            if shown.as_ref() != Some(&line) {
                match terminal {
                    true => output::print(&format!("\r\x1b[K{line}"))?,
                    false => output::print_line(&line)?,
                }
                shown = Some(line);
            }
            if progress.done() {
                if terminal {
                    output::print("\n")?;
                }
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                if terminal {
                    output::print("\n")?;
                }
                return Err(ClientError::Other(format!(
                    "gave up after {}: {}",
                    humantime::format_duration(timeout),
                    progress.behind_line(runtime, version)
                )));
            }
            tokio::time::sleep(CONVERGE_POLL).await;
        }
    }

    /// `steward fleet status`.
    pub(super) async fn fleet_status(
        &self,
        runtime: Option<&str>,
        json: bool,
    ) -> Result<(), ClientError> {
        let path = match runtime {
            Some(runtime) => format!("/v1/fleet?runtime={}", path_segment(runtime)),
            None => "/v1/fleet".to_owned(),
        };
        let fleet: FleetStatus = self.request(Method::GET, &path, None::<&()>).await?;
        let health: Health = self.request(Method::GET, "/healthz", None::<&()>).await?;
        warn_if_disconnected(&health);
        if json {
            return print_json(&fleet);
        }
        if fleet.units.is_empty() {
            output::print_line("no units in the fleet")?;
            return Ok(());
        }
        output::print(&fleet_table(&fleet.units))?;
        Ok(())
    }

    pub(super) async fn abort(&self, runtime: &str, force: bool) -> Result<(), ClientError> {
        let answer: AbortResponse = self
            .request(
                Method::POST,
                &runtime_path(runtime, "abort"),
                Some(&AbortRequest { force }),
            )
            .await?;
        let line = match answer.outcome {
            AbortOutcome::Abandoned => format!("{}: aborted its work in progress", answer.id),
            AbortOutcome::Killed if answer.force => format!("{}: killed and restarting", answer.id),
            AbortOutcome::Killed => format!(
                "{}: did not abandon its work when asked, so it was killed and is restarting",
                answer.id
            ),
            AbortOutcome::NotRunning => {
                format!("{}: no process was serving; nothing to abort", answer.id)
            }
        };
        output::print_line(&line)?;
        Ok(())
    }

    pub(super) async fn resolve(&self, runtime: &str, retry: bool) -> Result<(), ClientError> {
        let answer: ResolveResponse = self
            .request(
                Method::POST,
                &runtime_path(runtime, "resolve"),
                Some(&ResolveRequest { retry }),
            )
            .await?;
        let line = if answer.retried {
            format!("{}: running hook {:?} again", answer.id, answer.hook)
        } else {
            format!(
                "{}: hook {:?} marked done without running it",
                answer.id, answer.hook
            )
        };
        output::print_line(&line)?;
        Ok(())
    }

    pub(super) async fn events(
        &self,
        runtime: Option<&str>,
        json: bool,
    ) -> Result<(), ClientError> {
        let path = match runtime {
            Some(id) => format!("/v1/events?runtime={}", path_segment(id)),
            None => "/v1/events".to_owned(),
        };
        self.follow(&path, "event", |data| {
            if json {
                return data.to_owned();
            }
            match serde_json::from_str::<AgentEvent>(data) {
                Ok(event) => event.to_line(),
                Err(_) => data.to_owned(),
            }
        })
        .await?;
        Err(ClientError::Other(
            "the agent closed the event stream (it is shutting down)".to_owned(),
        ))
    }

    pub(super) async fn logs(
        &self,
        runtime: &str,
        query: &LogsQuery<'_>,
        json: bool,
    ) -> Result<(), ClientError> {
        let path = format!("{}{}", runtime_path(runtime, "logs"), query.to_query());
        let format = |line: &LogLine| -> Result<String, ClientError> {
            if json {
                serde_json::to_string(line)
                    .map_err(|error| ClientError::Other(format!("cannot print a line: {error}")))
            } else {
                Ok(line.to_line())
            }
        };
        if !query.follow {
            let list: LogList = self.request(Method::GET, &path, None::<&()>).await?;
            for line in &list.lines {
                output::print_line(&format(line)?)?;
            }
            return Ok(());
        }
        self.follow(&path, "line", |data| {
            match serde_json::from_str::<LogLine>(data) {
                Ok(line) if !json => line.to_line(),
                _ => data.to_owned(),
            }
        })
        .await?;
        // The agent ends a log stream when it shuts down, or when the
        // runtime left its config.
        Err(ClientError::Other(format!(
            "the agent closed the log stream of {runtime} (it is shutting down, or {runtime} left its config)"
        )))
    }

    /// Prints each message of the server-sent events at `path` as `print`
    /// makes it, and each `lagged` message as a note on stderr about the
    /// `what`s missed, until the agent ends the stream.
    async fn follow(
        &self,
        path: &str,
        what: &str,
        mut print: impl FnMut(&str) -> String,
    ) -> Result<(), ClientError> {
        let response = self.send(Method::GET, path, None::<&()>).await?;
        let mut stream = response.bytes_stream();
        let mut parser = SseParser::default();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| {
                ClientError::Other(format!("the {what} stream broke: {}", root_cause(&error)))
            })?;
            for message in parser.push(&chunk) {
                match message.event.as_deref() {
                    Some("lagged") => output::eprint_line(&lagged_note(what, &message.data)),
                    _ => output::print_line(&print(&message.data))?,
                }
            }
        }
        Ok(())
    }
}

/// Which lines `steward logs` asks for.
#[derive(Debug, Default)]
pub(super) struct LogsQuery<'a> {
    /// Only this version's.
    pub(super) version: Option<&'a str>,
    /// Only the last this many.
    pub(super) tail: Option<usize>,
    /// Then the new ones, live.
    pub(super) follow: bool,
}

impl LogsQuery<'_> {
    /// `?version=...&tail=...&follow=true` (what is set), or nothing.
    fn to_query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(version) = self.version {
            parts.push(format!("version={}", path_segment(version)));
        }
        if let Some(tail) = self.tail {
            parts.push(format!("tail={tail}"));
        }
        if self.follow {
            parts.push("follow=true".to_owned());
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// `/v1/runtimes/{runtime}`, then `/{tail}` unless `tail` is empty.
fn runtime_path(runtime: &str, tail: &str) -> String {
    let mut path = format!("/v1/runtimes/{}", path_segment(runtime));
    if !tail.is_empty() {
        path.push('/');
        path.push_str(tail);
    }
    path
}

/// Percent-encodes what a path segment cannot hold as is. Runtime ids are
/// `[A-Za-z0-9._-]`, so this only matters for typos, which then get a
/// clean 404 instead of a confusing route.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn print_json(value: &impl Serialize) -> Result<(), ClientError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| ClientError::Other(format!("cannot print the answer: {error}")))?;
    output::print_line(&text)?;
    Ok(())
}

/// The `steward status` table.
/// How often `set-version` reads the fleet's units while it waits.
const CONVERGE_POLL: Duration = Duration::from_millis(200);

/// Says so on stderr when the agent is cut off from the fleet's etcd.
fn warn_if_disconnected(health: &Health) {
    if health.fleet == Some(FleetConnection::Disconnected) {
        output::eprint_line(&format!(
            "warning: fleet: disconnected since {} ({}); this agent serves its last known desired versions and catches up when etcd is back",
            health.fleet_since.as_deref().unwrap_or("?"),
            health.fleet_reason.as_deref().unwrap_or("no answer")
        ));
    }
}

/// How far a fleet-wide switch is: the live units of the runtime, and
/// those not (yet) serving the version.
#[derive(Debug, PartialEq)]
struct Progress {
    total: usize,
    behind: Vec<String>,
}

impl Progress {
    fn of(units: &[FleetUnit], version: &str) -> Self {
        let behind = units
            .iter()
            .filter(|unit| unit.active_version.as_deref() != Some(version))
            .map(|unit| {
                let at = unit.active_version.as_deref().unwrap_or("no version");
                match &unit.error {
                    Some(error) => format!("{} (at {at}: {error})", unit.unit),
                    None => format!("{} (at {at})", unit.unit),
                }
            })
            .collect();
        Self {
            total: units.len(),
            behind,
        }
    }

    /// Every live unit is there (and there is one: a runtime nobody runs
    /// has not converged).
    fn done(&self) -> bool {
        self.total > 0 && self.behind.is_empty()
    }

    fn line(&self, runtime: &str, version: &str) -> String {
        format!(
            "{runtime}: {}/{} units at {version}",
            self.total - self.behind.len(),
            self.total
        )
    }

    fn behind_line(&self, runtime: &str, version: &str) -> String {
        if self.total == 0 {
            return format!("no live unit of {runtime} in the fleet");
        }
        format!(
            "{}; not there: {}",
            self.line(runtime, version),
            self.behind.join(", ")
        )
    }
}

fn fleet_table(units: &[FleetUnit]) -> String {
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    let rows: Vec<Vec<String>> = units
        .iter()
        .map(|unit| {
            vec![
                unit.unit.clone(),
                unit.agent.clone(),
                or_dash(unit.active_version.clone()),
                or_dash(unit.desired_version.clone()),
                or_dash(unit.state.map(|state| state.to_string())),
                or_dash(unit.hooks.map(|hooks| format!("{hooks:?}").to_lowercase())),
                or_dash(unit.last_seen.clone()),
                or_dash(unit.error.clone()),
            ]
        })
        .collect();
    table(
        &[
            "UNIT",
            "AGENT",
            "ACTIVE",
            "DESIRED",
            "STATE",
            "HOOKS",
            "LAST SEEN",
            "ERROR",
        ],
        &rows,
    )
}

fn status_table(details: &[RuntimeDetail]) -> String {
    // The hook columns only when some runtime has hooks: a config without
    // any prints what it always did.
    let with_hooks = details
        .iter()
        .any(|detail| detail.hooks.is_some() || detail.workload.is_some());
    let mut header = vec!["RUNTIME", "ACTIVE", "DESIRED", "STATE"];
    if with_hooks {
        header.extend(["WORKLOAD", "HOOKS"]);
    }
    header.extend(["RESTARTS", "VERSIONS", "LAST ERROR"]);
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    let rows: Vec<Vec<String>> = details
        .iter()
        .map(|detail| {
            let summary = &detail.summary;
            let mut row = vec![
                summary.id.clone(),
                or_dash(summary.active_version.clone()),
                or_dash(summary.desired_version.clone()),
                summary.state.to_string(),
            ];
            if with_hooks {
                row.push(or_dash(detail.workload.as_ref().map(workload_cell)));
                row.push(or_dash(detail.hooks.as_ref().map(hooks_cell)));
            }
            row.extend([
                detail.restarts.to_string(),
                summary.versions.join(","),
                or_dash(detail.last_error.clone()),
            ]);
            row
        })
        .collect();
    table(&header, &rows)
}

/// The relations under `steward status`: each relation's ends with their
/// units.
fn relations_table(relations: &[RelationSummary]) -> String {
    let rows: Vec<Vec<String>> = relations
        .iter()
        .map(|relation| {
            let ends: Vec<String> = relation
                .endpoints
                .iter()
                .map(|end| match end.units.is_empty() {
                    true => format!("{}:{} (no units)", end.runtime, end.endpoint),
                    false => format!(
                        "{}:{} ({})",
                        end.runtime,
                        end.endpoint,
                        end.units.join(", ")
                    ),
                })
                .collect();
            let ends = match relation.peer {
                true => format!("{} (peer)", ends.join(" <-> ")),
                false => ends.join(" <-> "),
            };
            vec![relation.id.to_string(), relation.state.to_string(), ends]
        })
        .collect();
    table(&["RELATION", "STATE", "ENDPOINTS (UNITS)"], &rows)
}

/// Rows under a header, each column as wide as its widest cell, two
/// spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
    };
    line(header);
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// The `steward status RUNTIME` text: the runtime's fields, one a line,
/// then a table of its versions with the pid and uptime of each that runs.
fn detail_text(detail: &RuntimeDetail) -> String {
    let summary = &detail.summary;
    let or_dash = |value: Option<&str>| value.unwrap_or("-").to_owned();
    let mut fields = vec![
        ("runtime", summary.id.clone()),
        ("state", summary.state.to_string()),
        ("active", or_dash(summary.active_version.as_deref())),
        ("desired", or_dash(summary.desired_version.as_deref())),
        ("transition", detail.transition.as_str().to_owned()),
        ("restarts", detail.restarts.to_string()),
        ("last error", or_dash(detail.last_error.as_deref())),
    ];
    if let Some(workload) = &detail.workload {
        fields.push(("workload", workload_cell(workload)));
    }
    if let Some(hooks) = &detail.hooks {
        fields.push(("hooks", hooks_cell(hooks)));
    }
    let mut out = String::new();
    for (name, value) in fields {
        out.push_str(&format!("{:<12}{value}\n", format!("{name}:")));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = summary
        .versions
        .iter()
        .map(|version| {
            let active = summary.active_version.as_deref() == Some(version.as_str());
            let process = detail.processes.iter().find(|p| p.version == *version);
            vec![
                version.clone(),
                if active { "active" } else { "-" }.to_owned(),
                process.map_or("-".to_owned(), |p| p.pid.to_string()),
                process.map_or("-".to_owned(), |p| uptime(p.uptime_ms)),
                process.map_or("-".to_owned(), |p| p.started_at.clone()),
            ]
        })
        .collect();
    out.push_str(&table(
        &["VERSION", "ROLE", "PID", "UPTIME", "STARTED"],
        &rows,
    ));
    out
}

/// An uptime for people, to the second: `3h 2m 1s`.
fn uptime(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
}

/// `active: ready` (or just `active` without a message).
fn workload_cell(workload: &Workload) -> String {
    if workload.message.is_empty() {
        workload.status.to_string()
    } else {
        format!("{}: {}", workload.status, workload.message)
    }
}

/// `idle`, `running: install`, `error: hook failed: "install"`.
fn hooks_cell(hooks: &Hooks) -> String {
    match (hooks.state, &hooks.hook, &hooks.message) {
        (HooksState::Idle, _, _) => "idle".to_owned(),
        (HooksState::Running, Some(hook), _) => format!("running: {hook}"),
        (HooksState::Error, _, Some(message)) => format!("error: {message}"),
        (HooksState::Error, Some(hook), None) => format!("error: hook failed: {hook:?}"),
        (state, _, _) => format!("{state:?}").to_lowercase(),
    }
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq)]
struct SseMessage {
    event: Option<String>,
    data: String,
}

/// Splits a server-sent-events byte stream into messages (the parts of
/// the format the agent uses: `event:`, `data:`, comments, blank lines).
#[derive(Default)]
struct SseParser {
    buffer: Vec<u8>,
    current: SseMessage,
    has_data: bool,
}

impl SseParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.buffer.extend_from_slice(chunk);
        let mut messages = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data {
                    messages.push(std::mem::take(&mut self.current));
                    self.has_data = false;
                }
                self.current = SseMessage::default();
            } else if line.starts_with(':') {
                // A comment (keep-alive).
            } else if let Some(data) = line.strip_prefix("data:") {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current
                    .data
                    .push_str(data.strip_prefix(' ').unwrap_or(data));
                self.has_data = true;
            } else if let Some(event) = line.strip_prefix("event:") {
                self.current.event = Some(event.trim_start().to_owned());
            }
        }
        messages
    }
}

/// What a follower prints when the agent says it fell behind: the data
/// is `{"missed": N}`; anything else is shown as it came.
fn lagged_note(what: &str, data: &str) -> String {
    match serde_json::from_str::<Lagged>(data) {
        Ok(Lagged { missed: 1 }) => format!("(fell behind: missed 1 {what})"),
        Ok(Lagged { missed }) => format!("(fell behind: missed {missed} {what}s)"),
        Err(_) => format!("(fell behind: missed {what}s: {data})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lagged_message_says_how_many_were_missed() {
        assert_eq!(
            lagged_note("line", r#"{"missed":3}"#),
            "(fell behind: missed 3 lines)"
        );
        assert_eq!(
            lagged_note("event", r#"{"missed":1}"#),
            "(fell behind: missed 1 event)"
        );
        assert_eq!(
            lagged_note("event", "garbled"),
            "(fell behind: missed events: garbled)"
        );
    }
    use crate::api::types::{
        RelationEnd, RelationLife, RuntimeState, RuntimeSummary, Transition, WorkloadState,
    };

    fn unit(name: &str, active: Option<&str>, error: Option<&str>) -> FleetUnit {
        FleetUnit {
            unit: name.to_owned(),
            agent: name.split('/').nth(1).unwrap().to_owned(),
            runtime: name.split('/').next().unwrap().to_owned(),
            active_version: active.map(str::to_owned),
            desired_version: Some("2.0.0".to_owned()),
            state: Some(RuntimeState::Running),
            hooks: None,
            error: error.map(str::to_owned),
            last_seen: None,
        }
    }

    #[test]
    fn progress_counts_the_units_at_the_version_and_names_the_others() {
        let units = [
            unit("echo/a1", Some("2.0.0"), None),
            unit(
                "echo/a2",
                Some("1.0.0"),
                Some("runtime echo has no version \"2.0.0\""),
            ),
            unit("echo/a3", None, None),
        ];
        let progress = Progress::of(&units, "2.0.0");
        assert!(!progress.done());
        assert_eq!(progress.line("echo", "2.0.0"), "echo: 1/3 units at 2.0.0");
        assert_eq!(
            progress.behind_line("echo", "2.0.0"),
            "echo: 1/3 units at 2.0.0; not there: echo/a2 (at 1.0.0: runtime echo has no version \"2.0.0\"), echo/a3 (at no version)"
        );
        let there = Progress::of(&units[..1], "2.0.0");
        assert!(there.done());
        assert_eq!(there.line("echo", "2.0.0"), "echo: 1/1 units at 2.0.0");
    }

    #[test]
    fn a_runtime_without_live_units_has_not_converged() {
        let progress = Progress::of(&[], "2.0.0");
        assert!(!progress.done());
        assert_eq!(
            progress.behind_line("echo", "2.0.0"),
            "no live unit of echo in the fleet"
        );
    }

    #[test]
    fn fleet_table_has_a_row_per_unit() {
        let table = fleet_table(&[unit("echo/a1", Some("2.0.0"), None)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(lines[0].starts_with("UNIT"), "{table}");
        assert!(
            lines[1]
                .split_whitespace()
                .eq(["echo/a1", "a1", "2.0.0", "2.0.0", "running", "-", "-", "-"]),
            "{table}"
        );
    }

    #[test]
    fn logs_query_has_only_what_is_set_and_encodes_the_version() {
        assert_eq!(LogsQuery::default().to_query(), "");
        let query = LogsQuery {
            version: Some("1.0 beta"),
            tail: Some(5),
            follow: true,
        };
        assert_eq!(query.to_query(), "?version=1.0%20beta&tail=5&follow=true");
        let query = LogsQuery {
            tail: Some(0),
            ..LogsQuery::default()
        };
        assert_eq!(query.to_query(), "?tail=0");
    }

    #[test]
    fn sse_parser_handles_split_chunks_comments_and_named_events() {
        let mut parser = SseParser::default();
        assert!(parser.push(b": keep-alive\n\ndata: {\"a\"").is_empty());
        let messages = parser.push(b":1}\n\nevent: lagged\ndata: {\"missed\":3}\n\n");
        assert_eq!(
            messages,
            vec![
                SseMessage {
                    event: None,
                    data: "{\"a\":1}".to_owned()
                },
                SseMessage {
                    event: Some("lagged".to_owned()),
                    data: "{\"missed\":3}".to_owned()
                },
            ]
        );
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("echo-1.0_x"), "echo-1.0_x");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn status_table_aligns_columns() {
        let detail = |id: &str, error: Option<&str>| RuntimeDetail {
            summary: RuntimeSummary {
                id: id.to_owned(),
                active_version: Some("1.0.0".to_owned()),
                desired_version: Some("1.0.0".to_owned()),
                versions: vec!["1.0.0".to_owned(), "2.0.0".to_owned()],
                state: RuntimeState::Running,
            },
            transition: Transition::MakeBeforeBreak,
            call_timeout_ms: 30_000,
            info: None,
            restarts: 0,
            last_error: error.map(str::to_owned),
            started_at: None,
            processes: Vec::new(),
            workload: None,
            hooks: None,
            relations: Vec::new(),
        };
        let table = status_table(&[detail("echo", None), detail("kv-store", Some("boom"))]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with(
                "RUNTIME   ACTIVE  DESIRED  STATE    RESTARTS  VERSIONS     LAST ERROR"
            )
        );
        assert!(
            lines[1].starts_with("echo      1.0.0   1.0.0    running  0         1.0.0,2.0.0  -")
        );
        assert!(lines[2].ends_with("boom"));
    }

    #[test]
    fn relations_table_shows_each_end_with_its_units() {
        let end = |runtime: &str, endpoint: &str, units: &[&str]| RelationEnd {
            runtime: runtime.to_owned(),
            endpoint: endpoint.to_owned(),
            units: units.iter().map(|unit| (*unit).to_owned()).collect(),
        };
        let table = relations_table(&[
            RelationSummary {
                id: 0,
                state: RelationLife::Alive,
                peer: false,
                endpoints: vec![
                    end("web", "db", &["web/a1"]),
                    end("kv", "store", &["kv/a1"]),
                ],
            },
            RelationSummary {
                id: 12,
                state: RelationLife::Dying,
                peer: false,
                endpoints: vec![end("web", "cache", &[]), end("kv", "peer", &["kv/a1"])],
            },
            RelationSummary {
                id: 13,
                state: RelationLife::Alive,
                peer: true,
                endpoints: vec![end("kv", "cluster", &["kv/a1", "kv/a2"])],
            },
        ]);
        assert_eq!(
            table,
            "RELATION  STATE  ENDPOINTS (UNITS)\n\
             0         alive  web:db (web/a1) <-> kv:store (kv/a1)\n\
             12        dying  web:cache (no units) <-> kv:peer (kv/a1)\n\
             13        alive  kv:cluster (kv/a1, kv/a2) (peer)\n"
        );
    }

    #[test]
    fn status_of_a_runtime_shows_each_version_with_its_process() {
        let detail = RuntimeDetail {
            summary: RuntimeSummary {
                id: "echo".to_owned(),
                active_version: Some("2.0.0".to_owned()),
                desired_version: Some("2.0.0".to_owned()),
                versions: vec!["1.0.0".to_owned(), "2.0.0".to_owned()],
                state: RuntimeState::Running,
            },
            transition: Transition::MakeBeforeBreak,
            call_timeout_ms: 30_000,
            info: None,
            restarts: 2,
            last_error: Some("version 2.0.0 exited: crashed".to_owned()),
            started_at: None,
            processes: vec![crate::api::types::VersionProcess {
                version: "2.0.0".to_owned(),
                pid: 4242,
                started_at: "2026-11-21T14:45:12.423Z".to_owned(),
                uptime_ms: 3_723_999,
            }],
            workload: None,
            hooks: None,
            relations: Vec::new(),
        };
        let text = detail_text(&detail);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "runtime:    echo", "{text}");
        assert!(lines.contains(&"restarts:   2"), "{text}");
        assert!(
            lines.contains(&"last error: version 2.0.0 exited: crashed"),
            "{text}"
        );
        let header = lines
            .iter()
            .position(|line| line.starts_with("VERSION"))
            .unwrap();
        assert_eq!(
            lines[header], "VERSION  ROLE    PID   UPTIME    STARTED",
            "{text}"
        );
        assert_eq!(lines[header + 1], "1.0.0    -       -     -         -");
        assert_eq!(
            lines[header + 2],
            "2.0.0    active  4242  1h 2m 3s  2026-11-21T14:45:12.423Z"
        );
    }

    #[test]
    fn status_table_shows_hooks_when_a_runtime_has_them() {
        let plain = RuntimeDetail {
            summary: RuntimeSummary {
                id: "echo".to_owned(),
                active_version: Some("1.0.0".to_owned()),
                desired_version: Some("1.0.0".to_owned()),
                versions: vec!["1.0.0".to_owned()],
                state: RuntimeState::Running,
            },
            transition: Transition::MakeBeforeBreak,
            call_timeout_ms: 30_000,
            info: None,
            restarts: 0,
            last_error: None,
            started_at: None,
            processes: Vec::new(),
            workload: None,
            hooks: None,
            relations: Vec::new(),
        };
        let hooked = |id: &str, hooks: Hooks, workload: Option<Workload>| RuntimeDetail {
            summary: RuntimeSummary {
                id: id.to_owned(),
                ..plain.summary.clone()
            },
            workload,
            hooks: Some(hooks),
            ..plain.clone()
        };
        let hooks = |state, hook: Option<&str>, message: Option<&str>| Hooks {
            state,
            hook: hook.map(str::to_owned),
            message: message.map(str::to_owned),
            installed: true,
            last: None,
        };
        let table = status_table(&[
            plain.clone(),
            hooked(
                "web",
                hooks(HooksState::Running, Some("install"), None),
                Some(Workload {
                    status: WorkloadState::Maintenance,
                    message: "installing".to_owned(),
                }),
            ),
            hooked(
                "db",
                hooks(
                    HooksState::Error,
                    Some("config-changed"),
                    Some("hook \"config-changed\" failed: exit status 1"),
                ),
                Some(Workload {
                    status: WorkloadState::Active,
                    message: String::new(),
                }),
            ),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0]
                .starts_with("RUNTIME  ACTIVE  DESIRED  STATE    WORKLOAD                 HOOKS"),
            "{table}"
        );
        assert!(lines[1].contains(" -  "), "{table}");
        assert!(
            lines[2].contains("maintenance: installing  running: install"),
            "{table}"
        );
        assert!(lines[3].contains("active  "), "{table}");
        assert!(
            lines[3].contains("error: hook \"config-changed\" failed: exit status 1"),
            "{table}"
        );
    }
}
