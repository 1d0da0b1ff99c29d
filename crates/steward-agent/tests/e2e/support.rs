//! Shared helpers of the `steward` end-to-end tests: start an agent (the
//! real binary, on a free port, in its own data dir), talk to its API and
//! its CLI, find its runtime processes, and wait for observable conditions
//! with deadlines.
//!
//! Every [`Agent`] is killed (SIGKILL) and reaped when dropped, together
//! with its runtime processes, so a failing test leaks nothing; a failing
//! test also prints the agent's output (every test does when the
//! environment variable `STEWARD_E2E_LOGS` is set).

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The `steward` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_steward");

/// How long anything that should be quick may take on a loaded machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(50);

/// Environment variables of the test's own environment that would change
/// what the binary does; removed from every child.
pub const SCRUBBED_ENV: &[&str] = &[
    "STEWARD_API",
    "STEWARD_TOKEN_FILE",
    "STEWARD_LOG",
    "RUST_LOG",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Polls `check` every 50 ms until it returns `Some`, for at most
/// `timeout`; panics naming `what` if it never does.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// How to start an agent.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--config`; `None` runs the demo config.
    pub config: Option<PathBuf>,
    /// `--listen`.
    pub listen: String,
    /// `--token-file`.
    pub token_file: Option<PathBuf>,
    /// `--max-request-bytes`.
    pub max_request_bytes: Option<usize>,
    /// `--name`.
    pub name: Option<String>,
    /// More environment variables for the agent.
    pub env: Vec<(String, String)>,
    /// `--http-timeout`.
    pub http_timeout: Option<String>,
    /// The agent's limit of open files (soft and hard, as `ulimit -n`).
    pub open_files: Option<u64>,
    /// `--fleet`: etcd's client URL.
    pub fleet: Option<String>,
    /// More arguments for `steward run` (e.g. `--fleet URL`).
    pub args: Vec<String>,
}

impl Options {
    /// The demo config on 127.0.0.1:0 with its store in `data_dir`.
    pub fn demo(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            config: None,
            listen: "127.0.0.1:0".to_owned(),
            token_file: None,
            max_request_bytes: None,
            name: None,
            env: Vec::new(),
            http_timeout: None,
            open_files: None,
            fleet: None,
            args: Vec::new(),
        }
    }

    /// `config` on 127.0.0.1:0 with its store in `data_dir`.
    pub fn with_config(data_dir: &Path, config: &Path) -> Self {
        Self {
            config: Some(config.to_path_buf()),
            ..Self::demo(data_dir)
        }
    }

    /// The `steward run …` command line.
    pub fn command(&self) -> Command {
        let mut command = match self.open_files {
            // The shell sets the limit and becomes the agent (same pid).
            Some(limit) => {
                let mut shell = Command::new("/bin/sh");
                shell
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(BIN);
                shell
            }
            None => Command::new(BIN),
        };
        command.arg("run").arg("--data-dir").arg(&self.data_dir);
        command.arg("--listen").arg(&self.listen);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        if let Some(token_file) = &self.token_file {
            command.arg("--token-file").arg(token_file);
        }
        if let Some(max) = self.max_request_bytes {
            command.arg("--max-request-bytes").arg(max.to_string());
        }
        if let Some(name) = &self.name {
            command.arg("--name").arg(name);
        }
        if let Some(timeout) = &self.http_timeout {
            command.arg("--http-timeout").arg(timeout);
        }
        if let Some(fleet) = &self.fleet {
            command.arg("--fleet").arg(fleet);
        }
        command.args(&self.args);
        for name in SCRUBBED_ENV {
            command.env_remove(name);
        }
        command.env("STEWARD_LOG", "info");
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command
    }

    /// Runs `steward run …` that must exit at once (a start error), within
    /// the deadline; `why` says why it must (for the failure message).
    pub async fn run_to_exit(&self, why: &str) -> std::process::Output {
        let mut command = self.command();
        tokio::time::timeout(
            DEADLINE,
            tokio::task::spawn_blocking(move || command.output()),
        )
        .await
        .unwrap_or_else(|_| panic!("{why}"))
        .unwrap()
        .unwrap()
    }
}

/// Text a reader thread collects from a child's pipe.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<String>>);

