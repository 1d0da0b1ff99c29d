//! Where a relation's units and their settings come from: the
//! [`RelationSource`] interface — membership as a watch of
//! [`RelationUnitsChange`]s, whose first event is the whole current
//! membership, and each unit's committed settings — and its implementation
//! for one agent, [`LocalSource`], over the store's relation unit records.
//! Fleet mode puts another source behind the same interface
//! ([`FleetSource`](super::fleet::FleetSource)); the hook drivers, their
//! queues and their crash safety do not change. The watch loop both share
//! is [`run_watch`].
//!
//! A unit's own settings are always committed to the local store first, in
//! the transaction of the hook that changed them; a source is then told
//! ([`RelationSource::published`]) so that the other side sees them. This
//! module must never run hooks or decide when a unit enters a relation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use steward_hooks::relation::RelationUnitsChange;
use steward_store::Store;
use steward_worker::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::records::{self, RelationUnit};

/// A change of a relation's units, for the hook driver that watches them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnitsEvent {
    pub(crate) relation: u64,
    /// The tag the watch was started with: a driver that restarts a watch
    /// tells the new one's events from the old one's still in its channel.
    pub(crate) tag: u64,
    pub(crate) change: RelationUnitsChange,
}

/// A running watch of a relation's units; dropping it stops it.
#[derive(Debug)]
pub(crate) struct UnitsWatch {
    _stop: DropGuard,
}

/// A unit in a relation's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) unit: String,
    pub(crate) runtime: String,
    pub(crate) version: u64,
}

/// Where relation membership and settings come from.
pub(crate) trait RelationSource: Send + Sync + fmt::Debug {
    /// Watches the units of `relation` on `remote`'s side (a runtime id),
    /// as `viewer` sees them (a unit never sees itself), sending
    /// [`UnitsEvent`]s tagged `tag` to `sink`. The first event is the whole
    /// current membership, every unit with its settings' change version
    /// (units without settings too); later events carry what changed.
    fn watch(
        &self,
        relation: u64,
        remote: &str,
        viewer: &str,
        tag: u64,
        sink: mpsc::Sender<UnitsEvent>,
    ) -> UnitsWatch;

    /// A unit's committed settings in `relation`; `None` when the relation
    /// has none for that unit.
    fn settings<'a>(
        &'a self,
        relation: u64,
        unit: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, String>>;

    /// The units in `relation`'s scope now, sorted by name.
    fn members(&self, relation: u64) -> Vec<Member>;

    /// `unit` (of `runtime`) enters `relation`'s scope: the other side sees
    /// it from now on. Entering again changes nothing.
    fn enter<'a>(
        &'a self,
        relation: u64,
        unit: &'a str,
        runtime: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// `unit`'s record in `relation` was committed to the local store with
    /// a hook's completion: make it visible to the other side.
    fn published(&self, relation: u64, unit: &str, record: &RelationUnit);

    /// Every record of `relation` was deleted: it is gone.
    fn forget(&self, relation: u64);
}

/// The source of one agent: every unit is local, so the store's relation
/// unit records are the whole truth, cached in memory and watched through
/// a generation counter per relation that each of its changes bumps (a
/// change wakes only that relation's watches).
#[derive(Debug, Clone)]
pub(crate) struct LocalSource {
    store: Store,
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    relations: ByRelation<Entry>,
}

/// One relation's units, and the counter its watches follow.
#[derive(Debug)]
struct Entry {
    units: BTreeMap<String, RelationUnit>,
    generation: watch::Sender<u64>,
}

impl Default for Entry {
    fn default() -> Self {
        Self {
            units: BTreeMap::new(),
            generation: watch::channel(0).0,
        }
    }
}

/// Something per relation, behind a lock that a panic elsewhere does not
/// poison for good (no holder leaves the map half-changed).
#[derive(Debug)]
pub(super) struct ByRelation<T>(RwLock<BTreeMap<u64, T>>);

impl<T> Default for ByRelation<T> {
    fn default() -> Self {
        Self(RwLock::new(BTreeMap::new()))
    }
}

