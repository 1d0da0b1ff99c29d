//! The fleet store against real etcd servers: presence under a lease (its
//! expiry, its revoke, its loss during an outage), relation settings across
//! two agents, watches that resume after a disconnect or list again after
//! a compaction, and outage detection when etcd is frozen (`SIGSTOP`).
//!
//! Tests that only read and write share one server (each under its own
//! prefix); a test that freezes etcd starts its own. One agent is cut off
//! from a running etcd with a freezable [`Proxy`].

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test: a panic is its failure report"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use steward_etcd::testing::{EtcdServer, Proxy, unique_prefix};
use steward_etcd::{Error, EtcdOptions, EtcdStore, KeyChanges, KeyEvent};
use steward_store::{FleetState, Presence, RelationSettings};
use steward_worker::{QueueWatcher, Watcher};
use tokio::time::Instant;

/// The longest any expected change may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(15);

/// What the issue promises: an outage is noticed within this, even when
/// etcd is frozen with its connections open.
const NOTICED_WITHIN: Duration = Duration::from_secs(5);

fn shared_server() -> Arc<EtcdServer> {
    EtcdServer::shared().unwrap_or_else(|error| panic!("{error}"))
}

fn options(endpoint: &str, agent: &str, prefix: &str) -> EtcdOptions {
    EtcdOptions::new([endpoint], agent).prefix(prefix)
}

async fn connect(options: EtcdOptions) -> EtcdStore {
    EtcdStore::connect(options).await.unwrap()
}

/// What a watch of keys has delivered, applied in order; checks that no
/// key's change comes twice or goes back in revision.
#[derive(Debug, Default)]
struct Mirror {
    members: BTreeMap<String, Vec<u8>>,
    revisions: BTreeMap<String, i64>,
    /// Every event, as delivered.
    events: Vec<KeyEvent>,
}

impl Mirror {
    fn apply(&mut self, changes: KeyChanges) {
        for event in changes.events {
            if let Some(previous) = self.revisions.get(&event.key) {
                assert!(
                    event.mod_revision > *previous,
                    "a change of {} delivered twice or out of order: revision {} after {previous}",
                    event.key,
                    event.mod_revision
                );
            }
            self.revisions.insert(event.key.clone(), event.mod_revision);
            match &event.value {
                Some(value) => self.members.insert(event.key.clone(), value.clone()),
                None => self.members.remove(&event.key),
            };
            self.events.push(event);
        }
    }

    /// The last event delivered for `key`.
    fn last(&self, key: &str) -> &KeyEvent {
        self.events
            .iter()
            .rev()
            .find(|event| event.key == key)
            .unwrap_or_else(|| panic!("no event for {key}: {self:?}"))
    }

    fn has(&self, expected: &[(&str, &str)]) -> bool {
        let expected: BTreeMap<String, Vec<u8>> = expected
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.as_bytes().to_vec()))
            .collect();
        self.members == expected
    }
}

/// Takes changes from `watcher` into `mirror` until `done` holds.
async fn follow_until(
    watcher: &mut QueueWatcher<KeyChanges>,
    mirror: &mut Mirror,
    what: &str,
    done: impl Fn(&Mirror) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    while !done(mirror) {
        let changes = tokio::time::timeout_at(deadline, watcher.next_change())
            .await
            .unwrap_or_else(|_| panic!("{what}: not seen within {DEADLINE:?}; seen: {mirror:?}"))
            .expect("the watch failed");
        mirror.apply(changes);
    }
}

/// Waits until `store`'s health is connected (or not); returns how long.
async fn health_becomes(store: &EtcdStore, connected: bool, within: Duration) -> Duration {
    let start = Instant::now();
    let mut watcher = store.watch_health();
    while store.health().is_connected() != connected {
        tokio::time::timeout_at(start + within, watcher.next_change())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "health not {} within {within:?}: {:?}",
                    if connected {
                        "connected"
                    } else {
                        "disconnected"
                    },
                    store.health()
                )
            })
            .expect("the health watcher failed");
    }
    start.elapsed()
}

