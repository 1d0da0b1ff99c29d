//! Relations across a fleet: [`FleetSource`], the [`RelationSource`] whose
//! units come from the fleet's shared relation settings (etcd, through
//! [`RelationSettings`]), so that a unit sees the units of every agent —
//! its own agent's as well as the others' — and the hook drivers, their
//! queues and their crash safety stay as they are.
//!
//! - A relation's fleet-wide name is derived from its endpoints
//!   ([`fleet_name`]): local relation ids differ from agent to agent.
//! - This agent's units are the local store's, as in [`LocalSource`]
//!   (their settings are committed there first, in the hook's
//!   transaction), and are published to the fleet when they enter and
//!   whenever their settings change, under the agent's lease: a dead
//!   agent's units leave when it expires. After an outage or a lost lease
//!   the shared store publishes them again by itself.
//! - Every relation a unit here takes part in is mirrored: one watch of
//!   its members per relation, whose change versions are the etcd keys'
//!   `mod_revision`s (a re-publish of the same settings is not a change),
//!   and whose incarnations are their `create_revision`s (a unit that left
//!   and came back departs and joins, even if the two coalesced).
//!
//! This module must never run hooks, decide when a unit enters, or write
//! another agent's units (the shared store refuses that anyway).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard, Weak};

use steward_store::{KeyChanges, RelationSettings};
use steward_worker::{BoxFuture, QueueWatcher, Watcher, Worker};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, error, warn};

use super::records::{self, RelationUnit};
use super::source::{
    ByRelation, LocalSource, Member, RelationSource, Scope, Seen, UnitsEvent, UnitsWatch, run_watch,
};
use super::{Relation, RelationMap};

/// The name of `relation` in the fleet, the same on every agent: its
/// endpoints as `<runtime>:<endpoint>`, sorted and joined by a comma
/// (`kv:store,web:db`); a peer relation's one endpoint (`kv:cluster`).
///
/// Neither runtime ids nor endpoint names may hold `:` or `,` (nor the `/`
/// that would split an etcd key), so no two relations share a name; the
/// looser `web.db-kv.store` would (runtime ids may hold `.` and `-`).
pub(crate) fn fleet_name(relation: &Relation) -> String {
    let [a, b] = &relation.endpoints;
    match relation.is_peer() {
        true => a.to_string(),
        false => {
            let (first, second) = if a <= b { (a, b) } else { (b, a) };
            format!("{first},{second}")
        }
    }
}

/// The relation source of an agent in a fleet.
#[derive(Debug)]
pub(crate) struct FleetSource {
    /// This agent's units, as committed to its store.
    local: LocalSource,
    agent: String,
    settings: Arc<dyn RelationSettings>,
    /// The agent's relations, for their endpoints (their fleet names).
    relations: watch::Receiver<RelationMap>,
    mirrors: Arc<Mirrors>,
    publish: mpsc::UnboundedSender<Publish>,
}

/// The mirrored relations, by local id.
#[derive(Debug, Default)]
struct Mirrors {
    relations: ByRelation<Mirror>,
}

/// One relation's members across the fleet, as its watch last said.
#[derive(Debug)]
struct Mirror {
    /// Whether the watch's first change (the whole membership) arrived:
    /// until then nobody is told anything, so that no unit departs only
    /// because it was not known yet.
    ready: bool,
    units: BTreeMap<String, FleetUnit>,
    generation: watch::Sender<u64>,
    _follow: DropGuard,
}

/// One member unit, on any agent.
#[derive(Debug)]
struct FleetUnit {
    runtime: String,
    /// The value in etcd, to tell a re-publish from a change.
    value: Vec<u8>,
    settings: BTreeMap<String, String>,
    create_revision: i64,
    version: u64,
    /// It left (its key went): no longer a member, but its last settings
    /// stay readable (a relation-departed hook reads them).
    gone: bool,
}