impl<T> ByRelation<T> {
    pub(super) fn read(&self) -> RwLockReadGuard<'_, BTreeMap<u64, T>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<u64, T>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<u64, Entry>> {
        self.relations.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<u64, Entry>> {
        self.relations.write()
    }

    /// Changes `relation`'s units and wakes its watches.
    fn update(&self, relation: u64, change: impl FnOnce(&mut BTreeMap<String, RelationUnit>)) {
        let mut relations = self.write();
        let entry = relations.entry(relation).or_default();
        change(&mut entry.units);
        entry.generation.send_modify(|generation| *generation += 1);
    }

    /// A receiver of `relation`'s counter (the relation need not have
    /// units yet).
    fn subscribe(&self, relation: u64) -> watch::Receiver<u64> {
        self.write()
            .entry(relation)
            .or_default()
            .generation
            .subscribe()
    }

    /// `relation`'s units, through `read`.
    fn units<T>(
        &self,
        relation: u64,
        read: impl FnOnce(&BTreeMap<String, RelationUnit>) -> T,
    ) -> T {
        let relations = self.read();
        match relations.get(&relation) {
            Some(entry) => read(&entry.units),
            None => read(&BTreeMap::new()),
        }
    }

    /// `relation`'s units in scope on `remote`'s side, without `viewer`.
    fn scope(&self, relation: u64, remote: &str, viewer: &str) -> Scope {
        self.units(relation, |units| {
            units
                .iter()
                .filter(|(unit, record)| {
                    record.in_scope && record.runtime == remote && *unit != viewer
                })
                .map(|(unit, record)| {
                    let seen = Seen {
                        version: record.version,
                        incarnation: 0,
                    };
                    (unit.clone(), seen)
                })
                .collect()
        })
    }
}

impl LocalSource {
    /// The source over `store`'s relation unit records, as they are now.
    pub(crate) async fn load(store: Store) -> Result<Self, String> {
        let mut relations: BTreeMap<u64, Entry> = BTreeMap::new();
        for (relation, unit, record) in records::units(&store).await? {
            relations
                .entry(relation)
                .or_default()
                .units
                .insert(unit, record);
        }
        Ok(Self {
            store,
            inner: Arc::new(Inner {
                relations: ByRelation(RwLock::new(relations)),
            }),
        })
    }
}

/// A unit as a watch sees it: its settings' change version, and its
/// incarnation (which changes when the unit left and joined again, even if
/// a watch saw neither in between; always 0 in one agent's store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    pub(super) version: u64,
    pub(super) incarnation: i64,
}

/// The units a watch sees, by name.
pub(super) type Scope = BTreeMap<String, Seen>;

/// What changed from `sent` (what a watch sent last; `None` before its
/// first event) to `now`, as the events to send: a unit with a new
/// incarnation departs in a first event and joins in the next.
fn diff(sent: Option<&Scope>, now: &Scope) -> Vec<RelationUnitsChange> {
    let versions = |scope: &Scope| -> BTreeMap<String, u64> {
        scope
            .iter()
            .map(|(unit, seen)| (unit.clone(), seen.version))
            .collect()
    };
    let Some(sent) = sent else {
        return vec![RelationUnitsChange {
            changed: versions(now),
            departed: Vec::new(),
        }];
    };
    let rejoined: Vec<String> = now
        .iter()
        .filter(|(unit, seen)| {
            sent.get(*unit)
                .is_some_and(|before| before.incarnation != seen.incarnation)
        })
        .map(|(unit, _)| unit.clone())
        .collect();
    let change = RelationUnitsChange {
        changed: now
            .iter()
            .filter(|(unit, seen)| sent.get(*unit) != Some(*seen))
            .map(|(unit, seen)| (unit.clone(), seen.version))
            .collect(),
        departed: sent
            .keys()
            .filter(|unit| !now.contains_key(*unit))
            .cloned()
            .collect(),
    };
    let mut events = Vec::new();
    if !rejoined.is_empty() {
        events.push(RelationUnitsChange::departed(rejoined));
    }
    if change != RelationUnitsChange::default() {
        events.push(change);
    }
    events
}