/// Polls `check` until it is true, failing after [`DEADLINE`].
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn unit_names(store: &EtcdStore) -> Vec<String> {
    store
        .units()
        .await
        .unwrap()
        .into_iter()
        .map(|unit| unit.unit)
        .collect()
}

#[tokio::test]
async fn connecting_to_no_etcd_fails_naming_the_endpoints() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let options = options(&endpoint, "a1", "/steward/").request_timeout(Duration::from_secs(1));
    let error = EtcdStore::connect(options).await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains(&endpoint), "{error}");
}

#[tokio::test]
async fn relation_settings_are_seen_across_agents() {
    let server = shared_server();
    let prefix = unique_prefix("relations");
    let a: Arc<dyn FleetState> =
        Arc::new(connect(options(&server.endpoint(), "a1", &prefix)).await);
    let b: Arc<dyn FleetState> =
        Arc::new(connect(options(&server.endpoint(), "b1", &prefix)).await);
    // The agent holds the traits, not the backend.
    let (a_rel, b_rel): (Arc<dyn RelationSettings>, Arc<dyn RelationSettings>) =
        (a.clone(), b.clone());
    let a_presence: Arc<dyn Presence> = a.clone();
    assert_eq!(a_presence.unit_name("kv"), "kv/a1");

    let mut b_watch = b_rel.watch_relation("db").unwrap();
    let mut b_seen = Mirror::default();
    follow_until(&mut b_watch, &mut b_seen, "the empty membership", |_| true).await;
    assert!(b_seen.members.is_empty(), "{b_seen:?}");

    a_rel
        .set_relation_settings("db", "kv/a1", b"host=a".to_vec())
        .await
        .unwrap();
    b_rel
        .set_relation_settings("db", "web/b1", b"want=db".to_vec())
        .await
        .unwrap();
    follow_until(&mut b_watch, &mut b_seen, "both members", |m| {
        m.has(&[("kv/a1", "host=a"), ("web/b1", "want=db")])
    })
    .await;
    let expected = BTreeMap::from([
        ("kv/a1".to_owned(), b"host=a".to_vec()),
        ("web/b1".to_owned(), b"want=db".to_vec()),
    ]);
    assert_eq!(a_rel.relation_members("db").await.unwrap(), expected);
    assert_eq!(b_rel.relation_members("db").await.unwrap(), expected);
    assert!(b_rel.relation_members("other").await.unwrap().is_empty());

    // A settings change keeps the member's incarnation; leaving and joining
    // again makes a new one.
    let joined = b_seen.last("kv/a1").create_revision;
    a_rel
        .set_relation_settings("db", "kv/a1", b"host=a2".to_vec())
        .await
        .unwrap();
    follow_until(&mut b_watch, &mut b_seen, "the new settings", |m| {
        m.has(&[("kv/a1", "host=a2"), ("web/b1", "want=db")])
    })
    .await;
    assert_eq!(b_seen.last("kv/a1").create_revision, joined);
    a_rel.remove_relation_settings("db", "kv/a1").await.unwrap();
    follow_until(&mut b_watch, &mut b_seen, "kv/a1 leaving", |m| {
        m.has(&[("web/b1", "want=db")])
    })
    .await;
    a_rel
        .set_relation_settings("db", "kv/a1", b"host=a3".to_vec())
        .await
        .unwrap();
    follow_until(&mut b_watch, &mut b_seen, "kv/a1 joining again", |m| {
        m.has(&[("kv/a1", "host=a3"), ("web/b1", "want=db")])
    })
    .await;
    assert!(b_seen.last("kv/a1").create_revision > joined);

    // An agent writes only its own units; names cannot split keys.
    let error = a_rel
        .set_relation_settings("db", "web/b1", b"hijack".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            steward_store::Error::InvalidName { what: "unit", .. }
        ),
        "{error:?}"
    );
    let error = a_rel.watch_relation("a/b").unwrap_err();
    assert!(
        matches!(
            error,
            steward_store::Error::InvalidName {
                what: "relation",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        b_rel.relation_members("db").await.unwrap()["web/b1"],
        b"want=db"
    );
}

#[tokio::test]
async fn units_are_listed_with_their_status_and_last_seen() {
    let server = shared_server();
    let prefix = unique_prefix("units");
    let a = connect(options(&server.endpoint(), "a1", &prefix)).await;
    let b = connect(options(&server.endpoint(), "b1", &prefix)).await;
    a.publish_unit("echo/a1", b"1.0.0 active".to_vec())
        .await
        .unwrap();
    b.publish_unit("echo/b1", b"2.0.0 active".to_vec())
        .await
        .unwrap();
    let presence: &dyn Presence = &b;
    let units = presence.units().await.unwrap();
    let names: Vec<_> = units
        .iter()
        .map(|u| {
            (
                u.unit.as_str(),
                u.runtime.as_str(),
                u.agent.as_str(),
                &u.status[..],
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("echo/a1", "echo", "a1", &b"1.0.0 active"[..]),
            ("echo/b1", "echo", "b1", &b"2.0.0 active"[..])
        ]
    );
    for unit in &units {
        let seen = unit.last_seen.expect("etcd knows the lease");
        let ago = std::time::SystemTime::now()
            .duration_since(seen)
            .unwrap_or_default();
        assert!(
            ago < Duration::from_secs(5),
            "{unit:?} last seen {ago:?} ago"
        );
    }
    let error = a
        .publish_unit("echo/b1", b"not mine".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidName { .. }), "{error:?}");
    a.remove_unit("echo/a1").await.unwrap();
    assert_eq!(unit_names(&b).await, ["echo/b1"]);
}

#[tokio::test]
async fn a_graceful_close_revokes_the_lease_at_once() {
    let server = shared_server();
    let prefix = unique_prefix("close");
    let a = connect(options(&server.endpoint(), "a1", &prefix)).await;
    let b = connect(options(&server.endpoint(), "b1", &prefix)).await;
    a.publish_unit("echo/a1", b"up".to_vec()).await.unwrap();
    a.set_relation_settings("db", "echo/a1", b"x".to_vec())
        .await
        .unwrap();
    assert_eq!(unit_names(&b).await, ["echo/a1"]);

    a.close().await.unwrap();
    // No waiting: the revoke was confirmed before close returned, and
    // reads are linearizable.
    assert!(unit_names(&b).await.is_empty());
    assert!(b.relation_members("db").await.unwrap().1.is_empty());
    let error = a
        .publish_unit("echo/a1", b"again".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Closed { .. }), "{error:?}");
    a.close().await.unwrap();
}

