//! Reconciliation and the config manager against the host crate's fake
//! runtime host (no processes) and a real store in a temp dir.
//!
//! Every wait is on something observable and bounded by [`WAIT`]: an
//! agent event, a switch outcome, a fake's state; nothing sleeps hoping.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_host::test_util::{FakeLog, FakeRuntime, FakeState};
use steward_host::{Event, ExitReason, ProcessStatus, RuntimeHost};
use steward_store::{RelationSettings, Store};
use steward_worker::{Backoff, Runner, Worker};
use tokio::sync::{broadcast, watch};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::manager::changes_in_place;
use super::worker::worker_id;
use super::{Context, DesiredScope, HookServices, Hosts, Manager, Registry, track};
use crate::api::types::RuntimeState;
use crate::config::{
    BackoffConfig, Config, Endpoint, HooksConfig, OnHookFailure, RelationConfig, RuntimeConfig,
    Transition, VersionConfig,
};
use crate::events::{AgentEvent, EventBus, EventKind};
use crate::relations::Relations;

const WAIT: Duration = Duration::from_secs(20);

/// Makes fakes, and remembers every one it made, by runtime and version.
#[derive(Debug, Default)]
struct FakeHosts {
    log: FakeLog,
    made: Mutex<Vec<Arc<FakeRuntime>>>,
    /// Versions (`runtime/version`) whose fakes fail to start.
    failing: Mutex<Vec<String>>,
}

impl FakeHosts {
    /// Every fake made for `runtime` at `version`, oldest first.
    fn made(&self, runtime: &str, version: &str) -> Vec<Arc<FakeRuntime>> {
        self.made
            .lock()
            .unwrap()
            .iter()
            .filter(|fake| fake.id() == runtime && &**fake.version() == version)
            .cloned()
            .collect()
    }

    /// The newest fake for `runtime` at `version`.
    fn latest(&self, runtime: &str, version: &str) -> Arc<FakeRuntime> {
        self.made(runtime, version)
            .pop()
            .unwrap_or_else(|| panic!("no fake for {runtime} {version}"))
    }

    fn fail(&self, runtime: &str, version: &str) {
        self.failing
            .lock()
            .unwrap()
            .push(format!("{runtime}/{version}"));
    }
}

impl Hosts for FakeHosts {
    fn host(&self, runtime: &RuntimeConfig, version: &VersionConfig) -> Arc<dyn RuntimeHost> {
        let fake = FakeRuntime::with_id(&runtime.id, &version.version, &self.log);
        let key = format!("{}/{}", runtime.id, version.version);
        if self.failing.lock().unwrap().contains(&key) {
            fake.failing();
        }
        self.made.lock().unwrap().push(fake.clone());
        fake.host()
    }
}

/// A runtime config with `versions`, `active` first started.
fn runtime(id: &str, active: &str, versions: &[&str]) -> RuntimeConfig {
    RuntimeConfig {
        id: id.to_owned(),
        active: active.to_owned(),
        transition: Transition::MakeBeforeBreak,
        call_timeout: Duration::from_secs(30),
        restart: BackoffConfig::RESTART,
        hooks: None,
        settings: Default::default(),
        timeouts: Default::default(),
        liveness: Default::default(),
        log_lines: crate::config::DEFAULT_LOG_LINES,
        versions: versions
            .iter()
            .map(|version| VersionConfig {
                version: (*version).to_owned(),
                command: PathBuf::from("/bin/true"),
                args: vec!["--version".to_owned(), (*version).to_owned()],
                env: BTreeMap::new(),
            })
            .collect(),
    }
}

fn config(runtimes: Vec<RuntimeConfig>) -> Config {
    Config {
        runtimes,
        relations: Vec::new(),
        fleet: None,
    }
}

/// An agent's runtimes without its API: a store, fakes, a runner, and the
/// manager applying configs to it.
struct Fixture {
    _dir: tempfile::TempDir,
    hosts: Arc<FakeHosts>,
    context: Context,
    runner: Runner,
    events: broadcast::Receiver<AgentEvent>,
}

impl Fixture {
    async fn new() -> Self {
        Self::with_scope(DesiredScope::Local).await
    }

    /// A fixture whose desired state is `scope`'s (the store stands in
    /// for a fleet's).
    async fn with_scope(scope: DesiredScope) -> Self {
        Self::build(scope, "test", None).await
    }

