//! [`FleetSource`] against a real etcd (`steward_etcd::testing`): several
//! agents, each with its own store and its own connection, share one
//! server under a prefix of their test's own. Every wait is for something
//! observable, bounded by [`WAIT`].

use std::collections::BTreeMap;
use std::time::Duration;

use steward_etcd::testing::{EtcdServer, unique_prefix};
use steward_etcd::{EtcdOptions, EtcdStore};
use steward_hooks::relation::RelationUnitsChange;
use steward_store::Store;
use tokio::time::timeout;

use super::*;
use crate::api::types::RelationLife;
use crate::config::Endpoint;

const WAIT: Duration = Duration::from_secs(20);

fn relation(id: u64, a: (&str, &str), b: (&str, &str)) -> Relation {
    Relation {
        id,
        endpoints: [Endpoint::new(a.0, a.1), Endpoint::new(b.0, b.1)],
        life: RelationLife::Alive,
    }
}

/// The relation between `web:db` and `kv:store`, with this agent's id.
fn db(id: u64) -> Relation {
    relation(id, ("web", "db"), ("kv", "store"))
}

/// The peer relation `kv:cluster`, with this agent's id.
fn cluster(id: u64) -> Relation {
    relation(id, ("kv", "cluster"), ("kv", "cluster"))
}

/// One agent: its store, its etcd connection, its source.
struct Agent {
    name: String,
    /// Held: the shared server stops with its last user.
    _server: Arc<EtcdServer>,
    _dir: tempfile::TempDir,
    store: Store,
    etcd: EtcdStore,
    source: FleetSource,
    known: watch::Sender<RelationMap>,
}

impl Agent {
    async fn start(prefix: &str, name: &str, relations: &[Relation]) -> Agent {
        Self::with_ttl(prefix, name, relations, Duration::from_secs(10)).await
    }

    /// An agent whose lease lives `ttl` after its last keep-alive.
    async fn with_ttl(prefix: &str, name: &str, relations: &[Relation], ttl: Duration) -> Agent {
        let server = EtcdServer::shared().expect("an etcd server (scripts/etcd-deps)");
        let options = EtcdOptions::new([server.endpoint()], name)
            .prefix(prefix)
            .lease_ttl(ttl);
        let etcd = EtcdStore::connect(options).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store.redb")).await.unwrap();
        let map = relations.iter().map(|r| (r.id, r.clone())).collect();
        let known = watch::channel(Arc::new(map)).0;
        let source = FleetSource::new(
            LocalSource::load(store.clone()).await.unwrap(),
            name.to_owned(),
            Arc::new(etcd.clone()),
            known.subscribe(),
        );
        Agent {
            name: name.to_owned(),
            _server: server,
            _dir: dir,
            store,
            etcd,
            source,
            known,
        }
    }

    fn unit(&self, runtime: &str) -> String {
        format!("{runtime}/{}", self.name)
    }

    /// What a hook's commit does: `settings` become `unit`'s in
    /// `relation`, with the next version, committed, then published.
    async fn set(&self, relation: u64, unit: &str, settings: &[(&str, &str)]) {
        let mut record = records::unit(&self.store, relation, unit)
            .await
            .unwrap()
            .unwrap_or_else(|| RelationUnit {
                runtime: unit.split('/').next().unwrap().to_owned(),
                ..RelationUnit::default()
            });
        record.settings = settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        record.version += 1;
        self.store
            .commit_records(vec![records::set_unit(relation, unit, &record)])
            .await
            .unwrap();
        self.source.published(relation, unit, &record);
    }

    /// A watch of `relation`'s units on `remote`'s side as `viewer` sees
    /// them.
    fn viewer(&self, relation: u64, remote: &str, viewer: &str) -> Viewer {
        let (sink, events) = mpsc::channel(64);
        let watch = self.source.watch(relation, remote, viewer, 1, sink);
        Viewer {
            events,
            seen: None,
            changes: Vec::new(),
            _watch: watch,
        }
    }