/// A write to the fleet's relation settings, done in order.
#[derive(Debug)]
enum Publish {
    Set {
        relation: String,
        unit: String,
        settings: Vec<u8>,
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    Remove {
        relation: String,
        unit: String,
    },
}

impl Mirrors {
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<u64, Mirror>> {
        self.relations.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<u64, Mirror>> {
        self.relations.write()
    }

    /// Folds a batch of the watch of `relation` (named `name`) in, and
    /// wakes its watches.
    fn apply(&self, relation: u64, name: &str, changes: KeyChanges) {
        let mut mirrors = self.write();
        let Some(mirror) = mirrors.get_mut(&relation) else {
            return;
        };
        for event in changes.events {
            let Some((runtime, _)) = event.key.split_once('/') else {
                debug!(relation = name, key = %event.key, "skipping a relation key that is not a unit");
                continue;
            };
            let Some(value) = event.value else {
                if let Some(unit) = mirror.units.get_mut(&event.key) {
                    unit.gone = true;
                }
                continue;
            };
            let republished = mirror.units.get(&event.key).is_some_and(|unit| {
                !unit.gone && unit.create_revision == event.create_revision && unit.value == value
            });
            if republished {
                continue;
            }
            let settings = decode(name, &event.key, &value);
            let unit = FleetUnit {
                runtime: runtime.to_owned(),
                value,
                settings,
                create_revision: event.create_revision,
                version: u64::try_from(event.mod_revision).unwrap_or_default(),
                gone: false,
            };
            mirror.units.insert(event.key, unit);
        }
        mirror.ready = true;
        mirror.generation.send_modify(|generation| *generation += 1);
    }

    /// The members of `relation` on `remote`'s side but `viewer`; `None`
    /// until the mirror knows them. A relation no longer mirrored has
    /// none.
    fn scope(&self, relation: u64, remote: &str, viewer: &str) -> Option<Scope> {
        let mirrors = self.read();
        let Some(mirror) = mirrors.get(&relation) else {
            return Some(Scope::new());
        };
        if !mirror.ready {
            return None;
        }
        let scope = mirror
            .units
            .iter()
            .filter(|(unit, member)| !member.gone && member.runtime == remote && *unit != viewer)
            .map(|(unit, member)| {
                let seen = Seen {
                    version: member.version,
                    incarnation: member.create_revision,
                };
                (unit.clone(), seen)
            })
            .collect();
        Some(scope)
    }

    /// `unit`'s last settings in `relation`, if the mirror knows the
    /// relation's members (`Some(None)`: the unit was never one).
    fn settings(&self, relation: u64, unit: &str) -> Option<Option<BTreeMap<String, String>>> {
        let mirrors = self.read();
        let mirror = mirrors.get(&relation).filter(|mirror| mirror.ready)?;
        Some(mirror.units.get(unit).map(|member| member.settings.clone()))
    }

    /// Stops mirroring `relation`: its watches see every unit depart, then
    /// end.
    fn forget(&self, relation: u64) {
        let mut mirrors = self.write();
        if let Some(mirror) = mirrors.remove(&relation) {
            mirror.generation.send_modify(|generation| *generation += 1);
        }
    }
}

/// A unit's settings from their etcd value; a value that is not a JSON
/// object of strings (written by hand?) counts as no settings, with a
/// warning that names the key.
fn decode(relation: &str, unit: &str, value: &[u8]) -> BTreeMap<String, String> {
    serde_json::from_slice(value).unwrap_or_else(|error| {
        warn!(
            relation,
            unit,
            %error,
            "a unit's relation settings in etcd are not a JSON object of strings; it is a member without settings until they are"
        );
        BTreeMap::new()
    })
}

/// Follows the watch of one relation's members into its mirror, until
/// `stop` (the mirror went) or the shared store closes.
async fn follow(
    mirrors: Weak<Mirrors>,
    relation: u64,
    name: String,
    mut watcher: QueueWatcher<KeyChanges>,
    stop: CancellationToken,
) {
    loop {
        let changes = tokio::select! {
            () = stop.cancelled() => break,
            changes = watcher.next_change() => changes,
        };
        let Ok(changes) = changes else {
            debug!(
                relation = name,
                "the relation's watch ended: the fleet store closed"
            );
            return;
        };
        let Some(mirrors) = mirrors.upgrade() else {
            break;
        };
        mirrors.apply(relation, &name, changes);
    }
    watcher.kill();
}

/// Does the writes in order, one at a time, until the source goes.
async fn publish(settings: Arc<dyn RelationSettings>, mut queue: mpsc::UnboundedReceiver<Publish>) {
    while let Some(write) = queue.recv().await {
        match write {
            Publish::Set {
                relation,
                unit,
                settings: value,
                done,
            } => {
                let result = settings
                    .set_relation_settings(&relation, &unit, value)
                    .await;
                let outcome = outcome(result, || {
                    format!("cannot publish {unit}'s settings in relation {relation}")
                });
                match done {
                    Some(done) => {
                        let _ = done.send(outcome);
                    }
                    None => {
                        if let Err(problem) = outcome {
                            warn!(%problem, "the other agents do not see this change");
                        }
                    }
                }
            }
            Publish::Remove { relation, unit } => {
                let result = settings.remove_relation_settings(&relation, &unit).await;
                let outcome = outcome(result, || {
                    format!("cannot remove {unit}'s settings from relation {relation}")
                });
                if let Err(problem) = outcome {
                    warn!(%problem, "the other agents still see the unit until this agent's lease ends");
                }
            }
        }
    }
}

/// A write's outcome: one etcd did not confirm is done again by the shared
/// store once etcd answers (it remembers what the agent owns), so it is
/// not a failure here.
fn outcome(
    result: Result<(), steward_store::Error>,
    what: impl FnOnce() -> String,
) -> Result<(), String> {
    match result {
        Ok(()) => Ok(()),
        Err(steward_store::Error::Unavailable { reason, .. }) => {
            debug!(%reason, "etcd did not confirm a relation write; the fleet store does it again when etcd answers");
            Ok(())
        }
        Err(error) => Err(format!("{}: {error}", what())),
    }
}

impl FleetSource {
    /// The source of agent `agent`, over its local store's relation unit
    /// records (`local`) and the fleet's relation settings (`settings`, the
    /// same agent's); `relations` are the agent's relations, for their
    /// names. Must be made inside a tokio runtime.
    pub(crate) fn new(
        local: LocalSource,
        agent: String,
        settings: Arc<dyn RelationSettings>,
        relations: watch::Receiver<RelationMap>,
    ) -> Self {
        let (sender, queue) = mpsc::unbounded_channel();
        tokio::spawn(publish(settings.clone(), queue));
        Self {
            local,
            agent,
            settings,
            relations,
            mirrors: Arc::new(Mirrors::default()),
            publish: sender,
        }
    }