/// Runs a watch of `relation`'s units until the returned [`UnitsWatch`] is
/// dropped: whenever `generation` moves, `now` says which units are in the
/// watch's scope (`None`: not known yet, so nothing is sent until they
/// are), and what changed since the last event goes to `sink`. Its first
/// event is the whole scope, even an empty one.
pub(super) fn run_watch(
    relation: u64,
    tag: u64,
    sink: mpsc::Sender<UnitsEvent>,
    mut generation: watch::Receiver<u64>,
    now: impl Fn() -> Option<Scope> + Send + 'static,
) -> UnitsWatch {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let mut sent = None;
        loop {
            generation.borrow_and_update();
            if let Some(now) = now() {
                for change in diff(sent.as_ref(), &now) {
                    let event = UnitsEvent {
                        relation,
                        tag,
                        change,
                    };
                    tokio::select! {
                        () = stopped.cancelled() => return,
                        sent = sink.send(event) => if sent.is_err() { return },
                    }
                }
                sent = Some(now);
            }
            tokio::select! {
                () = stopped.cancelled() => return,
                changed = generation.changed() => if changed.is_err() { return },
            }
        }
    });
    UnitsWatch {
        _stop: stop.drop_guard(),
    }
}

impl RelationSource for LocalSource {
    fn watch(
        &self,
        relation: u64,
        remote: &str,
        viewer: &str,
        tag: u64,
        sink: mpsc::Sender<UnitsEvent>,
    ) -> UnitsWatch {
        let (inner, remote, viewer) = (self.inner.clone(), remote.to_owned(), viewer.to_owned());
        let generation = inner.subscribe(relation);
        run_watch(relation, tag, sink, generation, move || {
            Some(inner.scope(relation, &remote, &viewer))
        })
    }

    fn settings<'a>(
        &'a self,
        relation: u64,
        unit: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, String>> {
        let settings = self.inner.units(relation, |units| {
            units.get(unit).map(|record| record.settings.clone())
        });
        Box::pin(std::future::ready(Ok(settings)))
    }

    fn members(&self, relation: u64) -> Vec<Member> {
        self.inner.units(relation, |units| {
            units
                .iter()
                .filter(|(_, record)| record.in_scope)
                .map(|(unit, record)| Member {
                    unit: unit.clone(),
                    runtime: record.runtime.clone(),
                    version: record.version,
                })
                .collect()
        })
    }

