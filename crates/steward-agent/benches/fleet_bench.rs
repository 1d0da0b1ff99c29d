//! How fast one fleet-wide `set-version` reaches every agent of a fleet,
//! under call load, next to its baseline in the same run:
//!
//! ```text
//! cargo bench -p steward-agent --bench fleet_bench [-- N...]
//! ```
//!
//! `workload=fleet_switch`: N agents (processes of the `steward` binary,
//! each with its own data dir and `--name`) on loopback share one real
//! etcd (`steward_etcd::testing::EtcdServer`, Debian's `etcd-server`, see
//! `scripts/etcd-deps`), each hosting `echo` with versions 1.0.0 and
//! 2.0.0. A load generator calls `echo.version` on every agent throughout
//! (about 1000 calls/s in all, spread over the agents). One write of the
//! fleet's desired version — `PUT /v1/runtimes/echo/version` with
//! `wait: false` on the first agent, what `steward set-version` does —
//! then switches the fleet; rounds alternate 1.0.0 → 2.0.0 → 1.0.0 ….
//!
//! - `converge_ms`: from the write until an agent announces (its event
//!   stream's `switched`) that it serves the version, per agent and round;
//!   p50 and max over all of them.
//! - `reported_ms`: from the write until the first agent's `GET /v1/fleet`
//!   shows every unit at the version (what `set-version` waits for);
//!   p50 and max over the rounds.
//! - `failed_calls`: calls that did not answer 200 with a version, of
//!   `calls`.
//! - The baseline, `local_switch_ms`: the same switch on one agent without
//!   a fleet (`PUT … wait: true`, in the same run, before the fleet starts):
//!   the floor a fleet-wide switch adds its etcd round trips to.
//!
//! N = 10 and 100 unless given. 100 agents need about 200 processes and
//! a few thousand threads; the bench raises its open-file limit to the hard
//! limit and fails loudly when an agent does not come up.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly when its setup fails"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use steward_etcd::testing::EtcdServer;

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");

/// How long anything may take before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(180);

/// The load's total rate, spread over the agents.
const CALLS_PER_SECOND: u64 = 1000;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 100]
    } else {
        sizes
    };
    raise_open_files();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    for n in sizes {
        let rounds = if n >= 100 { 3 } else { 5 };
        tokio.block_on(bench(n, rounds));
    }
}

fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