    /// Whether `unit` is one of this agent's.
    fn is_own(&self, unit: &str) -> bool {
        unit.split_once('/')
            .is_some_and(|(_, agent)| agent == self.agent)
    }

    /// The fleet name of relation `relation`, while the agent knows it.
    fn name(&self, relation: u64) -> Option<String> {
        self.relations.borrow().get(&relation).map(fleet_name)
    }

    fn queue(&self, write: Publish) {
        // The task ends only with the source.
        let _ = self.publish.send(write);
    }

    /// Mirrors `relation` from now on (if it is not yet); a receiver of
    /// its mirror's counter.
    fn mirror(&self, relation: u64) -> watch::Receiver<u64> {
        let mut mirrors = self.mirrors.write();
        if let Some(mirror) = mirrors.get(&relation) {
            return mirror.generation.subscribe();
        }
        let Some(name) = self.name(relation) else {
            error!(
                relation,
                "asked for the units of a relation the agent does not know"
            );
            return watch::channel(0).1;
        };
        let watcher = match self.settings.watch_relation(&name) {
            Ok(watcher) => watcher,
            Err(problem) => {
                error!(relation, %problem, "cannot watch the relation's units in the fleet");
                return watch::channel(0).1;
            }
        };
        let stop = CancellationToken::new();
        tokio::spawn(follow(
            Arc::downgrade(&self.mirrors),
            relation,
            name,
            watcher,
            stop.clone(),
        ));
        let mirror = Mirror {
            ready: false,
            units: BTreeMap::new(),
            generation: watch::channel(0).0,
            _follow: stop.drop_guard(),
        };
        let generation = mirror.generation.subscribe();
        mirrors.insert(relation, mirror);
        generation
    }
}

impl RelationSource for FleetSource {
    fn watch(
        &self,
        relation: u64,
        remote: &str,
        viewer: &str,
        tag: u64,
        sink: mpsc::Sender<UnitsEvent>,
    ) -> UnitsWatch {
        let generation = self.mirror(relation);
        let (mirrors, remote, viewer) =
            (self.mirrors.clone(), remote.to_owned(), viewer.to_owned());
        run_watch(relation, tag, sink, generation, move || {
            mirrors.scope(relation, &remote, &viewer)
        })
    }

