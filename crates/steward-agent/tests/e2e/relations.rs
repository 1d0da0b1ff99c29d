//! End-to-end tests of relations: the real binary with two runtimes, `web`
//! and `kv`, each with shell hooks in its own charm directory, related
//! through `web:db` and `kv:store`. `kv` publishes its address with
//! `relation-set`; `web` reads it with `relation-get` in its
//! relation-changed; a settings edit propagates; removing the relation (or
//! a runtime) runs departed then broken on both sides; a restart re-runs
//! nothing that was committed; crashes at each step of a relation hook are
//! recovered exactly.
//!
//! Every hook appends `<runtime> <hook> <remote unit>` to one log; the
//! tests wait for lines there (and for the API), never for time.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    Agent, DEADLINE, Options, demo_relations_config, eventually, write_atomically,
};

/// Two charm directories, `web/hooks` and `kv/hooks`, and the log all
/// their hooks append to.
struct Charms {
    root: TempDir,
}

const RUNTIMES: [&str; 2] = ["web", "kv"];
const UNIT_HOOKS: [&str; 5] = ["install", "config-changed", "start", "upgrade", "stop"];

impl Charms {
    fn new() -> Self {
        let root = TempDir::new().unwrap();
        for runtime in RUNTIMES {
            std::fs::create_dir_all(root.path().join(runtime).join("hooks")).unwrap();
        }
        let charms = Self { root };
        for runtime in RUNTIMES {
            for hook in UNIT_HOOKS {
                charms.hook(runtime, hook, "");
            }
        }
        charms
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Writes `runtime`'s hook `name`: logs `<runtime> <hook> <remote
    /// unit>`, then runs `body` (with `set -e`: a failing tool fails it).
    fn hook(&self, runtime: &str, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let log = self.path("log").display().to_string();
        let script = format!(
            "#!/bin/sh\nset -e\necho \"$STEWARD_RUNTIME $STEWARD_HOOK $STEWARD_REMOTE_UNIT\" >> {log:?}\n{body}\n"
        );
        let path = self.root.path().join(runtime).join("hooks").join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The standard relation hooks: `kv` publishes `host` and its `port`
    /// setting when web joins and whenever its settings change; `web`
    /// records what it reads of kv, and what it sees when kv departs.
    fn relation_hooks(&self) {
        for (runtime, endpoint) in [("web", "db"), ("kv", "store")] {
            for kind in ["joined", "changed", "departed", "broken"] {
                self.hook(runtime, &format!("{endpoint}-relation-{kind}"), "");
            }
        }
        let seen = self.path("seen").display().to_string();
        self.hook(
            "kv",
            "store-relation-joined",
            "relation-set host=127.0.0.1 port=\"$(config-get port)\"",
        );
        self.hook(
            "kv",
            "config-changed",
            "for id in $(relation-ids store); do relation-set -r \"$id\" port=\"$(config-get port)\"; done",
        );
        self.hook(
            "web",
            "db-relation-changed",
            &format!(
                "echo \"changed $(relation-get host) $(relation-get port) [$(relation-list)]\" >> {seen:?}"
            ),
        );
        self.hook(
            "web",
            "db-relation-departed",
            &format!(
                "echo \"departed $(relation-get host) $(relation-get port) [$(relation-list)] $STEWARD_RELATION_ID\" >> {seen:?}"
            ),
        );
    }

    /// A config of `web` and `kv` (kv's `port` setting as given), with
    /// the relation or without it.
    fn config(&self, port: u16, related: bool) -> String {
        let command = serde_json::to_string(crate::support::BIN).unwrap();
        let mut text = String::new();
        for runtime in RUNTIMES {
            let hooks =
                serde_json::to_string(&self.root.path().join(runtime).join("hooks")).unwrap();
            text.push_str(&format!(
                "[[runtime]]\nid = \"{runtime}\"\nactive = \"1.0.0\"\nhooks = {hooks}\non-hook-failure = \"retry\"\n[runtime.hook-retry]\ninitial = \"100ms\"\nmax = \"200ms\"\n[runtime.restart]\ninitial = \"100ms\"\nmax = \"1s\"\n[runtime.settings]\nport = {port}\n[[runtime.version]]\nversion = \"1.0.0\"\ncommand = {command}\nargs = [\"example-runtime\", \"echo\", \"--version\", \"1.0.0\"]\n\n"
            ));
        }
        if related {
            text.push_str("[[relation]]\nendpoints = [\"web:db\", \"kv:store\"]\n");
        }
        text
    }

    fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path("steward.toml");
        crate::support::write_atomically(&path, text);
        path
    }

    fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(file))
            .unwrap_or_default()
            .lines()
            .map(|line| line.trim_end().to_owned())
            .collect()
    }

    /// The hooks that ran, as `<runtime> <hook> <remote unit>`.
    fn log(&self) -> Vec<String> {
        self.lines("log")
    }

    /// The log lines of `runtime`'s relation hooks.
    fn relation_log(&self, runtime: &str) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|line| line.starts_with(&format!("{runtime} ")) && line.contains("-relation-"))
            .collect()
    }

    /// Waits until `file` has a line equal to `line`; returns all lines.
    async fn wait_line(&self, file: &str, line: &str) -> Vec<String> {
        eventually(&format!("{line:?} in {file}"), DEADLINE, || async move {
            let lines = self.lines(file);
            lines.iter().any(|l| l == line).then_some(lines)
        })
        .await
    }
}