async fn bench(n: usize, rounds: usize) {
    let dir = tempfile::Builder::new()
        .prefix("fleet-bench-")
        .tempdir()
        .unwrap();
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(4)
        .build()
        .unwrap();

    let baseline = local_switch_floor(dir.path(), &http, rounds).await;

    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .expect("cannot start etcd (run scripts/etcd-deps)");
    let fleet = format!("[fleet]\nendpoints = [\"{}\"]\n\n", etcd.endpoint());
    let config = write_config(dir.path(), "fleet", &fleet);
    let started = Instant::now();
    let agents: Vec<AgentProcess> = (0..n)
        .map(|i| AgentProcess::spawn(dir.path(), &config, &format!("a{i:03}")))
        .collect();
    let mut urls = Vec::new();
    for agent in &agents {
        urls.push(agent.url());
    }
    for url in &urls {
        wait_for(&format!("echo running on {url}"), || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let detail = get_json(&http, &format!("{url}/v1/runtimes/echo")).await?;
                (detail["state"] == "running" && detail["active_version"] == "1.0.0").then_some(())
            }
        })
        .await;
    }
    wait_reported(&http, &urls[0], "1.0.0", n).await;
    let up = started.elapsed();

    let load = Load::start(&http, &urls);
    let mut converge = Vec::new();
    let mut reported = Vec::new();
    for round in 0..rounds {
        let version = if round % 2 == 0 { "2.0.0" } else { "1.0.0" };
        let (each, all) = switch_round(&http, &urls, version).await;
        converge.extend(each);
        reported.push(all);
        // Calls go on at the new version before the next round.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (calls, failures) = load.finish().await;
    converge.sort_unstable();
    reported.sort_unstable();
    println!(
        "workload=fleet_switch agents={n} rounds={rounds} converge_ms_p50={:.0} converge_ms_max={:.0} reported_ms_p50={:.0} reported_ms_max={:.0} failed_calls={} calls={calls} local_switch_ms_p50={:.0} agents_up_s={:.1}",
        ms(converge[converge.len() / 2]),
        ms(converge[converge.len() - 1]),
        ms(reported[reported.len() / 2]),
        ms(reported[reported.len() - 1]),
        failures.len(),
        ms(baseline),
        up.as_secs_f64(),
    );
    for failure in failures.iter().take(10) {
        eprintln!("  failed call: {failure}");
    }
    stop_all(agents);
    drop(etcd);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The baseline: one agent without a fleet, `PUT … wait: true` back and
/// forth; the p50 of `rounds` switches.
async fn local_switch_floor(dir: &Path, http: &reqwest::Client, rounds: usize) -> Duration {
    let config = write_config(dir, "local", "");
    let agent = AgentProcess::spawn(dir, &config, "local");
    let url = agent.url();
    wait_for("the local agent's echo", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let detail = get_json(&http, &format!("{url}/v1/runtimes/echo")).await?;
            (detail["state"] == "running").then_some(())
        }
    })
    .await;
    let mut times = Vec::new();
    for round in 0..rounds {
        let version = if round % 2 == 0 { "2.0.0" } else { "1.0.0" };
        let started = Instant::now();
        let answer = http
            .put(format!("{url}/v1/runtimes/echo/version"))
            .json(&json!({ "version": version, "wait": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::OK, "local switch");
        times.push(started.elapsed());
    }
    stop_all(vec![agent]);
    times.sort_unstable();
    times[times.len() / 2]
}

/// One fleet-wide switch to `version`: the time until each agent said it
/// switched, and until the first agent's fleet view showed them all.
async fn switch_round(
    http: &reqwest::Client,
    urls: &[String],
    version: &str,
) -> (Vec<Duration>, Duration) {
    // Subscribed before the write, so that no `switched` is missed.
    let mut streams = Vec::new();
    for url in urls {
        let response = http
            .get(format!("{url}/v1/events?runtime=echo"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "events of {url}");
        streams.push(response);
    }
    let written = Instant::now();
    let answer = http
        .put(format!("{}/v1/runtimes/echo/version", urls[0]))
        .json(&json!({ "version": version, "wait": false }))
        .send()
        .await
        .unwrap();
    assert!(
        answer.status().is_success(),
        "the write of the desired version: {}",
        answer.text().await.unwrap_or_default()
    );
    let waits: Vec<_> = streams
        .into_iter()
        .zip(urls)
        .map(|(stream, url)| {
            let (version, url) = (version.to_owned(), url.clone());
            tokio::spawn(async move {
                let at = switched(stream, &version)
                    .await
                    .unwrap_or_else(|problem| panic!("{url}: {problem}"));
                at.duration_since(written)
            })
        })
        .collect();
    let all = {
        wait_reported(http, &urls[0], version, urls.len()).await;
        written.elapsed()
    };
    let mut each = Vec::new();
    for wait in waits {
        each.push(
            tokio::time::timeout(PATIENCE, wait)
                .await
                .expect("an agent did not switch")
                .unwrap(),
        );
    }
    (each, all)
}

/// Reads an event stream until a `switched` to `version`; when it came.
async fn switched(mut stream: reqwest::Response, version: &str) -> Result<Instant, String> {
    let mut buffer = Vec::new();
    loop {
        let chunk = tokio::time::timeout(PATIENCE, stream.chunk())
            .await
            .map_err(|_| format!("no switch to {version} within {PATIENCE:?}"))?
            .map_err(|error| error.to_string())?
            .ok_or("the event stream ended")?;
        let at = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let Some(data) = std::str::from_utf8(&line)
                .ok()
                .and_then(|line| line.trim_end().strip_prefix("data:"))
            else {
                continue;
            };
            let event: Value = serde_json::from_str(data.trim()).map_err(|e| e.to_string())?;
            if event["version"] == version {
                match event["kind"].as_str() {
                    Some("switched") => return Ok(at),
                    Some("switch_failed") => return Err(format!("switch failed: {event}")),
                    _ => {}
                }
            }
        }
    }
}

/// Waits until `url`'s fleet view shows `count` echo units at `version`.
async fn wait_reported(http: &reqwest::Client, url: &str, version: &str, count: usize) {
    let what = format!("{count} units at {version} in {url}/v1/fleet");
    let path = format!("{url}/v1/fleet?runtime=echo");
    wait_for(&what, || {
        let (http, path) = (http.clone(), path.clone());
        async move {
            let fleet = get_json(&http, &path).await?;
            let units = fleet["units"].as_array()?;
            (units.len() == count && units.iter().all(|unit| unit["active_version"] == version))
                .then_some(())
        }
    })
    .await;
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let response = http
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// Polls `check` every 20 ms until it is `Some`, for at most [`PATIENCE`].
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let deadline = Instant::now() + PATIENCE;
    while check().await.is_none() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `echo` with 1.0.0 (active) and 2.0.0, after `head` (a `[fleet]`).
fn write_config(dir: &Path, name: &str, head: &str) -> PathBuf {
    let command = serde_json::to_string(STEWARD).unwrap();
    let mut text = head.to_owned();
    text.push_str("[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\"\n");
    for version in ["1.0.0", "2.0.0"] {
        text.push_str(&format!(
            "\n[[runtime.version]]\nversion = \"{version}\"\ncommand = {command}\nargs = [\"example-runtime\", \"echo\", \"--version\", \"{version}\"]\n"
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A `steward run` of the bench; its log goes to `<name>.log`.
struct AgentProcess {
    name: String,
    child: Child,
    url: std::sync::mpsc::Receiver<String>,
    log: PathBuf,
}

impl AgentProcess {
    fn spawn(dir: &Path, config: &Path, name: &str) -> AgentProcess {
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new(STEWARD)
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(dir.join(format!("data-{name}")))
            .args(["--listen", "127.0.0.1:0", "--name", name])
            .env("STEWARD_LOG", "warn")
            .env_remove("STEWARD_API")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start steward");
        let stdout = child.stdout.take().unwrap();
        let (sender, url) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, url)) = line.split_once("control API on ") {
                    let _ = sender.send(url.trim().to_owned());
                }
            }
        });
        AgentProcess {
            name: name.to_owned(),
            child,
            url,
            log,
        }
    }

    /// The API's URL, once the agent printed it.
    fn url(&self) -> String {
        self.url.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            panic!(
                "agent {} did not start; its log:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        })
    }
}

/// Stops the agents (SIGTERM: each revokes its lease) and reaps them.
fn stop_all(mut agents: Vec<AgentProcess>) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for agent in &agents {
        let _ = kill(
            Pid::from_raw(i32::try_from(agent.child.id()).unwrap()),
            Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for agent in &mut agents {
        while agent.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = agent.child.kill();
                let _ = agent.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Callers of `echo.version` on every agent, each paced so that the total
/// is about [`CALLS_PER_SECOND`].
struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(http: &reqwest::Client, urls: &[String]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let n = u64::try_from(urls.len()).unwrap();
        let period = Duration::from_micros(1_000_000 * n / CALLS_PER_SECOND);
        let tasks = urls
            .iter()
            .map(|url| {
                let (http, stop, calls, failures) =
                    (http.clone(), stop.clone(), calls.clone(), failures.clone());
                let url = format!("{url}/v1/runtimes/echo/call");
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        calls.fetch_add(1, Ordering::Relaxed);
                        if let Err(failure) = call(&http, &url).await {
                            failures.lock().unwrap().push(failure);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            calls,
            failures,
            tasks,
        }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (self.calls.load(Ordering::Relaxed), failures)
    }
}

async fn call(http: &reqwest::Client, url: &str) -> Result<(), String> {
    let response = http
        .post(url)
        .timeout(Duration::from_secs(10))
        .json(&json!({ "method": "version", "args": null }))
        .send()
        .await
        .map_err(|error| format!("{url}: {error}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|error| format!("{url}: {status}: {error}"))?;
    match (status, &body["result"]) {
        (reqwest::StatusCode::OK, Value::String(_)) => Ok(()),
        _ => Err(format!("{url}: {status}: {body}")),
    }
}