    fn settings<'a>(
        &'a self,
        relation: u64,
        unit: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, String>> {
        // This agent's own are committed here first: the freshest.
        if self.is_own(unit) {
            return self.local.settings(relation, unit);
        }
        Box::pin(async move {
            if let Some(settings) = self.mirrors.settings(relation, unit) {
                return Ok(settings);
            }
            let Some(name) = self.name(relation) else {
                return Ok(None);
            };
            let members = self
                .settings
                .relation_members(&name)
                .await
                .map_err(|error| error.to_string())?;
            Ok(members.get(unit).map(|value| decode(&name, unit, value)))
        })
    }

    fn members(&self, relation: u64) -> Vec<Member> {
        let mut members: BTreeMap<String, Member> = self
            .mirrors
            .read()
            .get(&relation)
            .map(|mirror| {
                mirror
                    .units
                    .iter()
                    .filter(|(unit, member)| !member.gone && !self.is_own(unit))
                    .map(|(unit, member)| {
                        let found = Member {
                            unit: unit.clone(),
                            runtime: member.runtime.clone(),
                            version: member.version,
                        };
                        (unit.clone(), found)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for member in self.local.members(relation) {
            members.insert(member.unit.clone(), member);
        }
        members.into_values().collect()
    }

    fn enter<'a>(
        &'a self,
        relation: u64,
        unit: &'a str,
        runtime: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.local.enter(relation, unit, runtime).await?;
            self.mirror(relation);
            let Some(name) = self.name(relation) else {
                return Err(format!(
                    "{unit} cannot enter relation {relation}: the agent does not know it"
                ));
            };
            // Published every time, not only the first: entering is also
            // how a unit is seen again after the agent restarted.
            let settings = self
                .local
                .settings(relation, unit)
                .await?
                .unwrap_or_default();
            let (done, answer) = oneshot::channel();
            self.queue(Publish::Set {
                relation: name,
                unit: unit.to_owned(),
                settings: records::encode(&settings),
                done: Some(done),
            });
            answer.await.unwrap_or(Ok(()))
        })
    }

    fn published(&self, relation: u64, unit: &str, record: &RelationUnit) {
        self.local.published(relation, unit, record);
        if !record.in_scope {
            return;
        }
        if let Some(name) = self.name(relation) {
            self.queue(Publish::Set {
                relation: name,
                unit: unit.to_owned(),
                settings: records::encode(&record.settings),
                done: None,
            });
        }
    }

    fn forget(&self, relation: u64) {
        let mut own: BTreeSet<String> = self
            .local
            .members(relation)
            .into_iter()
            .map(|member| member.unit)
            .collect();
        if let Some(mirror) = self.mirrors.read().get(&relation) {
            own.extend(
                mirror
                    .units
                    .iter()
                    .filter(|(unit, member)| !member.gone && self.is_own(unit))
                    .map(|(unit, _)| unit.clone()),
            );
        }
        let name = self.name(relation);
        self.local.forget(relation);
        self.mirrors.forget(relation);
        let Some(name) = name else {
            return;
        };
        // The same relation, added again while this one died, keeps the
        // units that entered it (they have the same keys).
        let again: Vec<u64> = self
            .relations
            .borrow()
            .values()
            .filter(|other| other.id != relation && fleet_name(other) == name)
            .map(|other| other.id)
            .collect();
        for id in again {
            for member in self.local.members(id) {
                own.remove(&member.unit);
            }
        }
        for unit in own {
            self.queue(Publish::Remove {
                relation: name.clone(),
                unit,
            });
        }
    }
}

#[cfg(test)]
mod tests;