fn options(data: &Path, config: &Path) -> Options {
    Options {
        name: Some("a1".to_owned()),
        ..Options::with_config(data, config)
    }
}

/// Waits until every runtime's hooks are idle.
async fn wait_idle(agent: &Agent) {
    for runtime in RUNTIMES {
        let what = format!("the hooks of {runtime} idle");
        eventually(&what, DEADLINE, || async move {
            let (status, detail) = agent.api.get(&format!("/v1/runtimes/{runtime}")).await;
            (status == StatusCode::OK && detail["hooks"]["state"] == "idle").then_some(())
        })
        .await;
    }
}

async fn relations(agent: &Agent) -> Value {
    let (status, list) = agent.api.get("/v1/relations").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list
}

/// Starts an agent on the related config and waits until web has read
/// kv's address (port 7000).
async fn related(charms: &Charms, data: &Path) -> (PathBuf, Agent) {
    charms.relation_hooks();
    let config = charms.write_config(&charms.config(7000, true));
    let agent = Agent::start(options(data, &config)).await;
    charms
        .wait_line("seen", "changed 127.0.0.1 7000 [kv/a1]")
        .await;
    wait_idle(&agent).await;
    (config, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn related_runtimes_learn_each_others_settings_and_edits_propagate() {
    let charms = Charms::new();
    let data = TempDir::new().unwrap();
    let (config, agent) = related(&charms, data.path()).await;

    // Joined is followed by changed for that unit, on both sides; web's
    // first changed may see kv before or after kv's relation-set, never
    // anything else.
    let web = charms.relation_log("web");
    assert_eq!(
        web[..2],
        [
            "web db-relation-joined kv/a1",
            "web db-relation-changed kv/a1"
        ]
    );
    assert!(
        web[2..]
            .iter()
            .all(|line| line == "web db-relation-changed kv/a1"),
        "{web:?}"
    );
    assert_eq!(
        charms.relation_log("kv"),
        [
            "kv store-relation-joined web/a1",
            "kv store-relation-changed web/a1"
        ]
    );
    // What web reads of kv is kv's settings as committed by one of kv's
    // hooks: its config-changed may set the port before kv joined
    // (`relation-set -r` works before the other side is there), its joined
    // sets the host.
    let seen = charms.lines("seen");
    let possible = [
        "changed   [kv/a1]",
        "changed  7000 [kv/a1]",
        "changed 127.0.0.1 7000 [kv/a1]",
    ];
    assert!(
        seen.iter().all(|line| possible.contains(&line.as_str())),
        "{seen:?}"
    );
    // Relation hooks start after `start`.
    let log = charms.log();
    let started = log.iter().position(|line| line == "web start").unwrap();
    let joined = log
        .iter()
        .position(|line| line == "web db-relation-joined kv/a1")
        .unwrap();
    assert!(started < joined, "{log:?}");

    // The API and the CLI show the relation.
    let list = relations(&agent).await;
    assert_eq!(
        list["relations"],
        serde_json::json!([{
            "id": 0,
            "state": "alive",
            "peer": false,
            "endpoints": [
                {"runtime": "web", "endpoint": "db", "units": ["web/a1"]},
                {"runtime": "kv", "endpoint": "store", "units": ["kv/a1"]},
            ],
        }])
    );
    let detail = agent.api.detail("kv").await;
    assert_eq!(
        detail["relations"],
        serde_json::json!([{
            "id": 0,
            "endpoint": "store",
            "state": "alive",
            "remote": {"runtime": "web", "endpoint": "db", "units": ["web/a1"]},
            "settings": {"host": "127.0.0.1", "port": "7000"},
        }])
    );
    let status = agent.cli(&["status"]).await;
    assert!(
        status
            .success()
            .contains("0         alive  web:db (web/a1) <-> kv:store (kv/a1)"),
        "{}",
        status.success()
    );

    // A settings edit: kv's config-changed sets the new port, and web's
    // relation-changed reads it.
    charms.write_config(&charms.config(7001, true));
    charms
        .wait_line("seen", "changed 127.0.0.1 7001 [kv/a1]")
        .await;
    wait_idle(&agent).await;
    // web's config-changed set nothing: kv ran no relation-changed.
    assert_eq!(charms.relation_log("kv").len(), 2);
    drop(config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reruns_nothing_committed_and_a_removed_relation_departs_then_breaks() {
    let charms = Charms::new();
    let data = TempDir::new().unwrap();
    let (config, mut agent) = related(&charms, data.path()).await;
    agent.stop_with(Signal::SIGTERM, DEADLINE).await;
    let before = charms.log();

    let agent = Agent::start(options(data.path(), &config)).await;
    // Each side runs config-changed (every start does); kv's sets the
    // port it already has, which changes nothing.
    eventually("config-changed on both sides", DEADLINE, || async {
        let after = charms.log();
        let new = &after[before.len().min(after.len())..];
        let configured = |runtime: &str| {
            new.iter()
                .any(|line| *line == format!("{runtime} config-changed"))
        };
        (configured("web") && configured("kv")).then_some(())
    })
    .await;
    wait_idle(&agent).await;
    let after = charms.log();
    let new: Vec<&String> = after[before.len()..].iter().collect();
    assert!(
        new.iter().all(|line| line.ends_with(" config-changed")),
        "a restart ran only config-changed: {new:?}"
    );

    // The relation leaves the config: each side departs the other, then
    // breaks; the departing unit's settings are still readable, and it is
    // no longer listed.
    charms.write_config(&charms.config(7000, false));
    charms.wait_line("log", "web db-relation-broken").await;
    charms.wait_line("log", "kv store-relation-broken").await;
    for (runtime, endpoint, remote) in [("web", "db", "kv/a1"), ("kv", "store", "web/a1")] {
        let log = charms.relation_log(runtime);
        assert_eq!(
            log[log.len() - 2..],
            [
                format!("{runtime} {endpoint}-relation-departed {remote}"),
                format!("{runtime} {endpoint}-relation-broken"),
            ],
            "{log:?}"
        );
    }
    assert_eq!(
        charms.lines("seen").last().unwrap(),
        "departed 127.0.0.1 7000 [] db:0"
    );
    let list = eventually("the relation gone", DEADLINE, || async {
        let list = relations(&agent).await;
        list["relations"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(list)
    })
    .await;
    assert_eq!(list["relations"], serde_json::json!([]));
    assert!(
        agent.api.detail("web").await["relations"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Added again, it is a new relation (id 1), joined afresh.
    let joined_before = charms
        .relation_log("web")
        .iter()
        .filter(|line| line.contains("joined"))
        .count();
    charms.write_config(&charms.config(7000, true));
    eventually("a new relation", DEADLINE, || async {
        let list = relations(&agent).await;
        (list["relations"][0]["id"] == 1).then_some(())
    })
    .await;
    eventually("web joined again", DEADLINE, || async {
        let joined = charms
            .relation_log("web")
            .iter()
            .filter(|line| line.contains("joined"))
            .count();
        (joined == joined_before + 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_runtime_ends_its_relations_first_then_stops() {
    let charms = Charms::new();
    let data = TempDir::new().unwrap();
    let (_config, agent) = related(&charms, data.path()).await;
    // Only web stays: kv and the relation go.
    let web_only = charms.config(7000, false);
    let web_only = web_only[..web_only.find("[[runtime]]\nid = \"kv\"").unwrap()].to_owned();
    charms.write_config(&web_only);
    charms.wait_line("log", "kv stop").await;
    let log = charms.log();
    let at = |line: &str| {
        log.iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("{line:?} not in {log:?}"))
    };
    let kv_stop = at("kv stop");
    assert!(at("kv store-relation-departed web/a1") < at("kv store-relation-broken"));
    assert!(at("kv store-relation-broken") < kv_stop);
    assert!(
        at("web db-relation-broken") < kv_stop,
        "both sides end first: {log:?}"
    );
    eventually("kv gone from the API", DEADLINE, || async {
        let (status, _) = agent.api.get("/v1/runtimes/kv").await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert!(
        relations(&agent).await["relations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// A crash right after each step of kv's `store-relation-joined` (the hook
/// that sets kv's address): `pending` (written before its process starts),
/// `done` (after it succeeded, before the one transaction that commits it
/// with its settings and relation state), `committed` (after that
/// transaction). After the restart web reads the address, the joined ran
/// once (after `pending` its process never started: it counts as failed
/// and runs then), it is followed by exactly one changed, and no hook ran
/// that does not fit the relation's state.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_each_step_of_a_relation_hook_is_recovered_exactly() {
    for point in ["hook-pending", "hook-done", "hook-committed"] {
        let charms = Charms::new();
        charms.relation_hooks();
        let config = charms.write_config(&charms.config(7000, true));
        let data = TempDir::new().unwrap();
        // Not `Agent::start`: the crash may come before the banner.
        let crashed = Options {
            env: vec![(
                "STEWARD_FAILPOINT".to_owned(),
                format!("{point}:store-relation-joined"),
            )],
            ..options(data.path(), &config)
        }
        .run_to_exit("the agent aborts at its crash point")
        .await;
        assert!(
            !crashed.status.success(),
            "{point}: the agent aborted ({})",
            crashed.status
        );

        let agent = Agent::start(options(data.path(), &config)).await;
        charms
            .wait_line("seen", "changed 127.0.0.1 7000 [kv/a1]")
            .await;
        wait_idle(&agent).await;
        let kv = charms.relation_log("kv");
        assert_eq!(
            kv,
            [
                "kv store-relation-joined web/a1",
                "kv store-relation-changed web/a1"
            ],
            "{point}"
        );
        // (web's hooks run meanwhile: one of them may have been cut short
        // by the crash too, which is not what is checked here.)
        let kv_failed = agent
            .stderr
            .text()
            .lines()
            .any(|line| line.contains("it counts as failed") && line.contains("kv"));
        assert_eq!(kv_failed, point == "hook-pending", "{point}");
        let stderr = agent.stderr.text();
        assert!(!stderr.contains("does not fit"), "{point}: {stderr}");
        let detail = agent.api.detail("kv").await;
        assert_eq!(
            detail["relations"][0]["settings"],
            serde_json::json!({"host": "127.0.0.1", "port": "7000"}),
            "{point}"
        );
    }
}

/// SIGKILL while a relation hook runs: at the next start it counts as
/// failed, runs again, and the relation ends up as if nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_a_relation_hook_reruns_it_as_failed() {
    let charms = Charms::new();
    charms.relation_hooks();
    let hang = charms.path("hang");
    std::fs::write(&hang, "").unwrap();
    let running = charms.path("running").display().to_string();
    charms.hook(
        "kv",
        "store-relation-joined",
        &format!(
            "if [ -e {hang:?} ]; then touch {running:?}; sleep 300; fi\nrelation-set host=127.0.0.1 port=\"$(config-get port)\"",
            hang = hang.display().to_string()
        ),
    );
    let config = charms.write_config(&charms.config(7000, true));
    let data = TempDir::new().unwrap();
    let mut agent = Agent::start(options(data.path(), &config)).await;
    eventually("the hook running", DEADLINE, || async {
        charms.path("running").exists().then_some(())
    })
    .await;
    agent.stop_with(Signal::SIGKILL, DEADLINE).await;
    std::fs::remove_file(&hang).unwrap();

    let agent = Agent::start(options(data.path(), &config)).await;
    charms
        .wait_line("seen", "changed 127.0.0.1 7000 [kv/a1]")
        .await;
    wait_idle(&agent).await;
    assert!(agent.stderr.text().contains("it counts as failed"));
    let kv = charms.relation_log("kv");
    assert_eq!(
        kv,
        [
            "kv store-relation-joined web/a1",
            "kv store-relation-joined web/a1",
            "kv store-relation-changed web/a1"
        ]
    );
}

/// A peer relation (`[[runtime.peer]]`) on one agent: it exists, its hooks
/// can name it, the unit is in it alone (a unit never sees itself: no
/// joined runs until another agent's unit of the runtime joins, in fleet
/// mode), and removing it runs relation-broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_relation_on_one_agent_has_the_unit_alone() {
    let charms = Charms::new();
    let ids = charms.path("ids").display().to_string();
    charms.hook("web", "start", &format!("relation-ids cluster > {ids:?}"));
    charms.hook("web", "cluster-relation-joined", "");
    charms.hook("web", "cluster-relation-broken", "");
    let peered = |on: bool| {
        let text = charms.config(7000, false);
        let (web, kv) = text.split_at(text.find("[[runtime]]\nid = \"kv\"").unwrap());
        let web = match on {
            true => web.replacen(
                "[[runtime.version]]",
                "[[runtime.peer]]\nname = \"cluster\"\n[[runtime.version]]",
                1,
            ),
            false => web.to_owned(),
        };
        format!("{web}{kv}")
    };
    let config = charms.write_config(&peered(true));
    let data = TempDir::new().unwrap();
    let agent = Agent::start(options(data.path(), &config)).await;
    charms.wait_line("log", "web start").await;
    wait_idle(&agent).await;
    assert_eq!(
        std::fs::read_to_string(charms.path("ids")).unwrap(),
        "cluster:0\n"
    );
    let list = relations(&agent).await;
    assert_eq!(
        list["relations"],
        serde_json::json!([{
            "id": 0,
            "state": "alive",
            "peer": true,
            "endpoints": [{"runtime": "web", "endpoint": "cluster", "units": ["web/a1"]}],
        }])
    );
    assert!(charms.relation_log("web").is_empty(), "{:?}", charms.log());

    charms.write_config(&peered(false));
    charms.wait_line("log", "web cluster-relation-broken").await;
    eventually("the peer relation gone", DEADLINE, || async {
        let list = relations(&agent).await;
        list["relations"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(charms.relation_log("web"), ["web cluster-relation-broken"]);
}

/// A relation that a config edit adds between two runtimes without hooks
/// is announced (`relation_created`) only once both units are in it: the
/// web page re-reads the relations on that event, and no later event
/// would tell it to look again. (The event used to come before the units
/// entered, and the page showed "no units yet" until a reload.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relation_added_by_an_edit_is_announced_with_its_units() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("steward.toml");
    std::fs::write(&config, demo_relations_config(false)).unwrap();
    let agent = Agent::start(Options::with_config(&dir.path().join("data"), &config)).await;
    agent.wait_active("echo", "1.0.0").await;
    let mut events = agent.api.events("/v1/events").await;

    write_atomically(&config, &demo_relations_config(true));
    let created = loop {
        let event = events
            .next(DEADLINE)
            .await
            .expect("no relation_created event after the edit");
        if event["kind"] == "relation_created" {
            break event;
        }
    };
    // Read at once, as the page does.
    let list = relations(&agent).await;
    let related = list["relations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|relation| relation["peer"] == false)
        .unwrap_or_else(|| panic!("no echo–kv relation after {created}: {list}"));
    for (end, runtime) in related["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["echo", "kv"])
    {
        assert_eq!(end["runtime"], runtime, "{list}");
        let units = end["units"].as_array().unwrap();
        assert!(
            units.len() == 1
                && units[0]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{runtime}/")),
            "right after {created}, {runtime}'s end has units {units:?}: {list}"
        );
    }
}