impl Captured {
    /// Everything read so far.
    pub fn text(&self) -> String {
        lock(&self.0).clone()
    }

    /// Starts a thread appending `pipe` line by line; `on_line` sees each.
    /// The returned receiver gets a message (or disconnects) at the end of
    /// the pipe.
    fn drain(
        &self,
        pipe: impl Read + Send + 'static,
        mut on_line: impl FnMut(&str) + Send + 'static,
    ) -> std::sync::mpsc::Receiver<()> {
        let buffer = self.0.clone();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        lock(&buffer).push_str(&text);
                        on_line(text.trim_end());
                    }
                }
            }
            let _ = done.send(());
        });
        finished
    }
}

/// A `steward run` child process, killed when dropped.
pub struct Agent {
    child: Child,
    /// The agent's pid.
    pub pid: u32,
    /// The API's base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// How it was started.
    pub options: Options,
    /// The agent's stdout so far.
    pub stdout: Captured,
    /// The agent's stderr (its logs) so far.
    pub stderr: Captured,
    /// An API client (with the token, if the agent has one).
    pub api: Api,
    exit: Option<ExitStatus>,
}

impl Agent {
    /// Starts an agent and waits for its banner (not for its runtimes).
    pub async fn start(options: Options) -> Agent {
        let mut command = options.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("cannot spawn `steward run`");
        let pid = child.id();
        let stdout = Captured::default();
        let stderr = Captured::default();
        let (url_sender, url_receiver) = tokio::sync::oneshot::channel::<String>();
        let mut url_sender = Some(url_sender);
        stdout.drain(child.stdout.take().expect("piped stdout"), move |line| {
            if let Some((_, url)) = line.split_once("control API on ")
                && let Some(sender) = url_sender.take()
            {
                let _ = sender.send(url.trim().to_owned());
            }
        });
        stderr.drain(child.stderr.take().expect("piped stderr"), |_| {});
        let token = options.token_file.as_ref().map(|file| {
            std::fs::read_to_string(file)
                .expect("cannot read the token file")
                .trim()
                .to_owned()
        });
        let mut agent = Agent {
            child,
            pid,
            url: String::new(),
            options,
            stdout,
            stderr,
            api: Api::new("http://0.0.0.0:0", None),
            exit: None,
        };
        match tokio::time::timeout(DEADLINE, url_receiver).await {
            Ok(Ok(url)) => {
                agent.api = Api::new(&url, token);
                agent.url = url;
                agent
            }
            _ => panic!(
                "the agent printed no `control API on` line (exit status {:?})",
                agent.child.try_wait().ok().flatten()
            ),
        }
    }

    /// Starts the demo config in `data_dir` and waits until `echo` and `kv`
    /// run.
    pub async fn demo(data_dir: &Path) -> Agent {
        let agent = Agent::start(Options::demo(data_dir)).await;
        agent.wait_running(&["echo", "kv"]).await;
        agent
    }

    /// Waits until each of `ids` is listed, `running`, with an active
    /// version; returns the list.
    pub async fn wait_running(&self, ids: &[&str]) -> Value {
        let what = format!("runtimes {ids:?} running with an active version");
        eventually(&what, DEADLINE, || async move {
            let (status, list) = self.api.get("/v1/runtimes").await;
            if status != StatusCode::OK {
                return None;
            }
            ids.iter()
                .all(|id| {
                    find_runtime(&list, id).is_some_and(|runtime| {
                        runtime["state"] == "running" && runtime["active_version"].is_string()
                    })
                })
                .then_some(list)
        })
        .await
    }

    /// Waits until runtime `id` is running with `version` active.
    pub async fn wait_active(&self, id: &str, version: &str) -> Value {
        let what = format!("runtime {id} running at {version}");
        eventually(&what, DEADLINE, || async move {
            let (status, detail) = self.api.get(&format!("/v1/runtimes/{id}")).await;
            (status == StatusCode::OK
                && detail["state"] == "running"
                && detail["active_version"] == version)
                .then_some(detail)
        })
        .await
    }

