//! End-to-end test of relations across agents: three real agents share one
//! real etcd (a `[fleet]` table in their config), each hosting `echo` with
//! shell hooks and a peer relation `cluster`, so every unit of `echo` in the
//! fleet is a member. Each unit publishes its name with `relation-set`;
//! each sees the two others join with their settings, and sees a SIGKILLed
//! agent's unit depart once its lease has expired.
//!
//! Every hook appends `<unit> <hook> <remote unit> <remote's name setting>`
//! to one log; the test waits for lines there, never for time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use steward_etcd::testing::EtcdServer;
use tempfile::TempDir;

use crate::support::{Agent, DEADLINE, Options, eventually};

/// The hooks directory and the log its hooks append to.
struct Charm {
    root: TempDir,
}

impl Charm {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let root = TempDir::new().unwrap();
        let hooks = root.path().join("hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        let log = root.path().join("log").display().to_string();
        for (kind, body) in [
            ("joined", "relation-set name=\"$STEWARD_UNIT\""),
            ("changed", ""),
            ("departed", ""),
            ("broken", ""),
        ] {
            let script = format!(
                "#!/bin/sh\nset -e\n{body}\necho \"$STEWARD_UNIT $STEWARD_HOOK $STEWARD_REMOTE_UNIT $(relation-get name 2>/dev/null || true)\" >> {log:?}\n"
            );
            let path = hooks.join(format!("cluster-relation-{kind}"));
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { root }
    }

    /// A config of `echo` with the peer relation, in the fleet on `etcd`.
    fn config(&self, etcd: &str) -> PathBuf {
        let command = serde_json::to_string(crate::support::BIN).unwrap();
        let hooks = serde_json::to_string(&self.root.path().join("hooks")).unwrap();
        let text = format!(
            "[fleet]\nendpoints = [{etcd:?}]\nlease-ttl = \"2s\"\n\n[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\"\nhooks = {hooks}\n[runtime.hook-retry]\ninitial = \"100ms\"\nmax = \"200ms\"\n[[runtime.peer]]\nname = \"cluster\"\n[[runtime.version]]\nversion = \"1.0.0\"\ncommand = {command}\nargs = [\"example-runtime\", \"echo\", \"--version\", \"1.0.0\"]\n"
        );
        let path = self.root.path().join("steward.toml");
        crate::support::write_atomically(&path, &text);
        path
    }

    /// The log's lines, trimmed.
    fn log(&self) -> BTreeSet<String> {
        std::fs::read_to_string(self.root.path().join("log"))
            .unwrap_or_default()
            .lines()
            .map(|line| line.trim_end().to_owned())
            .collect()
    }

    async fn wait_for(&self, lines: &[String]) {
        let what = format!("the hook lines {lines:?}");
        eventually(&what, DEADLINE, || async move {
            let log = self.log();
            lines.iter().all(|line| log.contains(line)).then_some(())
        })
        .await;
    }
}

async fn agent(name: &str, data: &Path, config: &Path) -> Agent {
    let mut options = Options::with_config(&data.join(name), config);
    options.name = Some(name.to_owned());
    let agent = Agent::start(options).await;
    agent.wait_running(&["echo"]).await;
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_relation_spans_the_fleet_and_a_dead_agents_unit_departs() {
    let etcd = EtcdServer::start().expect(
        "cannot start etcd: install it with scripts/etcd-deps (Debian's etcd-server package)",
    );
    let charm = Charm::new();
    let config = charm.config(&etcd.endpoint());
    let data = TempDir::new().unwrap();
    let names = ["a1", "a2", "a3"];
    let mut agents = Vec::new();
    for name in names {
        agents.push(agent(name, data.path(), &config).await);
    }

    // Every unit joins every other, then (once the other's joined hook
    // has set it) reads the name it set in a changed hook.
    let mut expected = Vec::new();
    for own in names {
        for other in names.iter().filter(|other| **other != own) {
            expected.push(format!(
                "echo/{own} cluster-relation-changed echo/{other} echo/{other}"
            ));
        }
    }
    charm.wait_for(&expected).await;
    for own in names {
        for other in names.iter().filter(|other| **other != own) {
            let joined = format!("echo/{own} cluster-relation-joined echo/{other}");
            assert!(
                charm.log().iter().any(|line| line.starts_with(&joined)),
                "{joined}: {:?}",
                charm.log()
            );
        }
    }
    assert!(
        !charm.log().iter().any(|line| line.contains("departed")),
        "{:?}",
        charm.log()
    );
    let (_, relations) = agents[0].api.get("/v1/relations").await;
    let units = &relations["relations"][0]["endpoints"][0]["units"];
    assert_eq!(units, &serde_json::json!(["echo/a1", "echo/a2", "echo/a3"]));

    // a3 dies without a word: the others see its unit depart once its
    // lease (2 s) has expired.
    agents[2].signal(Signal::SIGKILL);
    charm
        .wait_for(&[
            "echo/a1 cluster-relation-departed echo/a3 echo/a3".to_owned(),
            "echo/a2 cluster-relation-departed echo/a3 echo/a3".to_owned(),
        ])
        .await;
    assert!(
        !charm
            .log()
            .iter()
            .any(|line| line.contains("departed echo/a1") || line.contains("departed echo/a2")),
        "only a3 departed: {:?}",
        charm.log()
    );
}
