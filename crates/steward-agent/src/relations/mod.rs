//! The agent's relations: which exist, with their stable ids, and whether
//! each is alive or dying ([`Relations`], kept in the store and published
//! on a `watch` channel); where their units and settings come from
//! ([`source`]; in a fleet, [`fleet`]); and how they are kept in the
//! store ([`records`]).
//!
//! A relation is created when the config gains it, and dies when the
//! config loses it: every side whose runtime has hooks then runs
//! relation-departed for the other side's unit and relation-broken, and
//! reports back ([`Relations::finished`]); once every side has, the
//! relation's records are deleted. A side without hooks has nothing to run
//! (its unit is in the relation from the start, with empty settings).
//!
//! The hooks themselves — which is due, running them, committing them — are
//! the hook drivers' (`runtimes::hooks`). This module must never run a
//! hook, and never deletes what a hook may still read: a dying relation's
//! settings stay readable until every side has finished with it.

pub(crate) mod fleet;
pub(crate) mod records;
pub(crate) mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use steward_store::{RelationSettings, Store};
use tokio::sync::watch;
use tracing::{info, warn};

pub(crate) use records::RelationRecord as Relation;
use source::RelationSource;

use crate::api::types::RelationLife;
use crate::config::{Config, Endpoint};
use crate::events::{AgentEvent, EventBus, EventKind};

impl Relation {
    /// `runtime`'s end of the relation, if it is in it.
    pub(crate) fn endpoint_of(&self, runtime: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|end| end.runtime == runtime)
    }

    /// The end opposite `runtime`'s, if it is in it.
    pub(crate) fn remote_of(&self, runtime: &str) -> Option<&Endpoint> {
        let [a, b] = &self.endpoints;
        match (a.runtime == runtime, b.runtime == runtime) {
            (true, _) => Some(b),
            (_, true) => Some(a),
            _ => None,
        }
    }

    /// Whether `runtime` is at one of its ends.
    pub(crate) fn involves(&self, runtime: &str) -> bool {
        self.endpoint_of(runtime).is_some()
    }

    /// Whether it relates a runtime's units to each other (both ends are
    /// the same endpoint).
    pub(crate) fn is_peer(&self) -> bool {
        self.endpoints[0] == self.endpoints[1]
    }

    /// Its distinct ends: two, or one for a peer relation.
    pub(crate) fn ends(&self) -> &[Endpoint] {
        match self.is_peer() {
            true => &self.endpoints[..1],
            false => &self.endpoints,
        }
    }

    fn describe(&self) -> String {
        let [a, b] = &self.endpoints;
        match self.is_peer() {
            true => format!("peer relation {} of {a}", self.id),
            false => format!("relation {} between {a} and {b}", self.id),
        }
    }
}

/// The relations by id, as every hook driver and the API see them.
pub(crate) type RelationMap = Arc<BTreeMap<u64, Relation>>;

/// The agent's relations.
#[derive(Debug)]
pub(crate) struct Relations {
    store: Store,
    agent: String,
    source: Arc<dyn RelationSource>,
    events: EventBus,
    known: watch::Sender<RelationMap>,
    ending: Mutex<Ending>,
}

/// What the dying relations wait for.
#[derive(Debug, Default)]
struct Ending {
    /// The runtimes with a hook driver (whose sides must finish a dying
    /// relation by running its hooks).
    hooked: BTreeSet<String>,
    /// The (relation, runtime) sides that have finished.
    finished: BTreeSet<(u64, String)>,
}

impl Relations {
    /// The relations in `store`, with units from `source`, for the units of
    /// agent `agent`.
    pub(crate) async fn load(
        store: Store,
        agent: String,
        source: Arc<dyn RelationSource>,
        events: EventBus,
    ) -> Result<Self, String> {
        let known = watch::channel(Arc::new(Self::read(&store).await?)).0;
        Ok(Self::assemble(store, agent, source, events, known))
    }

    /// The relations in `store`, for one agent: every unit is local, so
    /// the store is also where their units and settings come from.
    pub(crate) async fn local(
        store: Store,
        agent: String,
        events: EventBus,
    ) -> Result<Self, String> {
        let source = source::LocalSource::load(store.clone()).await?;
        Self::load(store, agent, Arc::new(source), events).await
    }