    fn enter<'a>(
        &'a self,
        relation: u64,
        unit: &'a str,
        runtime: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut record = records::unit(&self.store, relation, unit)
                .await?
                .unwrap_or_else(|| RelationUnit {
                    runtime: runtime.to_owned(),
                    ..RelationUnit::default()
                });
            if record.in_scope {
                return Ok(());
            }
            record.in_scope = true;
            self.store
                .commit_records(vec![records::set_unit(relation, unit, &record)])
                .await
                .map_err(|error| error.to_string())?;
            self.published(relation, unit, &record);
            Ok(())
        })
    }

    fn published(&self, relation: u64, unit: &str, record: &RelationUnit) {
        self.inner.update(relation, |units| {
            units.insert(unit.to_owned(), record.clone());
        });
    }

    fn forget(&self, relation: u64) {
        // The watches still running see every unit depart; then the entry
        // goes, with its counter (and they end).
        self.inner.update(relation, BTreeMap::clear);
        self.inner.write().remove(&relation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn source() -> (tempfile::TempDir, LocalSource) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store.redb")).await.unwrap();
        (dir, LocalSource::load(store).await.unwrap())
    }

    fn record(runtime: &str, version: u64) -> RelationUnit {
        RelationUnit {
            runtime: runtime.into(),
            in_scope: true,
            version,
            settings: BTreeMap::from([("v".into(), version.to_string())]),
        }
    }

    #[tokio::test]
    async fn a_watch_starts_with_the_whole_membership_then_sends_what_changed() {
        let (_dir, source) = source().await;
        source.published(1, "kv/a1", &record("kv", 2));
        // Another side, another relation, and a unit out of scope: unseen.
        source.published(1, "web/a1", &record("web", 5));
        source.published(2, "kv/a2", &record("kv", 1));
        let mut outside = record("kv", 9);
        outside.in_scope = false;
        source
            .store
            .commit_records(vec![records::set_unit(1, "kv/a3", &outside)])
            .await
            .unwrap();
        source.published(1, "kv/a3", &outside);

        let (sink, mut events) = mpsc::channel(8);
        let watch = source.watch(1, "kv", "web/a1", 7, sink);
        let first = events.recv().await.unwrap();
        assert_eq!(
            first,
            UnitsEvent {
                relation: 1,
                tag: 7,
                change: RelationUnitsChange::changed([("kv/a1", 2)]),
            }
        );
        source.published(1, "kv/a1", &record("kv", 3));
        let next = events.recv().await.unwrap();
        assert_eq!(next.change, RelationUnitsChange::changed([("kv/a1", 3)]));
        // The unit out of scope enters (through the store, as a driver does).
        source.enter(1, "kv/a3", "kv").await.unwrap();
        let next = events.recv().await.unwrap();
        assert_eq!(next.change, RelationUnitsChange::changed([("kv/a3", 9)]));
        source.enter(1, "kv/a3", "kv").await.unwrap();
        source.forget(1);
        let next = events.recv().await.unwrap();
        assert_eq!(
            next.change,
            RelationUnitsChange::departed(["kv/a1", "kv/a3"])
        );
        drop(watch);
        // A stopped watch sends nothing more; its sender is dropped.
        assert_eq!(events.recv().await, None);
    }

    #[tokio::test]
    async fn an_empty_relation_still_gets_a_first_event() {
        let (_dir, source) = source().await;
        let (sink, mut events) = mpsc::channel(8);
        let _watch = source.watch(4, "kv", "web/a1", 0, sink);
        assert_eq!(
            events.recv().await.unwrap().change,
            RelationUnitsChange::default()
        );
        assert!(source.members(4).is_empty());
        assert_eq!(source.settings(4, "kv/a1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn entering_persists_and_a_reloaded_source_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store.redb")).await.unwrap();
        let source = LocalSource::load(store.clone()).await.unwrap();
        source.enter(3, "kv/a1", "kv").await.unwrap();
        let again = LocalSource::load(store).await.unwrap();
        assert_eq!(
            again.members(3),
            vec![Member {
                unit: "kv/a1".into(),
                runtime: "kv".into(),
                version: 0,
            }]
        );
        assert_eq!(
            again.settings(3, "kv/a1").await.unwrap(),
            Some(BTreeMap::new())
        );
    }

    fn scope(units: &[(&str, u64, i64)]) -> Scope {
        units
            .iter()
            .map(|&(unit, version, incarnation)| {
                let seen = Seen {
                    version,
                    incarnation,
                };
                (unit.to_owned(), seen)
            })
            .collect()
    }

    #[test]
    fn a_diff_names_new_versions_and_departures() {
        let sent = scope(&[("a", 1, 0), ("b", 1, 0)]);
        let now = scope(&[("a", 1, 0), ("c", 0, 0)]);
        assert_eq!(
            diff(Some(&sent), &now),
            vec![RelationUnitsChange {
                changed: BTreeMap::from([("c".to_owned(), 0)]),
                departed: vec!["b".to_owned()],
            }]
        );
        assert_eq!(diff(Some(&now), &now), vec![]);
        assert_eq!(
            diff(None, &scope(&[])),
            vec![RelationUnitsChange::default()]
        );
    }

    #[test]
    fn a_unit_that_left_and_joined_again_departs_before_it_joins() {
        let sent = scope(&[("a", 4, 2), ("b", 4, 3)]);
        // b left and came back (a new incarnation) at version 9; a changed.
        let now = scope(&[("a", 5, 2), ("b", 9, 8)]);
        assert_eq!(
            diff(Some(&sent), &now),
            vec![
                RelationUnitsChange::departed(["b"]),
                RelationUnitsChange::changed([("a", 5), ("b", 9)]),
            ]
        );
        // Even at the version it had before.
        let same = scope(&[("a", 4, 2), ("b", 4, 8)]);
        assert_eq!(
            diff(Some(&sent), &same),
            vec![
                RelationUnitsChange::departed(["b"]),
                RelationUnitsChange::changed([("b", 4)]),
            ]
        );
    }
}