#[tokio::test]
async fn a_dead_agents_units_leave_when_its_lease_expires() {
    let server = shared_server();
    let prefix = unique_prefix("expiry");
    let ttl = Duration::from_secs(2);
    let a = connect(options(&server.endpoint(), "a1", &prefix).lease_ttl(ttl)).await;
    let b = connect(options(&server.endpoint(), "b1", &prefix)).await;
    a.publish_unit("echo/a1", b"up".to_vec()).await.unwrap();
    let mut watch = b.watch_units();
    let mut seen = Mirror::default();
    follow_until(&mut watch, &mut seen, "echo/a1", |m| {
        m.has(&[("echo/a1", "up")])
    })
    .await;

    // As a SIGKILL would: no revoke, the keep-alives just stop.
    let died = Instant::now();
    drop(a);
    assert_eq!(
        unit_names(&b).await,
        ["echo/a1"],
        "gone before its lease expired"
    );
    follow_until(&mut watch, &mut seen, "echo/a1 leaving", |m| {
        m.members.is_empty()
    })
    .await;
    let after = died.elapsed();
    assert!(
        after <= ttl + Duration::from_secs(2),
        "left {after:?} after the agent died"
    );
    assert!(unit_names(&b).await.is_empty());
}

/// Agent a1 reaches etcd through a proxy, b1 directly; a1 watches relation
/// `db`, whose members b1 set (`kv/b1` = v1, `web/b1` = w1). Returned once
/// a1 has seen them and then noticed that the proxy froze.
struct CutOff {
    server: Arc<EtcdServer>,
    proxy: Proxy,
    a: EtcdStore,
    b: EtcdStore,
    watch: QueueWatcher<KeyChanges>,
    seen: Mirror,
}