    /// The relations in `store`, for agent `agent` of a fleet: their units
    /// on every agent, and their settings, come from the fleet's shared
    /// `settings` (the same agent's); this agent's own units are still
    /// committed to `store` first ([`fleet::FleetSource`]).
    pub(crate) async fn fleet(
        store: Store,
        agent: String,
        settings: Arc<dyn RelationSettings>,
        events: EventBus,
    ) -> Result<Self, String> {
        let known = watch::channel(Arc::new(Self::read(&store).await?)).0;
        let local = source::LocalSource::load(store.clone()).await?;
        // The source names relations after their endpoints, so it follows
        // the same map the drivers see.
        let source = fleet::FleetSource::new(local, agent.clone(), settings, known.subscribe());
        Ok(Self::assemble(
            store,
            agent,
            Arc::new(source),
            events,
            known,
        ))
    }

    async fn read(store: &Store) -> Result<BTreeMap<u64, Relation>, String> {
        Ok(records::relations(store)
            .await?
            .into_iter()
            .map(|relation| (relation.id, relation))
            .collect())
    }

    fn assemble(
        store: Store,
        agent: String,
        source: Arc<dyn RelationSource>,
        events: EventBus,
        known: watch::Sender<RelationMap>,
    ) -> Self {
        Self {
            store,
            agent,
            source,
            events,
            known,
            ending: Mutex::new(Ending::default()),
        }
    }

    /// Where the relations' units and settings come from.
    pub(crate) fn source(&self) -> &Arc<dyn RelationSource> {
        &self.source
    }

    /// The unit name of `runtime` on this agent.
    pub(crate) fn unit(&self, runtime: &str) -> String {
        format!("{runtime}/{}", self.agent)
    }

    /// The relations now.
    pub(crate) fn all(&self) -> RelationMap {
        self.known.borrow().clone()
    }

    /// The relations from now on.
    pub(crate) fn watch(&self) -> watch::Receiver<RelationMap> {
        self.known.subscribe()
    }

    /// The relations `runtime` is in, alive or dying, by id.
    pub(crate) fn of_runtime(&self, runtime: &str) -> Vec<Relation> {
        self.all()
            .values()
            .filter(|relation| relation.involves(runtime))
            .cloned()
            .collect()
    }

    /// Makes the relations match `config`: a relation it gains is created
    /// with a new id, one it lost starts dying. `hooked` are the runtimes
    /// whose hook drivers run now (a dying relation waits for their sides).
    pub(crate) async fn apply(
        &self,
        config: &Config,
        hooked: BTreeSet<String>,
    ) -> Result<(), String> {
        self.lock_ending().hooked = hooked;
        let known = self.all();
        for relation in known.values() {
            if relation.life == RelationLife::Alive
                && config.relation(&relation.endpoints).is_none()
            {
                let dying = Relation {
                    life: RelationLife::Dying,
                    ..relation.clone()
                };
                self.store
                    .commit_records(vec![records::set_relation(&dying)])
                    .await
                    .map_err(|error| error.to_string())?;
                info!("{} left the config: it dies", relation.describe());
                self.known.send_modify(|known| {
                    Arc::make_mut(known).insert(dying.id, dying.clone());
                });
                self.publish(&dying, EventKind::RelationDying);
            }
        }
        let mut created = Vec::new();
        let outcome = async {
            for wanted in &config.relations {
                let exists = self.all().values().any(|relation| {
                    relation.life == RelationLife::Alive && wanted.relates(&relation.endpoints)
                });
                if !exists {
                    created.push(self.create(wanted.endpoints.clone()).await?);
                }
            }
            self.enter_hookless(config).await
        }
        .await;
        // Announced once its units without hooks are in: a reader the
        // event sends to `GET /v1/relations` sees them (no later event
        // would tell it to look again). A unit with hooks joins after its
        // hooks ran, and those have events of their own.
        for relation in &created {
            self.publish(relation, EventKind::RelationCreated);
        }
        outcome?;
        self.settle().await
    }

