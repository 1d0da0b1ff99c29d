//! End-to-end tests of fleet mode: real agents on loopback, each with its
//! own data dir and `--name`, sharing a real etcd server
//! ([`EtcdServer`], Debian's `etcd-server`, installed by
//! `scripts/etcd-deps`) — one server per test, never shared between tests,
//! so that the tests run in parallel and a test may freeze or kill its own.
//!
//! Covered: a fleet-wide `set-version` converging under call load with the
//! CLI's progress; `fleet status`; presence (a killed agent leaves after its
//! lease, a stopped one at once); etcd frozen, killed and restarted, and one
//! agent cut off (through a [`Proxy`]) while the fleet moves on; a unit
//! whose config lacks the fleet's version; `[fleet]` in a config; start
//! errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::join_all;
use nix::sys::signal::Signal;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_etcd::testing::{EtcdServer, Proxy};
use tempfile::TempDir;

use crate::support::{Agent, Api, DEADLINE, Options, TestRuntime, config_toml, eventually};

/// Starts this test's own etcd server (a blocking start, off the runtime's
/// workers).
async fn start_etcd() -> EtcdServer {
    tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .expect("cannot start etcd (run scripts/etcd-deps)")
}

/// The echo runtime with `versions`, `1.0.0` active.
fn echo_config(dir: &Path, name: &str, versions: &[&str], fleet: Option<&str>) -> PathBuf {
    let mut text = fleet.map(str::to_owned).unwrap_or_default();
    text.push_str(&config_toml(&[TestRuntime {
        id: "echo",
        active: "1.0.0",
        versions,
    }]));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `steward run --name NAME <args>` with `config` (the demo if `None`), in
/// its own data dir under `dir`.
fn agent_options(dir: &Path, name: &str, config: Option<&Path>, args: &[String]) -> Options {
    let data = dir.join(format!("data-{name}"));
    let options = match config {
        Some(config) => Options::with_config(&data, config),
        None => Options::demo(&data),
    };
    Options {
        name: Some(name.to_owned()),
        args: args.to_vec(),
        ..options
    }
}

fn fleet_args(endpoint: &str) -> Vec<String> {
    vec!["--fleet".to_owned(), endpoint.to_owned()]
}

/// Starts the agents at once and waits until each runs `echo`.
async fn start_agents(options: Vec<Options>) -> Vec<Agent> {
    join_all(options.into_iter().map(|options| async move {
        let agent = Agent::start(options).await;
        agent.wait_running(&["echo"]).await;
        agent
    }))
    .await
}

/// `GET /v1/fleet[?runtime=R]`'s units, which must be answered.
async fn fleet_units(agent: &Agent, runtime: Option<&str>) -> Vec<Value> {
    let path = match runtime {
        Some(runtime) => format!("/v1/fleet?runtime={runtime}"),
        None => "/v1/fleet".to_owned(),
    };
    let (status, body) = agent.api.get(&path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body["units"].as_array().expect("a units array").clone()
}

fn unit_names(units: &[Value]) -> Vec<String> {
    units
        .iter()
        .map(|unit| unit["unit"].as_str().expect("a unit name").to_owned())
        .collect()
}

/// Waits until `agent` lists exactly the units `names` (sorted).
async fn wait_units(agent: &Agent, names: &[&str]) -> Vec<Value> {
    let what = format!("the fleet's units to be {names:?}");
    eventually(&what, DEADLINE, || async move {
        let (status, body) = agent.api.get("/v1/fleet").await;
        let units = body["units"].as_array()?.clone();
        (status == StatusCode::OK && unit_names(&units) == names).then_some(units)
    })
    .await
}

/// Waits until every unit `agent` lists of `runtime` is at `version`, and
/// there are `count` of them.
async fn wait_fleet_at(agent: &Agent, runtime: &str, version: &str, count: usize) -> Vec<Value> {
    let what = format!("{count} units of {runtime} at {version}");
    eventually(&what, DEADLINE, || async move {
        let (status, body) = agent.api.get(&format!("/v1/fleet?runtime={runtime}")).await;
        let units = body["units"].as_array()?.clone();
        (status == StatusCode::OK
            && units.len() == count
            && units.iter().all(|unit| unit["active_version"] == version))
        .then_some(units)
    })
    .await
}

/// Waits until `agent`'s `/healthz` says `fleet: <state>`; returns it and
/// how long that took.
async fn wait_fleet_health(agent: &Agent, state: &str, timeout: Duration) -> (Value, Duration) {
    let started = Instant::now();
    let what = format!("/healthz of {} saying fleet {state}", agent.url);
    let health = eventually(&what, timeout, || async move {
        let (status, health) = agent.api.get("/healthz").await;
        assert_eq!(status, StatusCode::OK, "/healthz: {health}");
        (health["fleet"] == state).then_some(health)
    })
    .await;
    (health, started.elapsed())
}

/// What the callers of one agent saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    calls: u64,
    /// How many calls each version answered.
    versions: BTreeMap<String, u64>,
    failures: Vec<String>,
}

/// Callers of `echo` on each of a set of agents, calling until stopped:
/// one asks for the version, one echoes a value and checks it comes back.
/// A transport error, a non-200 answer or a wrong answer is a failure.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<String, Seen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(agents: &[(&str, &Agent)]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let mut tasks = Vec::new();
        for &(name, agent) in agents {
            seen.lock()
                .unwrap()
                .insert(name.to_owned(), Seen::default());
            for echoing in [false, true] {
                let (api, stop, seen) = (agent.api.clone(), stop.clone(), seen.clone());
                let name = name.to_owned();
                tasks.push(tokio::spawn(async move {
                    let mut n = 0_u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let outcome = one_call(&api, echoing, n).await;
                        let mut seen = seen.lock().unwrap();
                        let seen = seen.get_mut(&name).unwrap();
                        seen.calls += 1;
                        match outcome {
                            Ok(Some(version)) => *seen.versions.entry(version).or_default() += 1,
                            Ok(None) => {}
                            Err(failure) => seen.failures.push(failure),
                        }
                    }
                }));
            }
        }
        Load { stop, seen, tasks }
    }

    fn seen(&self, name: &str) -> Seen {
        self.seen.lock().unwrap()[name].clone()
    }

    /// Waits until each of `names` answered `more` calls beyond `since`
    /// (as [`Load::seen`] said), so that calls demonstrably went on.
    async fn wait_more(&self, since: &BTreeMap<String, u64>, more: u64) {
        for (name, before) in since {
            let what = format!("{more} more calls answered by {name}");
            eventually(&what, DEADLINE, || async move {
                (self.seen(name).calls >= before + more).then_some(())
            })
            .await;
        }
    }

    /// Every agent's call count now.
    fn counts(&self) -> BTreeMap<String, u64> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(name, seen)| (name.clone(), seen.calls))
            .collect()
    }

    /// Waits until `name` answered with `version` at least `calls` times.
    async fn wait_version(&self, name: &str, version: &str, calls: u64) {
        let what = format!("{calls} calls of {name} answered by {version}");
        eventually(&what, DEADLINE, || async move {
            (self.seen(name).versions.get(version).copied().unwrap_or(0) >= calls).then_some(())
        })
        .await;
    }

    /// Stops the callers; returns what each agent's saw.
    async fn finish(self) -> BTreeMap<String, Seen> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a caller panicked");
        }
        self.seen.lock().unwrap().clone()
    }
}