async fn cut_off(name: &str) -> CutOff {
    let server = shared_server();
    let proxy = Proxy::start(&server.address()).await.unwrap();
    let prefix = unique_prefix(name);
    let a = connect(options(&proxy.endpoint(), "a1", &prefix)).await;
    let b = connect(options(&server.endpoint(), "b1", &prefix)).await;
    b.set_relation_settings("db", "kv/b1", b"v1".to_vec())
        .await
        .unwrap();
    b.set_relation_settings("db", "web/b1", b"w1".to_vec())
        .await
        .unwrap();
    let mut watch = a.watch_relation("db").unwrap();
    let mut seen = Mirror::default();
    follow_until(&mut watch, &mut seen, "the first members", |m| {
        m.has(&[("kv/b1", "v1"), ("web/b1", "w1")])
    })
    .await;

    proxy.freeze();
    health_becomes(&a, false, NOTICED_WITHIN).await;
    CutOff {
        server,
        proxy,
        a,
        b,
        watch,
        seen,
    }
}

#[tokio::test]
async fn a_watch_resumes_after_a_disconnect_without_losing_or_repeating_changes() {
    let CutOff {
        server: _server,
        proxy,
        a,
        b,
        mut watch,
        mut seen,
    } = cut_off("resume").await;
    b.set_relation_settings("db", "kv/b1", b"v2".to_vec())
        .await
        .unwrap();
    b.remove_relation_settings("db", "web/b1").await.unwrap();
    b.set_relation_settings("db", "new/b1", b"n1".to_vec())
        .await
        .unwrap();
    b.set_relation_settings("db", "kv/b1", b"v3".to_vec())
        .await
        .unwrap();
    proxy.thaw();

    follow_until(
        &mut watch,
        &mut seen,
        "the changes made while cut off",
        |m| m.has(&[("kv/b1", "v3"), ("new/b1", "n1")]),
    )
    .await;
    // Resumed from the last revision (not listed again): the delete comes
    // with its own revision, before the put that followed it.
    assert!(
        seen.last("web/b1").mod_revision < seen.last("new/b1").mod_revision,
        "{seen:?}"
    );
    health_becomes(&a, true, DEADLINE).await;
    // And the watch goes on.
    b.set_relation_settings("db", "kv/b1", b"v4".to_vec())
        .await
        .unwrap();
    follow_until(&mut watch, &mut seen, "a change after the outage", |m| {
        m.has(&[("kv/b1", "v4"), ("new/b1", "n1")])
    })
    .await;
}