    /// Waits until the agent's stdout contains `needle`.
    pub async fn wait_stdout(&self, needle: &str) -> String {
        let what = format!("agent stdout containing {needle:?}");
        eventually(&what, DEADLINE, || async move {
            let text = self.stdout.text();
            text.contains(needle).then_some(text)
        })
        .await
    }

    /// Waits until the agent's stderr contains `needle`.
    pub async fn wait_stderr(&self, needle: &str) -> String {
        let what = format!("agent stderr containing {needle:?}");
        eventually(&what, DEADLINE, || async move {
            let text = self.stderr.text();
            text.contains(needle).then_some(text)
        })
        .await
    }

    /// The pids of the agent's runtime processes (children running
    /// `example-runtime`), optionally only those of example runtime `name`.
    pub fn runtime_pids(&self, name: Option<&str>) -> Vec<u32> {
        runtime_children(self.pid, name)
    }

    /// The one process of example runtime `name` (panics if there is not
    /// exactly one).
    pub fn runtime_pid(&self, name: &str) -> u32 {
        let pids = self.runtime_pids(Some(name));
        assert_eq!(
            pids.len(),
            1,
            "expected exactly one {name} process under the agent, found {pids:?}"
        );
        pids[0]
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: Signal) {
        send_signal(self.pid, signal);
    }

    /// Sends `signal` and waits (at most `timeout`) for the agent to exit.
    pub async fn stop_with(&mut self, signal: Signal, timeout: Duration) -> ExitStatus {
        self.signal(signal);
        self.wait_exit(timeout).await
    }

    /// Waits (at most `timeout`) for the agent to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let child = &mut self.child;
        let status = eventually("the agent to exit", timeout, || {
            let status = child.try_wait().expect("cannot wait for the agent");
            async move { status }
        })
        .await;
        self.exit = Some(status);
        status
    }

    /// Runs the CLI against this agent: `--api URL` (and `--token-file`
    /// when the agent has one) followed by `args`.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        let mut full: Vec<String> = vec!["--api".to_owned(), self.url.clone()];
        if let Some(file) = &self.options.token_file {
            full.push("--token-file".to_owned());
            full.push(file.display().to_string());
        }
        full.extend(args.iter().map(|&arg| arg.to_owned()));
        cli(&full, &[]).await
    }

    /// Starts `steward --api URL <args>` with piped stdout, for commands
    /// that run until killed (`events`).
    pub fn cli_streaming(&self, args: &[&str]) -> StreamingCli {
        let mut command = cli_command(&[]);
        command.arg("--api").arg(&self.url);
        if let Some(file) = &self.options.token_file {
            command.arg("--token-file").arg(file);
        }
        command.args(args);
        StreamingCli::spawn(command)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let runtimes = runtime_children(self.pid, None);
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Runtimes orphaned by the kill exit when their connection closes;
        // do not rely on it here.
        for pid in runtimes {
            if is_runtime_process(pid) {
                send_signal(pid, Signal::SIGKILL);
            }
        }
        if std::thread::panicking() || std::env::var_os("STEWARD_E2E_LOGS").is_some() {
            eprintln!(
                "----- agent {} (pid {}) stdout -----\n{}\n----- agent stderr -----\n{}\n----- end of agent output -----",
                self.url,
                self.pid,
                self.stdout.text(),
                self.stderr.text()
            );
        }
    }
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub fn send_signal(pid: u32, signal: Signal) {
    let pid = i32::try_from(pid).expect("pid fits in i32");
    let _ = kill(Pid::from_raw(pid), signal);
}

/// The runtime `id` in a `GET /v1/runtimes` answer.
pub fn find_runtime<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["runtimes"]
        .as_array()?
        .iter()
        .find(|runtime| runtime["id"] == id)
}