    /// Agent `agent` of a fleet whose relation settings are `fleet`'s.
    async fn in_fleet(agent: &str, fleet: Arc<dyn RelationSettings>) -> Self {
        Self::build(DesiredScope::Local, agent, Some(fleet)).await
    }

    async fn build(
        scope: DesiredScope,
        agent: &str,
        fleet: Option<Arc<dyn RelationSettings>>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("steward.redb")).await.unwrap();
        let hosts = Arc::new(FakeHosts::default());
        let exe = std::env::current_exe().unwrap();
        let hooks = HookServices::start(agent.to_owned(), dir.path(), None, &exe, false)
            .await
            .unwrap();
        let events = EventBus::new();
        let (agent, bus) = (agent.to_owned(), events.clone());
        let relations = match fleet {
            Some(fleet) => Relations::fleet(store.clone(), agent, fleet, bus).await,
            None => Relations::local(store.clone(), agent, bus).await,
        }
        .unwrap();
        let context = Context {
            desired: Arc::new(store.clone()),
            scope,
            store,
            registry: Arc::new(Registry::default()),
            events,
            hosts: hosts.clone(),
            hooks: Arc::new(hooks),
            relations: Arc::new(relations),
        };
        let events = context.events.subscribe();
        let runner = Runner::builder()
            .name("test")
            .backoff(Backoff::constant(Duration::from_millis(10)))
            .build();
        Self {
            _dir: dir,
            hosts,
            context,
            runner,
            events,
        }
    }

    fn manager(&self) -> Manager {
        Manager {
            context: self.context.clone(),
            runner: self.runner.clone(),
        }
    }

    async fn apply(&self, config: &Config) {
        self.manager().apply(config).await.unwrap();
    }

    /// Waits for the next agent event that `matches`, skipping others.
    async fn event(&mut self, what: &str, matches: impl Fn(&AgentEvent) -> bool) -> AgentEvent {
        let found = timeout(WAIT, async {
            loop {
                let event = self.events.recv().await.expect("the event bus is open");
                if matches(&event) {
                    return event;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
    }

    /// Waits until `runtime` serves `version` from its newest host (a
    /// restarted runtime makes new hosts).
    async fn serving(&self, runtime: &str, version: &str) {
        let served = timeout(WAIT, async {
            loop {
                let started = self
                    .hosts
                    .made(runtime, version)
                    .pop()
                    .is_some_and(|fake| fake.state() == FakeState::Started);
                let active = self
                    .context
                    .registry
                    .get(runtime)
                    .and_then(|hosted| hosted.active_version());
                if started && active.as_deref() == Some(version) {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        served.unwrap_or_else(|_| panic!("{runtime} never served {version}"));
    }

    async fn desired(&self, runtime: &str) -> Option<String> {
        self.context.desired.desired_version(runtime).await.unwrap()
    }

    /// Writes the desired version and waits for the switch's outcome.
    async fn switch(&self, runtime: &str, version: &str) -> Option<String> {
        let hosted = self.context.registry.get(runtime).unwrap();
        let mut outcomes = hosted.outcomes();
        let seen = outcomes.borrow_and_update().generation;
        self.context
            .store
            .set_desired_version(runtime, version)
            .await
            .unwrap();
        let outcome = timeout(WAIT, outcomes.wait_for(|o| o.generation > seen))
            .await
            .expect("a switch outcome")
            .expect("the runtime is hosted")
            .clone();
        assert_eq!(outcome.version, version);
        outcome.error
    }

    async fn shutdown(self) {
        self.runner.kill();
        timeout(WAIT, self.runner.wait())
            .await
            .expect("the runner stops")
            .unwrap();
    }
}

// --------------------------------------------------------- reconciliation

#[tokio::test]
async fn a_runtime_starts_at_the_configs_active_version_and_seeds_desired_state() {
    let mut fx = Fixture::new().await;
    fx.apply(&config(vec![runtime("echo", "1", &["1", "2"])]))
        .await;
    fx.serving("echo", "1").await;
    assert_eq!(fx.desired("echo").await.as_deref(), Some("1"));
    assert_eq!(fx.hosts.latest("echo", "2").state(), FakeState::Idle);
    let hosted = fx.context.registry.get("echo").unwrap();
    assert_eq!(hosted.status().state, RuntimeState::Running);
    let started = fx.event("started", |e| e.kind == EventKind::Started).await;
    assert_eq!(
        (started.runtime.as_str(), started.version.as_str()),
        ("echo", "1")
    );
    fx.shutdown().await;
}

#[tokio::test]
async fn a_runtime_starts_at_its_stored_desired_version() {
    let fx = Fixture::new().await;
    fx.context
        .store
        .set_desired_version("echo", "2")
        .await
        .unwrap();
    fx.apply(&config(vec![runtime("echo", "1", &["1", "2"])]))
        .await;
    fx.serving("echo", "2").await;
    assert_eq!(fx.hosts.latest("echo", "1").starts(), 0);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_stored_version_the_config_lacks_gives_way_to_active() {
    let fx = Fixture::new().await;
    fx.context
        .store
        .set_desired_version("echo", "9")
        .await
        .unwrap();
    fx.apply(&config(vec![runtime("echo", "1", &["1", "2"])]))
        .await;
    fx.serving("echo", "1").await;
    assert_eq!(fx.desired("echo").await.as_deref(), Some("1"));
    fx.shutdown().await;
}

/// In a fleet, desired state is not one agent's to correct: a version the
/// agent's config lacks stays desired (others may have it), the agent
/// serves its `active` and says why.
#[tokio::test]
async fn in_a_fleet_a_desired_version_the_config_lacks_stays_and_is_reported() {
    let fx = Fixture::with_scope(DesiredScope::Fleet).await;
    fx.context
        .desired
        .set_desired_version("echo", "9")
        .await
        .unwrap();
    fx.apply(&config(vec![runtime("echo", "1", &["1", "2"])]))
        .await;
    fx.serving("echo", "1").await;
    assert_eq!(fx.desired("echo").await.as_deref(), Some("9"));
    let hosted = fx.context.registry.get("echo").unwrap();
    let error = hosted.status().last_error.unwrap_or_default();
    assert!(error.contains("no version \"9\" in the config"), "{error}");
    fx.shutdown().await;
}

/// In a fleet, a switch that fails here leaves desired state alone (other
/// agents may have switched); the old version keeps serving.
#[tokio::test]
async fn in_a_fleet_a_failed_switch_leaves_desired_state_alone() {
    let fx = Fixture::with_scope(DesiredScope::Fleet).await;
    fx.hosts.fail("echo", "2");
    fx.apply(&config(vec![runtime("echo", "1", &["1", "2"])]))
        .await;
    fx.serving("echo", "1").await;
    let error = fx.switch("echo", "2").await.expect("the switch fails");
    assert!(error.contains("scripted start failure"), "{error}");
    let hosted = fx.context.registry.get("echo").unwrap();
    assert_eq!(hosted.active_version().as_deref(), Some("1"));
    assert_eq!(fx.desired("echo").await.as_deref(), Some("2"));
    fx.shutdown().await;
}

#[tokio::test]
async fn a_new_desired_version_is_a_switch() {
    let mut fx = Fixture::new().await;
    fx.apply(&config(vec![runtime("echo", "1", &["1", "2"])]))
        .await;
    fx.serving("echo", "1").await;
    assert_eq!(fx.switch("echo", "2").await, None);
    fx.serving("echo", "2").await;
    let switched = fx
        .event("switched", |e| e.kind == EventKind::Switched)
        .await;
    assert_eq!(switched.version, "2");
    assert_eq!(switched.message.as_deref(), Some("from 1"));
    // Make-before-break: the old version stopped only after the new one
    // started.
    let log = fx.hosts.log.entries();
    let position = |entry: &str| log.iter().position(|e| e == entry).unwrap();
    assert!(position("started 2") < position("stop 1"), "{log:?}");
    fx.shutdown().await;
}

#[tokio::test]
async fn a_failed_switch_keeps_the_old_version_and_puts_desired_state_back() {
    let mut fx = Fixture::new().await;
    fx.hosts.fail("echo", "2");
    fx.apply(&config(vec![runtime("echo", "1", &["1", "2"])]))
        .await;
    fx.serving("echo", "1").await;
    let error = fx.switch("echo", "2").await.expect("the switch fails");
    assert!(error.contains("scripted start failure"), "{error}");
    let hosted = fx.context.registry.get("echo").unwrap();
    assert_eq!(hosted.active_version().as_deref(), Some("1"));
    assert_eq!(fx.desired("echo").await.as_deref(), Some("1"));
    assert_eq!(hosted.status().last_error.as_deref(), Some(error.as_str()));
    let failed = fx
        .event("switch_failed", |e| e.kind == EventKind::SwitchFailed)
        .await;
    assert_eq!(failed.version, "2");
    assert_eq!(fx.hosts.latest("echo", "1").stops(), 0);
    fx.shutdown().await;
}

#[tokio::test]
async fn a_desired_version_the_config_lacks_is_refused_while_running() {
    let fx = Fixture::new().await;
    fx.apply(&config(vec![runtime("echo", "1", &["1", "2"])]))
        .await;
    fx.serving("echo", "1").await;
    let error = fx.switch("echo", "9").await.expect("refused");
    assert!(error.contains("no version \"9\" in the config"), "{error}");
    assert_eq!(fx.desired("echo").await.as_deref(), Some("1"));
    fx.shutdown().await;
}

#[tokio::test]
async fn a_crash_of_the_active_version_counts_as_a_restart() {
    let fx = Fixture::new().await;
    fx.apply(&config(vec![runtime("echo", "1", &["1"])])).await;
    fx.serving("echo", "1").await;
    let hosted = fx.context.registry.get("echo").unwrap();
    let crash = Event::Stopped {
        version: Arc::from("1"),
        reason: ExitReason::Crashed {
            status: ProcessStatus::Signal(9),
        },
    };
    track::note(&hosted, &fx.context.events, crash);
    let status = hosted.status();
    assert_eq!(status.restarts, 1);
    assert_eq!(status.state, RuntimeState::Restarting);
    assert_eq!(
        status.last_error.as_deref(),
        Some("version 1 exited: crashed (signal: 9 (SIGKILL))")
    );
    // An abort the operator asked for is a restart, not a failure.
    let aborted = Event::Stopped {
        version: Arc::from("1"),
        reason: ExitReason::Aborted {
            status: ProcessStatus::Signal(9),
        },
    };
    track::note(&hosted, &fx.context.events, aborted);
    assert_eq!(hosted.status().restarts, 1);
    fx.shutdown().await;
}

// ------------------------------------------------------------- the manager

#[tokio::test]
async fn runtimes_added_to_the_config_start_and_removed_ones_stop() {
    let fx = Fixture::new().await;
    fx.apply(&config(vec![runtime("echo", "1", &["1"])])).await;
    fx.serving("echo", "1").await;
    fx.apply(&config(vec![
        runtime("echo", "1", &["1"]),
        runtime("kv", "1", &["1"]),
    ]))
    .await;
    fx.serving("kv", "1").await;
    assert_eq!(fx.hosts.made("echo", "1").len(), 1, "echo was left alone");

    fx.apply(&config(vec![runtime("kv", "1", &["1"])])).await;
    assert!(fx.context.registry.get("echo").is_none());
    assert!(!fx.runner.worker_names().contains(&worker_id("echo")));
    assert_eq!(fx.hosts.latest("echo", "1").state(), FakeState::Stopped);
    assert_eq!(fx.hosts.latest("kv", "1").state(), FakeState::Started);
    fx.shutdown().await;
}

#[tokio::test]
async fn versions_added_and_removed_change_the_runtime_in_place() {
    let fx = Fixture::new().await;
    fx.apply(&config(vec![runtime("echo", "1", &["1", "2"])]))
        .await;
    fx.serving("echo", "1").await;
    let mut edited = runtime("echo", "1", &["1", "3"]);
    edited.call_timeout = Duration::from_secs(5);
    fx.apply(&config(vec![edited])).await;
    let hosted = fx.context.registry.get("echo").unwrap();
    let aggregate = hosted.aggregate().expect("still running");
    assert_eq!(aggregate.versions(), ["1", "3"]);
    assert_eq!(hosted.config().call_timeout, Duration::from_secs(5));
    let serving = fx.hosts.latest("echo", "1");
    assert_eq!((serving.starts(), serving.stops()), (1, 0), "no restart");
    assert_eq!(fx.hosts.made("echo", "1").len(), 1);
    // The added version switches like any other.
    assert_eq!(fx.switch("echo", "3").await, None);
    fx.serving("echo", "3").await;
    fx.shutdown().await;
}

#[tokio::test]
async fn a_changed_command_restarts_the_runtime_with_it() {
    let fx = Fixture::new().await;
    fx.apply(&config(vec![runtime("echo", "1", &["1"])])).await;
    fx.serving("echo", "1").await;
    let mut edited = runtime("echo", "1", &["1"]);
    edited.versions[0].args.push("--verbose".to_owned());
    fx.apply(&config(vec![edited.clone()])).await;
    fx.serving("echo", "1").await;
    let made = fx.hosts.made("echo", "1");
    assert_eq!(made.len(), 2, "a new host for the new command");
    assert_eq!(made[0].state(), FakeState::Stopped);
    assert_eq!(made[1].state(), FakeState::Started);
    let hosted = fx.context.registry.get("echo").unwrap();
    assert_eq!(hosted.config().versions[0].args, edited.versions[0].args);
    fx.shutdown().await;
}

#[tokio::test]
async fn removing_the_active_version_restarts_at_the_configs_active() {
    let fx = Fixture::new().await;
    fx.apply(&config(vec![runtime("echo", "1", &["1", "2"])]))
        .await;
    fx.serving("echo", "1").await;
    fx.apply(&config(vec![runtime("echo", "2", &["2"])])).await;
    fx.serving("echo", "2").await;
    assert_eq!(fx.hosts.latest("echo", "1").state(), FakeState::Stopped);
    assert_eq!(fx.desired("echo").await.as_deref(), Some("2"));
    fx.shutdown().await;
}

#[tokio::test]
async fn the_manager_applies_every_config_sent_to_it() {
    let fx = Fixture::new().await;
    let (configs, current) = watch::channel(Arc::new(config(vec![runtime("echo", "1", &["1"])])));
    let stop = CancellationToken::new();
    let manager = tokio::spawn(fx.manager().run(current, stop.clone()));
    fx.serving("echo", "1").await;
    configs.send_replace(Arc::new(config(vec![runtime("kv", "1", &["1"])])));
    fx.serving("kv", "1").await;
    timeout(WAIT, async {
        while fx.context.registry.get("echo").is_some() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("echo is removed");
    // A closed channel means no more configs: the manager keeps what runs
    // until it is stopped.
    drop(configs);
    tokio::task::yield_now().await;
    assert!(!manager.is_finished());
    stop.cancel();
    timeout(WAIT, manager).await.unwrap().unwrap().unwrap();
    fx.shutdown().await;
}

// ----------------------------------------------------- what changes in place

#[test]
fn adding_and_removing_versions_and_timeouts_change_in_place() {
    let old = runtime("echo", "1", &["1", "2"]);
    let mut fewer = old.clone();
    fewer.versions.pop();
    fewer.call_timeout = Duration::from_secs(1);
    assert!(changes_in_place(&old, &fewer));
    let more = runtime("echo", "1", &["1", "2", "3"]);
    assert!(changes_in_place(&old, &more));
    let mut active = old.clone();
    active.active = "2".to_owned();
    assert!(changes_in_place(&old, &active));
}

#[test]
fn process_settings_need_a_restart() {
    let old = runtime("echo", "1", &["1", "2"]);
    let mut args = old.clone();
    args.versions[0].args.push("--verbose".to_owned());
    assert!(!changes_in_place(&old, &args));
    let mut env = old.clone();
    env.versions[1]
        .env
        .insert("RUST_LOG".to_owned(), "debug".to_owned());
    assert!(!changes_in_place(&old, &env));
    let mut transition = old.clone();
    transition.transition = Transition::StopThenStart;
    assert!(!changes_in_place(&old, &transition));
    let mut restart = old.clone();
    restart.restart.max = Duration::from_secs(1);
    assert!(!changes_in_place(&old, &restart));
    let mut timeouts = old.clone();
    timeouts.timeouts.handshake = Duration::from_secs(30);
    assert!(!changes_in_place(&old, &timeouts));
    let mut liveness = old.clone();
    liveness.liveness.failures = 0;
    assert!(!changes_in_place(&old, &liveness));
}

// ------------------------------------------------------- relations in a fleet

/// Hooks in `dir` for endpoint `endpoint` whose relation hooks append
/// `<hook> <remote unit>` to `dir/log` (the others are missing: skipped).
fn logging_hooks(dir: &std::path::Path, endpoint: &str) -> HooksConfig {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join("log");
    for kind in ["joined", "changed", "departed", "broken"] {
        let path = dir.join(format!("{endpoint}-relation-{kind}"));
        let script = format!(
            "#!/bin/sh\necho \"$STEWARD_HOOK $STEWARD_REMOTE_UNIT\" >> {:?}\n",
            log.display().to_string()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    HooksConfig {
        dir: dir.to_owned(),
        timeout: Duration::from_secs(30),
        on_failure: OnHookFailure::Retry,
        retry: BackoffConfig::HOOK_RETRY,
    }
}

/// Waits until the hooks in `dir` have logged `lines`, in order.
async fn logged(dir: &std::path::Path, lines: &[&str]) {
    let path = dir.join("log");
    let found = timeout(WAIT, async {
        loop {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            if log.lines().collect::<Vec<_>>() == lines {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        panic!("the hooks never logged {lines:?}; they logged:\n{log}")
    });
}

/// Two agents on one etcd: `web` (with hooks) on a1, `kv` (without, so in
/// its relations at once) on a2. a1's hook driver runs joined and changed
/// for a2's unit, changed again when its settings change, and departed
/// when a2 dies and its lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_unit_runs_joined_changed_and_departed_through_etcd() {
    use steward_etcd::testing::{EtcdServer, unique_prefix};
    use steward_etcd::{EtcdOptions, EtcdStore};

    use crate::relations::records;

    let server = EtcdServer::shared().expect("an etcd server (scripts/etcd-deps)");
    let prefix = unique_prefix("driver-fleet");
    let connect = |agent: &str| {
        let options = EtcdOptions::new([server.endpoint()], agent)
            .prefix(&prefix)
            .lease_ttl(Duration::from_secs(2));
        EtcdStore::connect(options)
    };
    let web = Fixture::in_fleet("a1", Arc::new(connect("a1").await.unwrap())).await;
    let kv = Fixture::in_fleet("a2", Arc::new(connect("a2").await.unwrap())).await;
    let relation = RelationConfig {
        endpoints: [Endpoint::new("web", "db"), Endpoint::new("kv", "store")],
    };
    let charm = tempfile::tempdir().unwrap();
    let mut with_hooks = runtime("web", "1", &["1"]);
    with_hooks.hooks = Some(logging_hooks(charm.path(), "db"));
    kv.apply(&Config {
        runtimes: vec![runtime("kv", "1", &["1"])],
        relations: vec![relation.clone()],
        fleet: None,
    })
    .await;
    web.apply(&Config {
        runtimes: vec![with_hooks],
        relations: vec![relation],
        fleet: None,
    })
    .await;
    logged(
        charm.path(),
        &["db-relation-joined kv/a2", "db-relation-changed kv/a2"],
    )
    .await;

    // What a kv hook's relation-set commits, then publishes.
    let id = *kv.context.relations.all().keys().next().unwrap();
    let mut record = records::unit(&kv.context.store, id, "kv/a2")
        .await
        .unwrap()
        .unwrap();
    record.settings.insert("host".into(), "10.0.0.2".into());
    record.version += 1;
    kv.context
        .store
        .commit_records(vec![records::set_unit(id, "kv/a2", &record)])
        .await
        .unwrap();
    kv.context
        .relations
        .source()
        .published(id, "kv/a2", &record);
    logged(
        charm.path(),
        &[
            "db-relation-joined kv/a2",
            "db-relation-changed kv/a2",
            "db-relation-changed kv/a2",
        ],
    )
    .await;
    let web_id = *web.context.relations.all().keys().next().unwrap();
    let seen = web
        .context
        .relations
        .source()
        .settings(web_id, "kv/a2")
        .await
        .unwrap();
    assert_eq!(seen.unwrap()["host"], "10.0.0.2");

    // a2 dies: nothing is revoked; its lease runs out.
    kv.shutdown().await;
    logged(
        charm.path(),
        &[
            "db-relation-joined kv/a2",
            "db-relation-changed kv/a2",
            "db-relation-changed kv/a2",
            "db-relation-departed kv/a2",
        ],
    )
    .await;
    web.shutdown().await;
}