    /// A runtime without hooks is in its relations from the start: it has
    /// nothing to run before it could take part.
    async fn enter_hookless(&self, config: &Config) -> Result<(), String> {
        for relation in self.all().values() {
            if relation.life != RelationLife::Alive {
                continue;
            }
            for end in relation.ends() {
                let hookless = config
                    .runtime(&end.runtime)
                    .is_some_and(|runtime| runtime.hooks.is_none());
                if hookless {
                    let unit = self.unit(&end.runtime);
                    self.source.enter(relation.id, &unit, &end.runtime).await?;
                }
            }
        }
        Ok(())
    }

    /// Creates a relation in the store and among the known ones; the
    /// caller announces it.
    async fn create(&self, endpoints: [Endpoint; 2]) -> Result<Relation, String> {
        let id = records::next_id(&self.store).await?;
        let relation = Relation {
            id,
            endpoints,
            life: RelationLife::Alive,
        };
        self.store
            .commit_records(vec![
                records::sequence_past(id),
                records::set_relation(&relation),
            ])
            .await
            .map_err(|error| error.to_string())?;
        info!("{} created", relation.describe());
        self.known.send_modify(|known| {
            Arc::make_mut(known).insert(id, relation.clone());
        });
        Ok(relation)
    }

    /// `runtime` will run no more hooks (it left the config, or lost its
    /// hooks): its sides of dying relations have nothing left to wait for.
    pub(crate) async fn unhook(&self, runtime: &str) -> Result<(), String> {
        self.lock_ending().hooked.remove(runtime);
        self.settle().await
    }

    /// `runtime` gained a hook driver.
    pub(crate) fn hook(&self, runtime: &str) {
        self.lock_ending().hooked.insert(runtime.to_owned());
    }

    /// `runtime`'s hooks have ended dying relation `id` (relation-broken
    /// ran, or its unit never took part in it).
    pub(crate) async fn finished(&self, id: u64, runtime: &str) -> Result<(), String> {
        self.lock_ending().finished.insert((id, runtime.to_owned()));
        self.settle().await
    }

    /// Deletes the dying relations that no side waits for any more.
    async fn settle(&self) -> Result<(), String> {
        let done: Vec<Relation> = {
            let ending = self.lock_ending();
            self.all()
                .values()
                .filter(|relation| relation.life == RelationLife::Dying)
                .filter(|relation| {
                    relation.ends().iter().all(|end| {
                        !ending.hooked.contains(&end.runtime)
                            || ending
                                .finished
                                .contains(&(relation.id, end.runtime.clone()))
                    })
                })
                .cloned()
                .collect()
        };
        for relation in done {
            let mut writes = vec![records::delete_relation(relation.id)];
            for end in relation.ends() {
                writes.push(records::delete_state(&end.runtime, relation.id));
            }
            for member in records::units(&self.store).await? {
                if member.0 == relation.id {
                    writes.push(records::delete_unit(relation.id, &member.1));
                }
            }
            self.store
                .commit_records(writes)
                .await
                .map_err(|error| error.to_string())?;
            self.source.forget(relation.id);
            self.lock_ending()
                .finished
                .retain(|(id, _)| *id != relation.id);
            info!("{} is gone", relation.describe());
            self.known.send_modify(|known| {
                Arc::make_mut(known).remove(&relation.id);
            });
            self.publish(&relation, EventKind::RelationRemoved);
        }
        Ok(())
    }

    /// Waits until `runtime` is in no relation, for at most `patience`;
    /// false if it still is then.
    pub(crate) async fn wait_until_free(
        &self,
        runtime: &str,
        patience: std::time::Duration,
    ) -> bool {
        let mut known = self.watch();
        let free =
            known.wait_for(|known| known.values().all(|relation| !relation.involves(runtime)));
        match tokio::time::timeout(patience, free).await {
            Ok(_) => true,
            Err(_) => {
                warn!(
                    runtime,
                    "its relations did not finish dying in time; going on without them"
                );
                false
            }
        }
    }

    /// Announces a change already made (to the known relations and their
    /// units), so that whoever the event sends to read them sees it.
    fn publish(&self, relation: &Relation, kind: EventKind) {
        for end in relation.ends() {
            self.events.publish(AgentEvent::now(
                end.runtime.as_str(),
                "",
                kind,
                Some(relation.describe()),
            ));
        }
    }

    fn lock_ending(&self) -> std::sync::MutexGuard<'_, Ending> {
        self.ending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