/// The ids in a `GET /v1/runtimes` answer.
pub fn runtime_ids(list: &Value) -> BTreeSet<String> {
    list["runtimes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|runtime| runtime["id"].as_str().map(str::to_owned))
        .collect()
}

// ----- processes -----

/// A process's parent pid and state letter, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid …"; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// A process's command line, split at NULs (empty once it is gone).
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` is a live (not zombie) `steward example-runtime` process.
fn is_runtime_process(pid: u32) -> bool {
    !is_gone(pid) && cmdline(pid).iter().any(|arg| arg == "example-runtime")
}

/// Whether `pid` no longer runs: no such process, or a zombie (an orphan
/// whose new parent has not reaped it yet).
pub fn is_gone(pid: u32) -> bool {
    match proc_stat(pid) {
        None => true,
        Some((_, state)) => matches!(state, 'Z' | 'X' | 'x'),
    }
}

/// The live children of `parent` running `example-runtime [name]`.
pub fn runtime_children(parent: u32, name: Option<&str>) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            matches!(proc_stat(pid), Some((ppid, state)) if ppid == parent && !matches!(state, 'Z' | 'X' | 'x'))
        })
        .filter(|&pid| {
            let args = cmdline(pid);
            let Some(at) = args.iter().position(|arg| arg == "example-runtime") else {
                return false;
            };
            name.is_none_or(|name| args.get(at + 1).is_some_and(|arg| arg == name))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Waits until every one of `pids` is gone (or a zombie).
pub async fn wait_gone(pids: &[u32], timeout: Duration) {
    let what = format!("processes {pids:?} to exit");
    eventually(&what, timeout, || async move {
        pids.iter().all(|&pid| is_gone(pid)).then_some(())
    })
    .await;
}

// ----- HTTP -----

/// A JSON client of one agent's API.
#[derive(Debug, Clone)]
pub struct Api {
    /// The base URL.
    pub base: String,
    http: reqwest::Client,
    token: Option<String>,
}

/// The timeout of one ordinary (non-streaming) request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl Api {
    /// A client of the API at `base`, presenting `token` if any.
    pub fn new(base: &str, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("cannot build an HTTP client");
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            token,
        }
    }

    /// The same API with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// A request builder for `path`, with the token.
    pub fn builder(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends a request with an optional raw body; returns the status, the
    /// `Content-Type` and the body text.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, String, String) {
        let mut request = self.builder(method.clone(), path).timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        answer_parts(response, &format!("{method} {path}")).await
    }

    /// Sends a request with an optional JSON body; returns the status and
    /// the JSON answer (panics if the answer is not JSON).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|body| serde_json::to_vec(&body).expect("serializable body"));
        let (status, _, text) = self.raw(method.clone(), path, body).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|error| {
            panic!("{method} {path} answered {status} with non-JSON {text:?}: {error}")
        });
        (status, value)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.json(Method::GET, path, None).await
    }

    /// `GET /v1/runtimes/{id}`, which must succeed.
    pub async fn detail(&self, id: &str) -> Value {
        let (status, detail) = self.get(&format!("/v1/runtimes/{id}")).await;
        assert_eq!(status, StatusCode::OK, "GET /v1/runtimes/{id}: {detail}");
        detail
    }

    /// `GET /v1/runtimes`, which must succeed.
    pub async fn list(&self) -> Value {
        let (status, list) = self.get("/v1/runtimes").await;
        assert_eq!(status, StatusCode::OK, "GET /v1/runtimes: {list}");
        list
    }

    /// `POST /v1/runtimes/{id}/call`: the result, or the status and body of
    /// the error.
    pub async fn call(
        &self,
        id: &str,
        method: &str,
        args: Value,
    ) -> Result<Value, (StatusCode, Value)> {
        let (status, body) = self
            .json(
                Method::POST,
                &format!("/v1/runtimes/{id}/call"),
                Some(json!({ "method": method, "args": args })),
            )
            .await;
        if status == StatusCode::OK {
            Ok(body["result"].clone())
        } else {
            Err((status, body))
        }
    }

    /// A call that must succeed.
    pub async fn call_ok(&self, id: &str, method: &str, args: Value) -> Value {
        self.call(id, method, args)
            .await
            .unwrap_or_else(|(status, body)| {
                panic!("call {id}.{method} failed with {status}: {body}")
            })
    }

    /// `PUT /v1/runtimes/{id}/version`.
    pub async fn set_version(&self, id: &str, version: &str) -> (StatusCode, Value) {
        self.json(
            Method::PUT,
            &format!("/v1/runtimes/{id}/version"),
            Some(json!({ "version": version })),
        )
        .await
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        let (status, _, text) = self.raw(Method::GET, "/metrics", None).await;
        assert_eq!(status, StatusCode::OK, "GET /metrics: {text}");
        text
    }

    /// Opens `GET path` as an event stream (once this returns, the agent
    /// has subscribed: later events are seen).
    pub async fn events(&self, path: &str) -> EventStream {
        let response = self
            .builder(Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("text/event-stream"),
            "GET {path}: content type {content_type:?}"
        );
        EventStream {
            response,
            buffer: Vec::new(),
            data: None,
        }
    }
}

/// A config of the demo's `echo` and `kv` (no hooks: each is in its
/// relations from the start), `kv` with a peer relation `cluster` and no
/// log lines kept (`log-lines = 0`), and, when `related`, the relation
/// `echo:client` – `kv:store`.
pub fn demo_relations_config(related: bool) -> String {
    let command = serde_json::to_string(BIN).unwrap();
    let mut text = String::new();
    for (id, versions) in [("echo", ["1.0.0", "2.0.0"]), ("kv", ["1.0.0", "1.1.0"])] {
        text.push_str(&format!("[[runtime]]\nid = \"{id}\"\nactive = \"1.0.0\"\n"));
        if id == "kv" {
            text.push_str("log-lines = 0\n[[runtime.peer]]\nname = \"cluster\"\n");
        }
        for version in versions {
            text.push_str(&format!(
                "[[runtime.version]]\nversion = \"{version}\"\ncommand = {command}\nargs = [\"example-runtime\", \"{id}\", \"--version\", \"{version}\"]\n"
            ));
        }
        text.push('\n');
    }
    if related {
        text.push_str("[[relation]]\nendpoints = [\"echo:client\", \"kv:store\"]\n");
    }
    text
}

/// The value of a metric sample line `name{labels} value` whose labels
/// include every one of `labels` (e.g. `runtime="echo"`).
pub fn metric_value(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (labelled, value) = rest.rsplit_once(' ')?;
        if !(labelled.is_empty() || labelled.starts_with('{')) {
            return None; // another metric with this prefix
        }
        labels
            .iter()
            .all(|label| labelled.contains(label))
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// A server-sent-events stream of the API, read one JSON event at a time.
pub struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    data: Option<String>,
}

impl EventStream {
    /// The next event's data, parsed as JSON; `None` when the stream ends
    /// or `timeout` passes first.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if let Some(data) = self.data.take() {
                        return Some(serde_json::from_str(&data).unwrap_or_else(|error| {
                            panic!("event data is not JSON: {data:?}: {error}")
                        }));
                    }
                } else if let Some(data) = line.strip_prefix("data:") {
                    let data = data.strip_prefix(' ').unwrap_or(data);
                    match &mut self.data {
                        Some(existing) => {
                            existing.push('\n');
                            existing.push_str(data);
                        }
                        None => self.data = Some(data.to_owned()),
                    }
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// Whether the agent ends the stream within `timeout` (events still
    /// arriving are skipped).
    pub async fn ended(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return false,
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None) | Err(_)) => return true,
            }
        }
    }

    /// Reads events until one satisfies `done`; returns every event read,
    /// that one last. Panics when `timeout` passes first.
    pub async fn until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(event) => {
                    let finished = done(&event);
                    seen.push(event);
                    if finished {
                        return seen;
                    }
                }
                None => panic!("the awaited event did not come within {timeout:?}; saw {seen:#?}"),
            }
        }
    }
}

// ----- CLI -----

/// What a finished CLI run printed, and its exit code.
#[derive(Debug)]
pub struct CliOutput {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl CliOutput {
    /// Asserts exit code 0 and returns stdout.
    pub fn success(&self) -> &str {
        assert_eq!(self.code, Some(0), "the command failed: {self:#?}");
        &self.stdout
    }

    /// Asserts exit code `code` with exactly one stderr line, starting
    /// with `error:`; returns that line.
    pub fn one_line_error(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "unexpected exit code: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one stderr line: {self:#?}");
        assert!(lines[0].starts_with("error: "), "stderr: {self:#?}");
        lines[0]
    }
}

fn cli_command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.stdin(Stdio::null());
    command
}

/// Runs `steward <args>` with extra environment `env` to completion (at
/// most 60 s).
pub async fn cli(args: &[String], env: &[(&str, &str)]) -> CliOutput {
    let mut command = cli_command(env);
    command.args(args);
    let shown = format!("steward {}", args.join(" "));
    tokio::task::spawn_blocking(move || run_to_end(command, &shown, Duration::from_secs(60)))
        .await
        .expect("the CLI runner panicked")
}

/// [`cli`] with `&str` arguments.
pub async fn cli_str(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let args: Vec<String> = args.iter().map(|&arg| arg.to_owned()).collect();
    cli(&args, env).await
}

/// Runs `command` to completion, killing it after `timeout`.
fn run_to_end(mut command: Command, shown: &str, timeout: Duration) -> CliOutput {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {shown}: {error}"));
    let stdout = Captured::default();
    let stderr = Captured::default();
    let stdout_done = stdout.drain(child.stdout.take().expect("piped stdout"), |_| {});
    let stderr_done = stderr.drain(child.stderr.take().expect("piped stderr"), |_| {});
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("cannot wait for the CLI") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{shown} did not finish within {timeout:?}; stdout: {:?}, stderr: {:?}",
                stdout.text(),
                stderr.text()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // The pipes close with the process (nothing else holds them): wait
    // for the readers to reach their ends.
    for done in [stdout_done, stderr_done] {
        let _ = done.recv_timeout(Duration::from_secs(10));
    }
    CliOutput {
        code: status.code(),
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

/// A CLI child that runs until killed, its stdout read line by line.
pub struct StreamingCli {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Its stderr so far.
    pub stderr: Captured,
}

impl StreamingCli {
    fn spawn(mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("cannot spawn the CLI");
        let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
        Captured::default().drain(child.stdout.take().expect("piped stdout"), move |line| {
            let _ = sender.send(line.to_owned());
        });
        let stderr = Captured::default();
        stderr.drain(child.stderr.take().expect("piped stderr"), |_| {});
        Self {
            child,
            lines,
            stderr,
        }
    }

    /// The next stdout line, if one comes within `timeout`.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        tokio::time::timeout(timeout, self.lines.recv())
            .await
            .ok()
            .flatten()
    }

    /// Whether it exited already (and how).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for StreamingCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- config files -----

/// One `[[runtime]]` of a test config: an example runtime of the steward
/// binary, with the given versions.
pub struct TestRuntime<'a> {
    /// Its id, also the example runtime's name (`echo` or `kv`).
    pub id: &'a str,
    /// Its `active` version.
    pub active: &'a str,
    /// Its versions.
    pub versions: &'a [&'a str],
}

/// A config file text hosting `runtimes`, with the steward binary's
/// absolute path as every command, a short restart backoff.
pub fn config_toml(runtimes: &[TestRuntime<'_>]) -> String {
    let command = serde_json::to_string(BIN).expect("a path is JSON");
    let mut text = String::from("# written by the steward end-to-end tests\n");
    for runtime in runtimes {
        text.push_str(&format!(
            "\n[[runtime]]\nid = \"{}\"\nactive = \"{}\"\n\n[runtime.restart]\ninitial = \"100ms\"\nmax = \"1s\"\n",
            runtime.id, runtime.active
        ));
        for version in runtime.versions {
            text.push_str(&format!(
                "\n[[runtime.version]]\nversion = \"{version}\"\ncommand = {command}\nargs = [\"example-runtime\", \"{}\", \"--version\", \"{version}\"]\n",
                runtime.id
            ));
        }
    }
    text
}

/// Replaces `path`'s content atomically: a temp file in the same
/// directory, renamed over it (as most editors save).
pub fn write_atomically(path: &Path, text: &str) {
    let dir = path.parent().expect("the config has a directory");
    let temp = dir.join(format!(
        ".{}.tmp",
        path.file_name().expect("a file name").to_string_lossy()
    ));
    std::fs::write(&temp, text).expect("cannot write the temp config");
    std::fs::rename(&temp, path).expect("cannot rename the temp config");
}

/// An answer's status, `Content-Type` and body text; `what` names the
/// request in failure messages.
pub async fn answer_parts(response: reqwest::Response, what: &str) -> (StatusCode, String, String) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response
        .text()
        .await
        .unwrap_or_else(|error| panic!("{what}: reading the body: {error}"));
    (status, content_type, text)
}