#[tokio::test]
async fn a_compacted_revision_is_listed_again_and_nothing_is_lost() {
    let CutOff {
        server,
        proxy,
        a,
        b,
        mut watch,
        mut seen,
    } = cut_off("compaction").await;
    b.remove_relation_settings("db", "web/b1").await.unwrap();
    b.set_relation_settings("db", "kv/b1", b"v2".to_vec())
        .await
        .unwrap();
    b.set_relation_settings("db", "new/b1", b"n1".to_vec())
        .await
        .unwrap();
    // Compact away every revision a's watch could resume from.
    let (revision, _) = b.relation_members("db").await.unwrap();
    let mut client = etcd_client::Client::connect([server.endpoint()], None)
        .await
        .unwrap();
    client
        .compact(
            revision,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .unwrap();
    proxy.thaw();

    follow_until(
        &mut watch,
        &mut seen,
        "the changes made while cut off",
        |m| m.has(&[("kv/b1", "v2"), ("new/b1", "n1")]),
    )
    .await;
    // Listed again: the delete is the difference from what was known, at
    // the list's revision (a resumed watch would have given the delete's
    // own revision, before the puts).
    let deleted = seen.last("web/b1");
    assert_eq!(deleted.value, None);
    assert!(
        deleted.mod_revision >= seen.last("new/b1").mod_revision,
        "{seen:?}"
    );
    // Then watched from the list's revision: nothing after it is lost.
    b.set_relation_settings("db", "kv/b1", b"v3".to_vec())
        .await
        .unwrap();
    b.remove_relation_settings("db", "new/b1").await.unwrap();
    follow_until(&mut watch, &mut seen, "the changes after the list", |m| {
        m.has(&[("kv/b1", "v3")])
    })
    .await;
    health_becomes(&a, true, DEADLINE).await;
}

#[tokio::test]
async fn a_lease_lost_while_cut_off_is_granted_anew_and_everything_republished() {
    let server = shared_server();
    let proxy = Proxy::start(&server.address()).await.unwrap();
    let prefix = unique_prefix("lost-lease");
    let ttl = Duration::from_secs(2);
    let a = connect(options(&proxy.endpoint(), "a1", &prefix).lease_ttl(ttl)).await;
    let b = connect(options(&server.endpoint(), "b1", &prefix)).await;
    a.publish_unit("echo/a1", b"v1".to_vec()).await.unwrap();
    a.set_relation_settings("db", "echo/a1", b"s1".to_vec())
        .await
        .unwrap();
    let lease = a.lease_id().unwrap();
    let mut watch = b.watch_units();
    let mut seen = Mirror::default();
    follow_until(&mut watch, &mut seen, "echo/a1", |m| {
        m.has(&[("echo/a1", "v1")])
    })
    .await;

    proxy.freeze();
    // etcd runs on: a's lease expires, and its unit leaves.
    follow_until(&mut watch, &mut seen, "echo/a1 expiring", |m| {
        m.members.is_empty()
    })
    .await;
    health_becomes(&a, false, NOTICED_WITHIN).await;
    // A change made while cut off is remembered, and published with the rest.
    let error = a.publish_unit("echo/a1", b"v2".to_vec()).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    proxy.thaw();

    follow_until(&mut watch, &mut seen, "echo/a1 back", |m| {
        m.has(&[("echo/a1", "v2")])
    })
    .await;
    health_becomes(&a, true, DEADLINE).await;
    let renewed = a.lease_id().expect("a lease again");
    assert_ne!(renewed, lease, "the expired lease cannot be kept alive");
    eventually("the relation settings back", || async {
        b.relation_members("db").await.unwrap().1.get("echo/a1") == Some(&b"s1".to_vec())
    })
    .await;
}

#[tokio::test]
async fn a_frozen_etcd_is_noticed_within_5s_and_caught_up_with_after() {
    let server = EtcdServer::start().unwrap_or_else(|error| panic!("{error}"));
    let prefix = unique_prefix("frozen");
    // Default timing (the promise is for the defaults), but a short lease,
    // so that the outage outlasts it.
    let ttl = Duration::from_secs(2);
    let a = connect(options(&server.endpoint(), "a1", &prefix).lease_ttl(ttl)).await;
    a.publish_unit("echo/a1", b"v1".to_vec()).await.unwrap();
    let desired: &dyn steward_store::DesiredState = &a;
    desired.set_desired_version("echo", "1.0.0").await.unwrap();

    server.pause();
    let frozen = Instant::now();
    let noticed = health_becomes(&a, false, NOTICED_WITHIN).await;
    println!("a frozen etcd was noticed after {noticed:?}");
    let steward_store::FleetHealth::Disconnected { reason, .. } = a.health() else {
        panic!("disconnected, then {:?}", a.health());
    };
    assert!(!reason.is_empty());
    let error = a.publish_unit("echo/a1", b"v2".to_vec()).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    // Stay frozen past the lease's TTL.
    tokio::time::sleep_until(frozen + ttl + Duration::from_secs(1)).await;
    server.resume();

    let back = health_becomes(&a, true, DEADLINE).await;
    println!("reconnected {back:?} after etcd was resumed");
    let observer = connect(options(&server.endpoint(), "observer", &prefix)).await;
    eventually("echo/a1 with the status set during the outage", || async {
        let units = observer.units().await.unwrap();
        units.len() == 1 && units[0].unit == "echo/a1" && units[0].status == b"v2"
    })
    .await;
    // Desired state, with no lease, was never at risk.
    let desired: &dyn steward_store::DesiredState = &observer;
    assert_eq!(
        desired.desired_version("echo").await.unwrap().as_deref(),
        Some("1.0.0")
    );
}