    /// Waits until `relation`'s members (as the API lists them) are
    /// `units`.
    async fn members(&self, relation: u64, units: &[&str]) {
        let wanted: Vec<String> = units.iter().map(|u| (*u).to_owned()).collect();
        let listed = timeout(WAIT, async {
            loop {
                let now: Vec<String> = self
                    .source
                    .members(relation)
                    .into_iter()
                    .map(|m| m.unit)
                    .collect();
                if now == wanted {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        listed.unwrap_or_else(|_| {
            panic!(
                "{}: members of {relation} never became {wanted:?} (now {:?})",
                self.name,
                self.source.members(relation)
            )
        });
    }
}

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The events of one watch, folded the way a hook queue folds them.
struct Viewer {
    events: mpsc::Receiver<UnitsEvent>,
    /// The units and versions the events add up to; `None` before the
    /// first.
    seen: Option<BTreeMap<String, u64>>,
    /// Every change received, in order.
    changes: Vec<RelationUnitsChange>,
    _watch: UnitsWatch,
}

impl Viewer {
    /// Takes events until the units they add up to satisfy `done`.
    async fn until(
        &mut self,
        what: &str,
        done: impl Fn(&BTreeMap<String, u64>) -> bool,
    ) -> BTreeMap<String, u64> {
        let found = timeout(WAIT, async {
            loop {
                if let Some(seen) = &self.seen
                    && done(seen)
                {
                    return seen.clone();
                }
                let event = self.events.recv().await.expect("the watch runs");
                assert_eq!(event.tag, 1);
                let seen = self.seen.get_or_insert_with(|| {
                    assert!(
                        event.change.departed.is_empty(),
                        "a first event departs nobody: {:?}",
                        event.change
                    );
                    BTreeMap::new()
                });
                for unit in &event.change.departed {
                    assert!(seen.remove(unit).is_some(), "{unit} departed unseen");
                }
                seen.extend(event.change.changed.clone());
                self.changes.push(event.change);
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("never {what}; changes so far: {:?}", self.changes))
    }
}

#[test]
fn relation_names_are_the_same_on_every_agent_and_tell_relations_apart() {
    assert_eq!(fleet_name(&db(0)), "kv:store,web:db");
    let reversed = relation(9, ("kv", "store"), ("web", "db"));
    assert_eq!(fleet_name(&reversed), fleet_name(&db(0)));
    assert_eq!(fleet_name(&cluster(3)), "kv:cluster");
    // Runtime ids may hold `.` and `-`: names joined with those would
    // collide; these do not.
    let dotted = relation(1, ("a", "b-c"), ("d.e", "f"));
    let peer = relation(2, ("a.b-c.d", "e"), ("a.b-c.d", "e"));
    assert_ne!(fleet_name(&dotted), fleet_name(&peer));
    for name in [fleet_name(&dotted), fleet_name(&peer)] {
        assert!(!name.contains('/') && !name.is_empty(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_and_settings_are_seen_across_agents_and_versions_grow() {
    let prefix = unique_prefix("fleet-rel-across");
    // The same relation has other local ids on each agent.
    let a1 = Agent::start(&prefix, "a1", &[db(0)]).await;
    let a2 = Agent::start(&prefix, "a2", &[db(7)]).await;
    let (web, kv) = (a1.unit("web"), a2.unit("kv"));

    let mut sees_kv = a1.viewer(0, "kv", &web);
    let empty = sees_kv.until("a first event", |_| true).await;
    assert!(empty.is_empty(), "{empty:?}");

    // Set before joining (a relation-set -r), then in: seen with them.
    a2.set(7, &kv, &[("host", "10.0.0.2")]).await;
    a2.source.enter(7, &kv, "kv").await.unwrap();
    a1.source.enter(0, &web, "web").await.unwrap();
    let seen = sees_kv.until("kv/a2 joined", |s| s.contains_key(&kv)).await;
    let first = seen[&kv];
    assert_eq!(
        a1.source.settings(0, &kv).await.unwrap(),
        Some(settings(&[("host", "10.0.0.2")]))
    );
    // The other way round, with empty settings; a unit never sees itself.
    let mut sees_web = a2.viewer(7, "web", &kv);
    sees_web
        .until("web/a1 joined", |s| s.contains_key(&web))
        .await;
    assert_eq!(
        a2.source.settings(7, &web).await.unwrap(),
        Some(BTreeMap::new())
    );
    assert!(
        a1.viewer(0, "web", &web)
            .until("", |_| true)
            .await
            .is_empty()
    );
    a1.members(0, &["kv/a2", "web/a1"]).await;
    a2.members(7, &["kv/a2", "web/a1"]).await;

    // A change: a higher version, the new settings.
    a2.set(7, &kv, &[("host", "10.0.0.2"), ("port", "7000")])
        .await;
    let seen = sees_kv
        .until("kv/a2 changed", |s| s.get(&kv) != Some(&first))
        .await;
    let second = seen[&kv];
    assert!(second > first, "{second} after {first}");
    assert_eq!(
        a1.source.settings(0, &kv).await.unwrap().unwrap()["port"],
        "7000"
    );

    // Entering again re-publishes the same settings: no change to anyone.
    // web/a2 joining is the barrier (a1's mirror sees the writes in order).
    a2.source.enter(7, &kv, "kv").await.unwrap();
    a2.source.enter(7, &a2.unit("web"), "web").await.unwrap();
    a1.members(0, &["kv/a2", "web/a1", "web/a2"]).await;
    let listed = a1.source.members(0);
    let version = listed.iter().find(|m| m.unit == kv).unwrap().version;
    assert_eq!(version, second, "a re-publish is not a change");
    a2.set(7, &kv, &[("host", "10.0.0.3")]).await;
    let seen = sees_kv
        .until("kv/a2 changed again", |s| s.get(&kv) != Some(&second))
        .await;
    assert!(seen[&kv] > second);
    assert!(
        sees_kv.changes.iter().all(|c| c.departed.is_empty()),
        "{:?}",
        sees_kv.changes
    );
    assert_eq!(
        sees_kv.changes.last().unwrap(),
        &RelationUnitsChange::changed([(kv.as_str(), seen[&kv])])
    );

    // An agent that watches nothing of the relation still reads settings
    // (from etcd).
    let a3 = Agent::start(&prefix, "a3", &[db(2)]).await;
    assert_eq!(
        a3.source.settings(2, &kv).await.unwrap(),
        Some(settings(&[("host", "10.0.0.3")]))
    );
    assert_eq!(a3.source.settings(2, "kv/nobody").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_agents_unit_departs_when_its_lease_expires_and_its_settings_stay_readable() {
    let prefix = unique_prefix("fleet-rel-dead");
    let a1 = Agent::start(&prefix, "a1", &[db(0)]).await;
    let a2 = Agent::with_ttl(&prefix, "a2", &[db(4)], Duration::from_secs(2)).await;
    let (web, kv) = (a1.unit("web"), a2.unit("kv"));
    a2.set(4, &kv, &[("host", "10.0.0.2")]).await;
    a2.source.enter(4, &kv, "kv").await.unwrap();
    let mut sees_kv = a1.viewer(0, "kv", &web);
    sees_kv.until("kv/a2 joined", |s| s.contains_key(&kv)).await;

    // Killed: no close, so no revoke; its keep-alives stop.
    drop(a2);
    let started = std::time::Instant::now();
    sees_kv.until("kv/a2 departed", |s| s.is_empty()).await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it left with its lease ({:?}), not before",
        started.elapsed()
    );
    assert_eq!(
        sees_kv.changes.last().unwrap(),
        &RelationUnitsChange::departed([kv.as_str()])
    );
    a1.members(0, &[]).await;
    // A relation-departed hook still reads what it had.
    assert_eq!(
        a1.source.settings(0, &kv).await.unwrap(),
        Some(settings(&[("host", "10.0.0.2")]))
    );

    // It comes back (a new lease): it joins again.
    let again = Agent::start(&prefix, "a2", &[db(4)]).await;
    again.set(4, &kv, &[("host", "10.0.0.9")]).await;
    again.source.enter(4, &kv, "kv").await.unwrap();
    sees_kv.until("kv/a2 back", |s| s.contains_key(&kv)).await;
    assert_eq!(
        a1.source.settings(0, &kv).await.unwrap().unwrap()["host"],
        "10.0.0.9"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_relation_has_every_unit_of_the_runtime_across_agents() {
    let prefix = unique_prefix("fleet-rel-peer");
    let mut agents = Vec::new();
    for (n, id) in [(1, 0), (2, 5), (3, 11)] {
        let agent = Agent::start(&prefix, &format!("a{n}"), &[cluster(id)]).await;
        let unit = agent.unit("kv");
        agent.set(id, &unit, &[("n", &n.to_string())]).await;
        agent.source.enter(id, &unit, "kv").await.unwrap();
        agents.push((agent, id));
    }
    let all = ["kv/a1", "kv/a2", "kv/a3"];
    for (agent, id) in &agents {
        let unit = agent.unit("kv");
        let others: Vec<&str> = all.iter().copied().filter(|u| *u != unit).collect();
        let mut viewer = agent.viewer(*id, "kv", &unit);
        let seen = viewer
            .until("the other two", |s| s.len() == others.len())
            .await;
        assert_eq!(seen.keys().map(String::as_str).collect::<Vec<_>>(), others);
        agent.members(*id, &all).await;
        for other in others {
            let n = &other[other.len() - 1..];
            assert_eq!(
                agent.source.settings(*id, other).await.unwrap(),
                Some(settings(&[("n", n)]))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_relation_takes_the_agents_units_out_unless_it_was_added_again() {
    let prefix = unique_prefix("fleet-rel-forget");
    let a1 = Agent::start(
        &prefix,
        "a1",
        &[db(0), relation(1, ("web", "db"), ("kv", "other"))],
    )
    .await;
    let a2 = Agent::start(&prefix, "a2", &[db(0)]).await;
    let (web, kv) = (a1.unit("web"), a2.unit("kv"));
    a1.source.enter(0, &web, "web").await.unwrap();
    a1.source.enter(1, &web, "web").await.unwrap();
    a2.source.enter(0, &kv, "kv").await.unwrap();
    let mut sees_web = a2.viewer(0, "web", &kv);
    let joined = sees_web
        .until("web/a1 joined", |s| s.contains_key(&web))
        .await[&web];

    // Removed from the config and added again (a new local id) while the
    // old one died: the unit entered the new one, and stays.
    a1.known.send_modify(|known| {
        let known = Arc::make_mut(known);
        known.get_mut(&0).unwrap().life = RelationLife::Dying;
        known.insert(3, db(3));
    });
    a1.source.enter(3, &web, "web").await.unwrap();
    a1.source.forget(0);
    a1.set(3, &web, &[("ready", "yes")]).await;
    sees_web
        .until("web/a1 changed", |s| {
            s.get(&web).is_some_and(|v| *v > joined)
        })
        .await;
    assert_eq!(
        a2.source.settings(0, &web).await.unwrap(),
        Some(settings(&[("ready", "yes")]))
    );
    assert!(
        sees_web.changes.iter().all(|c| c.departed.is_empty()),
        "{:?}",
        sees_web.changes
    );

    // Gone for good: the unit leaves the fleet's relation.
    a1.known.send_modify(|known| {
        Arc::make_mut(known).remove(&0);
    });
    a1.source.forget(3);
    sees_web.until("web/a1 departed", |s| s.is_empty()).await;
    a1.members(3, &[]).await;
    // Its other relation is not touched.
    let other = a1.etcd.relation_members("kv:other,web:db").await.unwrap().1;
    assert_eq!(other.keys().collect::<Vec<_>>(), [&web]);
}