/// One call: `version` (its answer) or `echo` (checked; `None`).
async fn one_call(api: &Api, echoing: bool, n: u64) -> Result<Option<String>, String> {
    let (method, args) = match echoing {
        true => ("echo", json!({ "n": n })),
        false => ("version", Value::Null),
    };
    let response = api
        .builder(Method::POST, "/v1/runtimes/echo/call")
        .timeout(Duration::from_secs(10))
        .json(&json!({ "method": method, "args": args }))
        .send()
        .await
        .map_err(|error| format!("{method}: {error}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|error| format!("{method}: {status} with a body that is not JSON: {error}"))?;
    if status != StatusCode::OK {
        return Err(format!("{method}: {status}: {body}"));
    }
    match (echoing, &body["result"]) {
        (true, result) if *result == args => Ok(None),
        (false, Value::String(version)) => Ok(Some(version.clone())),
        (_, other) => Err(format!("{method}: a wrong answer {other}")),
    }
}

/// Asserts no caller failed and every agent answered calls.
fn assert_no_failed_call(seen: &BTreeMap<String, Seen>) {
    for (name, seen) in seen {
        assert!(
            seen.failures.is_empty(),
            "{} of {} calls to {name} failed: {:?}",
            seen.failures.len(),
            seen.calls,
            seen.failures
        );
        assert!(seen.calls > 0, "no call reached {name}");
    }
}

/// The fields of a unit in `GET /v1/fleet` and `fleet status --json`.
const UNIT_FIELDS: [&str; 9] = [
    "unit",
    "agent",
    "runtime",
    "active_version",
    "desired_version",
    "state",
    "hooks",
    "error",
    "last_seen",
];

/// A progress line of `set-version` in a fleet: `(at, of)`.
fn progress(line: &str, runtime: &str, version: &str) -> Option<(usize, usize)> {
    let counts = line
        .strip_prefix(&format!("{runtime}: "))?
        .strip_suffix(&format!(" units at {version}"))?;
    let (at, of) = counts.split_once('/')?;
    Some((at.parse().ok()?, of.parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_wide_switch_converges_on_three_agents_under_load() {
    let etcd = start_etcd().await;
    let dir = TempDir::new().unwrap();
    let names = ["a1", "a2", "a3"];
    let agents = start_agents(
        names
            .iter()
            .map(|name| agent_options(dir.path(), name, None, &fleet_args(&etcd.endpoint())))
            .collect(),
    )
    .await;
    // Every agent sees every unit (the demo's echo and kv on each).
    let all = ["echo/a1", "echo/a2", "echo/a3", "kv/a1", "kv/a2", "kv/a3"];
    for agent in &agents {
        wait_units(agent, &all).await;
    }
    wait_fleet_at(&agents[0], "echo", "1.0.0", 3).await;

    let load = Load::start(&[("a1", &agents[0]), ("a2", &agents[1]), ("a3", &agents[2])]);
    load.wait_more(&load.counts(), 20).await;

    // From any agent: the fleet's desired version, then its progress.
    let switch = agents[1]
        .cli(&["set-version", "echo", "2.0.0", "--timeout", "30s"])
        .await;
    let stdout = switch.success();
    let lines: Vec<&str> = stdout.lines().collect();
    let counts: Vec<(usize, usize)> = lines
        .iter()
        .map(|line| {
            progress(line, "echo", "2.0.0")
                .unwrap_or_else(|| panic!("not a progress line: {line:?} in {stdout:?}"))
        })
        .collect();
    assert_eq!(counts.last(), Some(&(3, 3)), "{stdout}");
    assert!(
        counts.len() >= 2,
        "no progress shown before the end: {stdout}"
    );
    assert!(
        counts.iter().all(|&(_, of)| of == 3) && counts.windows(2).all(|w| w[0].0 < w[1].0),
        "progress that goes back or repeats: {stdout}"
    );

    // Converged: every agent serves 2.0.0, and calls went on after.
    for (name, agent) in names.iter().zip(&agents) {
        let detail = agent.api.detail("echo").await;
        assert_eq!(detail["active_version"], "2.0.0", "{name}: {detail}");
        assert_eq!(detail["desired_version"], "2.0.0", "{name}: {detail}");
        load.wait_version(name, "2.0.0", 20).await;
    }
    let seen = load.finish().await;
    assert_no_failed_call(&seen);
    for (name, seen) in &seen {
        assert!(
            seen.versions.contains_key("1.0.0") && seen.versions.contains_key("2.0.0"),
            "{name}'s calls did not cross the switch: {seen:?}"
        );
    }

    // `fleet status --json`: the API's shape, every unit with its fields.
    let status = agents[2].cli(&["fleet", "status", "--json"]).await;
    let status: Value = serde_json::from_str(status.success()).unwrap();
    let units = status["units"].as_array().expect("units");
    assert_eq!(unit_names(units), all, "{status}");
    for unit in units {
        let fields: Vec<&str> = unit
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = UNIT_FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(fields, expected, "{unit}");
        let (runtime, agent) = unit["unit"].as_str().unwrap().split_once('/').unwrap();
        assert_eq!(unit["runtime"], runtime, "{unit}");
        assert_eq!(unit["agent"], agent, "{unit}");
        let version = if runtime == "echo" { "2.0.0" } else { "1.0.0" };
        assert_eq!(unit["active_version"], version, "{unit}");
        assert_eq!(unit["desired_version"], version, "{unit}");
        assert_eq!(unit["state"], "running", "{unit}");
        assert!(unit["hooks"].is_null(), "the demo has no hooks: {unit}");
        assert!(unit["error"].is_null(), "{unit}");
        let last_seen = unit["last_seen"].as_str().expect("last_seen");
        humantime::parse_rfc3339(last_seen)
            .unwrap_or_else(|error| panic!("last_seen {last_seen:?}: {error}"));
    }
    // One runtime's units, and the table.
    let echo = agents[0].cli(&["fleet", "status", "echo", "--json"]).await;
    let echo: Value = serde_json::from_str(echo.success()).unwrap();
    assert_eq!(
        unit_names(echo["units"].as_array().unwrap()),
        ["echo/a1", "echo/a2", "echo/a3"]
    );
    let table = agents[0].cli(&["fleet", "status"]).await;
    let table = table.success();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 7, "a header and six units: {table}");
    assert!(rows[0].starts_with("UNIT"), "{table}");
    assert!(rows[1].starts_with("echo/a1"), "{table}");
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_leaves_after_its_lease_and_a_stopped_one_at_once() {
    let etcd = start_etcd().await;
    let dir = TempDir::new().unwrap();
    // a1 and a2 join through their config's [fleet] (a 2 s lease), a3
    // through --fleet and --fleet-prefix (the default 10 s lease): one
    // fleet either way.
    let table = format!(
        "[fleet]\nendpoints = [\"{}\"]\nprefix = \"/e2e/\"\nlease-ttl = \"2s\"\n\n",
        etcd.endpoint()
    );
    let in_config = echo_config(dir.path(), "fleet", &["1.0.0", "2.0.0"], Some(&table));
    let plain = echo_config(dir.path(), "plain", &["1.0.0", "2.0.0"], None);
    let mut by_flag = fleet_args(&etcd.endpoint());
    by_flag.extend(["--fleet-prefix".to_owned(), "/e2e/".to_owned()]);
    let mut agents = start_agents(vec![
        agent_options(dir.path(), "a1", Some(&in_config), &[]),
        agent_options(dir.path(), "a2", Some(&in_config), &[]),
        agent_options(dir.path(), "a3", Some(&plain), &by_flag),
    ])
    .await;
    for agent in &agents {
        let (_, health) = agent.api.get("/healthz").await;
        assert_eq!(health["fleet"], "connected", "{health}");
        wait_units(agent, &["echo/a1", "echo/a2", "echo/a3"]).await;
    }

    // SIGKILL: no revoke; the unit stays until the lease expires.
    agents[0].signal(Signal::SIGKILL);
    agents[0].wait_exit(DEADLINE).await;
    let killed = Instant::now();
    let units = fleet_units(&agents[1], None).await;
    assert_eq!(
        unit_names(&units),
        ["echo/a1", "echo/a2", "echo/a3"],
        "a killed agent's unit left before its lease expired"
    );
    wait_units(&agents[1], &["echo/a2", "echo/a3"]).await;
    let gone_after = killed.elapsed();
    // Kept alive every third of the 2 s TTL: at least 4/3 s were left.
    assert!(
        gone_after >= Duration::from_secs(1),
        "echo/a1 left {gone_after:?} after the kill, before its 2 s lease could expire"
    );
    assert!(
        gone_after < Duration::from_secs(8),
        "echo/a1 left only {gone_after:?} after the kill, for a 2 s lease"
    );

    // A graceful stop revokes the lease: gone by the time the agent exited,
    // long before its 10 s TTL.
    let status = agents[2]
        .stop_with(Signal::SIGTERM, Duration::from_secs(20))
        .await;
    assert!(status.success(), "a3 exited with {status}");
    let units = fleet_units(&agents[1], None).await;
    assert_eq!(unit_names(&units), ["echo/a2"], "{units:?}");
    assert!(
        agents[2].stderr.text().contains("lease revoked"),
        "{}",
        agents[2].stderr.text()
    );
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_ride_out_etcd_outages_and_catch_up() {
    let mut etcd = start_etcd().await;
    let dir = TempDir::new().unwrap();
    let config = echo_config(dir.path(), "echo", &["1.0.0", "2.0.0"], None);
    // a2 reaches etcd through a proxy that can cut it off alone.
    let proxy = Proxy::start(&etcd.address()).await.unwrap();
    let agents = start_agents(vec![
        agent_options(
            dir.path(),
            "a1",
            Some(&config),
            &fleet_args(&etcd.endpoint()),
        ),
        agent_options(
            dir.path(),
            "a2",
            Some(&config),
            &fleet_args(&proxy.endpoint()),
        ),
    ])
    .await;
    for agent in &agents {
        wait_units(agent, &["echo/a1", "echo/a2"]).await;
    }
    let load = Load::start(&[("a1", &agents[0]), ("a2", &agents[1])]);
    load.wait_more(&load.counts(), 10).await;

    // Frozen with its connections open: noticed within 5 s; calls go on.
    etcd.pause();
    let frozen = SystemTime::now();
    let during = load.counts();
    let noticed = join_all(
        agents
            .iter()
            .map(|agent| wait_fleet_health(agent, "disconnected", DEADLINE)),
    )
    .await;
    for ((health, after), agent) in noticed.into_iter().zip(&agents) {
        assert!(
            after < Duration::from_secs(5),
            "{}: the outage was noticed after {after:?}: {health}",
            agent.url
        );
        // And by the agent's own account.
        let since = humantime::parse_rfc3339(health["fleet_since"].as_str().unwrap()).unwrap();
        let delay = since.duration_since(frozen).unwrap_or_default();
        assert!(
            delay < Duration::from_secs(5),
            "disconnected since {since:?}: {health}"
        );
        assert_eq!(
            health["status"], "ok",
            "the agent itself is healthy: {health}"
        );
        assert!(health["fleet_reason"].is_string(), "{health}");
        let (status, body) = agent.api.get("/v1/fleet").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
    load.wait_more(&during, 10).await;
    etcd.resume();
    for agent in &agents {
        let (health, _) = wait_fleet_health(agent, "connected", DEADLINE).await;
        assert!(health.get("fleet_since").is_none(), "{health}");
    }

    // Killed, then started again on the same data dir.
    tokio::task::block_in_place(|| etcd.kill());
    for agent in &agents {
        wait_fleet_health(agent, "disconnected", DEADLINE).await;
    }
    let during = load.counts();
    tokio::task::block_in_place(|| etcd.restart()).unwrap();
    for agent in &agents {
        wait_fleet_health(agent, "connected", DEADLINE).await;
        wait_units(agent, &["echo/a1", "echo/a2"]).await;
    }
    load.wait_more(&during, 10).await;

    // a2 cut off while the fleet moves to 2.0.0: it keeps its version...
    proxy.freeze();
    wait_fleet_health(&agents[1], "disconnected", DEADLINE).await;
    let switch = agents[0]
        .cli(&["set-version", "echo", "2.0.0", "--no-wait"])
        .await;
    assert!(
        switch
            .success()
            .contains("desired version 2.0.0 across the fleet"),
        "{switch:?}"
    );
    agents[0].wait_active("echo", "2.0.0").await;
    load.wait_version("a1", "2.0.0", 10).await;
    let before = load.seen("a2");
    load.wait_more(&load.counts(), 10).await;
    let after = load.seen("a2");
    assert_eq!(
        after.versions.get("2.0.0"),
        before.versions.get("2.0.0"),
        "a2 switched while cut off from etcd: {after:?}"
    );
    assert_eq!(
        agents[1].api.detail("echo").await["active_version"],
        "1.0.0"
    );
    let (health, _) = wait_fleet_health(&agents[0], "connected", DEADLINE).await;
    assert_eq!(health["fleet"], "connected");

    // ...and applies the change made meanwhile once it is back.
    proxy.thaw();
    wait_fleet_health(&agents[1], "connected", DEADLINE).await;
    agents[1].wait_active("echo", "2.0.0").await;
    load.wait_version("a2", "2.0.0", 10).await;
    let units = wait_fleet_at(&agents[0], "echo", "2.0.0", 2).await;
    assert!(
        units.iter().all(|unit| unit["desired_version"] == "2.0.0"),
        "{units:?}"
    );
    assert_no_failed_call(&load.finish().await);

    // Logged once per change of state, not per retry: a1 saw two outages,
    // a2 three. (A restart noticed by a request, not by the keep-alive
    // task, once left that task on its dead keep-alive stream: a third,
    // false outage on a1 a few seconds after etcd was back.)
    for (agent, outages) in agents.iter().zip([2, 3]) {
        let log = agent.stderr.text();
        for message in [
            "fleet: etcd cannot be reached",
            "fleet: etcd is reachable again",
        ] {
            assert_eq!(
                log.matches(message).count(),
                outages,
                "{message:?} in the log of {}:\n{log}",
                agent.url
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_without_the_fleets_version_keeps_its_own_and_says_so() {
    let etcd = start_etcd().await;
    let dir = TempDir::new().unwrap();
    let both = echo_config(dir.path(), "both", &["1.0.0", "2.0.0"], None);
    let old = echo_config(dir.path(), "old", &["1.0.0"], None);
    let fleet = fleet_args(&etcd.endpoint());
    let mut agents = start_agents(vec![
        agent_options(dir.path(), "a1", Some(&both), &fleet),
        agent_options(dir.path(), "a2", Some(&old), &fleet),
    ])
    .await;
    wait_units(&agents[0], &["echo/a1", "echo/a2"]).await;
    let load = Load::start(&[("a2", &agents[1])]);

    // Asked of the agent that lacks the version: refused, nothing written.
    let refused = agents[1].cli(&["set-version", "echo", "2.0.0"]).await;
    let line = refused.one_line_error(1);
    assert!(line.contains("no version \"2.0.0\""), "{line}");

    // Asked of one that has it: a1 switches, a2 cannot; the CLI gives up
    // naming a2 and why.
    let started = Instant::now();
    let switch = agents[0]
        .cli(&["set-version", "echo", "2.0.0", "--timeout", "3s"])
        .await;
    let line = switch.one_line_error(1);
    assert!(started.elapsed() < Duration::from_secs(15), "{switch:?}");
    assert!(line.contains("gave up after 3s"), "{line}");
    assert!(
        line.contains("echo: 1/2 units at 2.0.0; not there: echo/a2 (at 1.0.0: "),
        "{line}"
    );
    assert!(line.contains("no version \"2.0.0\""), "{line}");
    assert!(!line.contains("echo/a1"), "{line}");
    assert_eq!(
        switch.stdout.lines().last(),
        Some("echo: 1/2 units at 2.0.0"),
        "{switch:?}"
    );
    agents[0].wait_active("echo", "2.0.0").await;

    // a2 serves 1.0.0 on, and its unit says why it is not at 2.0.0.
    let detail = agents[1].api.detail("echo").await;
    assert_eq!(detail["active_version"], "1.0.0", "{detail}");
    assert_eq!(detail["state"], "running", "{detail}");
    let units = fleet_units(&agents[0], Some("echo")).await;
    let a2 = &units[1];
    assert_eq!(a2["unit"], "echo/a2", "{units:?}");
    assert_eq!(a2["active_version"], "1.0.0", "{a2}");
    assert_eq!(a2["desired_version"], "2.0.0", "{a2}");
    assert_eq!(a2["state"], "running", "{a2}");
    let error = a2["error"].as_str().expect("an error");
    assert!(error.contains("no version \"2.0.0\""), "{error}");
    assert!(units[0]["error"].is_null(), "{units:?}");

    // A new agent without 2.0.0 starts with its config's active version
    // and reports the same.
    agents.extend(start_agents(vec![agent_options(dir.path(), "a3", Some(&old), &fleet)]).await);
    let a3 = eventually("echo/a3 running, reporting its error", DEADLINE, || async {
        let units = fleet_units(&agents[0], Some("echo")).await;
        units.into_iter().find(|unit| {
            unit["unit"] == "echo/a3" && unit["state"] == "running" && unit["error"].is_string()
        })
    })
    .await;
    assert_eq!(a3["active_version"], "1.0.0", "{a3}");
    assert!(
        a3["error"]
            .as_str()
            .unwrap()
            .contains("no version \"2.0.0\""),
        "{a3}"
    );
    load.wait_version("a2", "1.0.0", 20).await;
    let seen = load.finish().await;
    assert_no_failed_call(&seen);
    assert_eq!(
        seen["a2"].versions.keys().collect::<Vec<_>>(),
        ["1.0.0"],
        "{seen:?}"
    );
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_start_errors_name_the_problem() {
    let dir = TempDir::new().unwrap();
    let start = |args: Vec<String>| {
        let options = agent_options(dir.path(), "a1", None, &args);
        async move {
            options
                .run_to_exit("a bad --fleet must stop the start")
                .await
        }
    };

    // Not a URL: a usage error naming the flag and what to write.
    let output = start(fleet_args("ftp://127.0.0.1:2379")).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--fleet"), "{stderr}");
    assert!(stderr.contains("ftp://127.0.0.1:2379"), "{stderr}");
    assert!(stderr.contains("is not an etcd client URL"), "{stderr}");
    let output = start(fleet_args("http://")).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("has no host:port"), "{stderr}");

    // Nothing listening: exit 1, naming every endpoint tried.
    let closed: Vec<String> = (0..2)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port())
        })
        .collect();
    let started = Instant::now();
    let output = start(fleet_args(&closed.join(","))).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach etcd at"), "{stderr}");
    for endpoint in &closed {
        assert!(stderr.contains(endpoint.as_str()), "{endpoint}: {stderr}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "an unreachable etcd took {:?} to report",
        started.elapsed()
    );

    // A bad [fleet] in the config is a config error, with where it is.
    let config = echo_config(
        dir.path(),
        "bad",
        &["1.0.0"],
        Some("[fleet]\nendpoints = [\"localhost:2379\"]\n\n"),
    );
    let options = agent_options(dir.path(), "a1", Some(&config), &[]);
    let output = options
        .run_to_exit("a bad [fleet] must stop the start")
        .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.toml:2:"), "{stderr}");
    assert!(stderr.contains("is not an etcd client URL"), "{stderr}");
}
