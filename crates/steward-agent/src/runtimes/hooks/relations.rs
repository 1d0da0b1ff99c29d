//! A hook driver's relations ([`RelationHooks`]): for each relation its
//! unit takes part in, what its hooks have seen (the committed
//! `RelationState`), the queue of the relation hooks due — while the
//! relation lives, from a watch of the other side's units; once it dies,
//! from the committed state alone — and the store writes that commit a
//! relation hook's effect on that state.
//!
//! The driver runs one hook at a time, whatever it is about; this module
//! only answers which relation hook is next and keeps the queues in step
//! with what was committed. It must never run a hook, and it must never
//! commit a relation hook's state except in the same transaction as the
//! hook's completion (the driver puts [`state_write`] into that batch).
//!
//! Rules kept here:
//! - a unit takes part in its relations once its `start` hook has run: it
//!   then enters their scope (the other side sees it) and its relation
//!   hooks begin;
//! - a relation hook is validated against the committed state before it
//!   runs; one that does not fit is a bug, logged, and the queue is
//!   rebuilt from the committed state instead of running it;
//! - a hook committed that did not come from the queue as it is now (a
//!   failed hook retried after an agent restart, or resolved) rebuilds the
//!   queue from the new committed state, so nothing runs twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use steward_hooks::lifecycle::PlannedHook;
use steward_hooks::relation::{AliveQueue, DyingQueue, RelationState};
use steward_hooks::{HookInfo, RelationInfo};
use steward_store::{RecordWrite, Store};
use tokio::sync::{mpsc, watch};
use tracing::{error, info};

use crate::api::types::RelationLife;
use crate::relations::source::{UnitsEvent, UnitsWatch};
use crate::relations::{Relation, RelationMap, Relations, records};

/// How many units events wait for the driver (the source then waits, and
/// folds what changes meanwhile into its next event).
const EVENTS: usize = 64;

/// The relation hooks of one unit.
#[derive(Debug)]
pub(super) struct RelationHooks {
    runtime: String,
    unit: String,
    relations: Arc<Relations>,
    known: watch::Receiver<RelationMap>,
    slots: BTreeMap<u64, Slot>,
    sink: mpsc::Sender<UnitsEvent>,
    events: mpsc::Receiver<UnitsEvent>,
    next_tag: u64,
    /// The relation whose hook ran last: relations take turns.
    last: Option<u64>,
}

/// One relation the unit takes part in.
#[derive(Debug)]
struct Slot {
    relation: Relation,
    /// What the unit's hooks have seen, as committed.
    state: RelationState,
    queue: Queue,
    /// The watch feeding an alive queue, with its tag.
    watch: Option<(u64, UnitsWatch)>,
    /// The hook last taken out of the queue (to run).
    popped: Option<HookInfo>,
}

#[derive(Debug)]
enum Queue {
    Alive(AliveQueue),
    Dying(DyingQueue),
}

impl Queue {
    fn next(&self) -> Option<HookInfo> {
        match self {
            Queue::Alive(queue) => queue.next(),
            Queue::Dying(queue) => queue.next(),
        }
    }

    fn pop(&mut self) -> Option<HookInfo> {
        match self {
            Queue::Alive(queue) => queue.pop(),
            Queue::Dying(queue) => queue.pop(),
        }
    }
}

/// What a hook sees of the unit's relations (for its tools).
#[derive(Debug, Clone, Default)]
pub(super) struct RelationView {
    /// The relations it may name: every live one of its runtime, and the
    /// dying ones it still takes part in.
    pub(super) relations: Vec<RelationInfo>,
    /// The remote members of each, as the unit's hooks have seen them.
    pub(super) members: BTreeMap<u64, Vec<String>>,
}

/// What woke a driver about its relations.
#[derive(Debug)]
pub(super) enum RelationWake {
    /// The relations changed (created, dying, gone).
    Relations,
    /// A watch sent a change of a relation's units.
    Units(UnitsEvent),
}

impl RelationHooks {
    pub(super) fn new(runtime: &str, relations: Arc<Relations>) -> Self {
        let (sink, events) = mpsc::channel(EVENTS);
        Self {
            runtime: runtime.to_owned(),
            unit: relations.unit(runtime),
            known: relations.watch(),
            relations,
            slots: BTreeMap::new(),
            sink,
            events,
            next_tag: 0,
            last: None,
        }
    }

    /// Brings the slots in step with the relations: joins live relations
    /// once `taking_part` (the unit has started), turns the queues of
    /// dying ones into dying queues, and reports dying relations the unit
    /// never took part in as finished. Also folds in the units events
    /// waiting. Call it while no hook runs.
    pub(super) async fn sync(&mut self, store: &Store, taking_part: bool) -> Result<(), String> {
        while let Ok(event) = self.events.try_recv() {
            self.feed(event);
        }
        let known = self.known.borrow_and_update().clone();
        // Deleted while the unit took part (the agent stopped waiting for
        // its hooks): nothing is left to run.
        self.slots.retain(|id, _| known.contains_key(id));
        let runtime = self.runtime.clone();
        let mine = known
            .values()
            .filter(|relation| relation.involves(&runtime));
        for relation in mine {
            let id = relation.id;
            if let Some(slot) = self.slots.get_mut(&id) {
                if relation.life == RelationLife::Dying && matches!(slot.queue, Queue::Alive(_)) {
                    info!(runtime = %self.runtime, relation = id, "the relation is dying: ending it");
                    slot.queue = Queue::Dying(DyingQueue::new(&slot.state));
                    slot.watch = None;
                    // A failed hook of the live queue, committed later,
                    // must rebuild the dying queue from its effect.
                    slot.popped = None;
                }
                slot.relation = relation.clone();
                continue;
            }
            let saved = records::state(store, &self.runtime, id).await?;
            match (relation.life, saved) {
                (RelationLife::Dying, None) => {
                    // Never took part, or relation-broken already ran.
                    self.relations.finished(id, &self.runtime).await?;
                }
                (RelationLife::Dying, Some(state)) => {
                    let slot = self.fresh_slot(relation.clone(), state);
                    self.slots.insert(id, slot);
                }
                (RelationLife::Alive, saved) => {
                    if saved.is_none() && !taking_part {
                        continue;
                    }
                    let state = match saved {
                        Some(state) => state,
                        None => {
                            // Written first: a relation that dies from now
                            // on runs relation-broken for this unit.
                            let state = RelationState::new(id);
                            store
                                .commit_records(vec![records::set_state(&self.runtime, &state)])
                                .await
                                .map_err(|error| error.to_string())?;
                            state
                        }
                    };
                    self.relations
                        .source()
                        .enter(id, &self.unit, &self.runtime)
                        .await?;
                    info!(runtime = %self.runtime, relation = id, "taking part in the relation");
                    let slot = self.fresh_slot(relation.clone(), state);
                    self.slots.insert(id, slot);
                }
            }
        }
        Ok(())
    }

    /// Folds a units event into its relation's queue (events of a watch
    /// that was replaced are dropped).
    pub(super) fn feed(&mut self, event: UnitsEvent) {
        let Some(slot) = self.slots.get_mut(&event.relation) else {
            return;
        };
        let current = slot.watch.as_ref().map(|(tag, _)| *tag);
        let Queue::Alive(queue) = &mut slot.queue else {
            return;
        };
        if current != Some(event.tag) {
            return;
        }
        if let Err(problem) = queue.update(&event.change) {
            error!(runtime = %self.runtime, relation = event.relation, %problem, "a relation watch sent a change the queue cannot take; watching afresh");
            self.rebuild(event.relation);
        }
    }

    /// Waits for a change of the relations or of a relation's units.
    pub(super) async fn changed(&mut self) -> RelationWake {
        tokio::select! {
            changed = self.known.changed() => {
                if changed.is_err() {
                    // The agent is stopping; nothing more will change.
                    std::future::pending::<()>().await;
                }
                RelationWake::Relations
            }
            event = self.events.recv() => match event {
                Some(event) => RelationWake::Units(event),
                // Never: the driver holds a sender.
                None => std::future::pending().await,
            },
        }
    }

    /// The relation hook to run next, taking turns between relations,
    /// validated against its relation's committed state.
    pub(super) fn next(&mut self) -> Option<(u64, HookInfo)> {
        let ids: Vec<u64> = match self.last {
            Some(last) => {
                let (before, after): (Vec<u64>, Vec<u64>) =
                    self.slots.keys().partition(|id| **id <= last);
                after.into_iter().chain(before).collect()
            }
            None => self.slots.keys().copied().collect(),
        };
        for id in ids {
            let Some(slot) = self.slots.get(&id) else {
                continue;
            };
            let Some(hook) = slot.queue.next() else {
                continue;
            };
            match slot.state.validate(&hook) {
                Ok(()) => return Some((id, hook)),
                Err(problem) => {
                    error!(runtime = %self.runtime, relation = id, %problem, "a relation hook does not fit what the hooks have seen; rebuilding the relation's queue instead of running it");
                    self.rebuild(id);
                }
            }
        }
        None
    }

    /// Takes the hook [`next`](Self::next) returned for `id` out of its
    /// queue, as a hook planned to run for `version`.
    pub(super) fn take(&mut self, id: u64, version: &str) -> Option<PlannedHook> {
        let slot = self.slots.get_mut(&id)?;
        let hook = slot.queue.pop()?;
        slot.popped = Some(hook.clone());
        self.last = Some(id);
        let endpoint = slot.relation.endpoint_of(&self.runtime)?.name.clone();
        Some(PlannedHook::relation(hook, endpoint, version))
    }

    /// The remote runtime of relation `id`, if the unit knows the relation.
    pub(super) fn remote_runtime(&self, id: u64) -> Option<String> {
        let known = self.known.borrow();
        let relation = known.get(&id)?;
        Some(relation.remote_of(&self.runtime)?.runtime.clone())
    }

    /// Whether relation `id` still exists.
    pub(super) fn exists(&self, id: u64) -> bool {
        self.known.borrow().contains_key(&id)
    }

    /// What a hook sees of the unit's relations now.
    pub(super) fn view(&self) -> RelationView {
        let known = self.known.borrow();
        let relations = known
            .values()
            .filter(|relation| {
                relation.involves(&self.runtime)
                    && (relation.life == RelationLife::Alive
                        || self.slots.contains_key(&relation.id))
            })
            .filter_map(|relation| {
                Some(RelationInfo {
                    id: relation.id,
                    endpoint: relation.endpoint_of(&self.runtime)?.name.clone(),
                    remote: relation.remote_of(&self.runtime)?.runtime.clone(),
                })
            })
            .collect();
        let members = self
            .slots
            .iter()
            .map(|(id, slot)| {
                let members = slot.state.members.iter().flatten();
                (*id, members.map(|(unit, _)| unit.clone()).collect())
            })
            .collect();
        RelationView { relations, members }
    }

    /// The committed state of relation `id` with `hook` committed, for the
    /// transaction that completes `hook` (`None` if the unit keeps no state
    /// for the relation).
    pub(super) async fn committed_state(
        &self,
        store: &Store,
        hook: &HookInfo,
    ) -> Result<Option<RelationState>, String> {
        let Some(id) = hook.relation_id.filter(|_| hook.kind.is_relation()) else {
            return Ok(None);
        };
        let state = match self.slots.get(&id) {
            Some(slot) => Some(slot.state.clone()),
            None => records::state(store, &self.runtime, id).await?,
        };
        Ok(state.map(|mut state| {
            state.commit(hook);
            state
        }))
    }

    /// `hook` was committed (or resolved) with `state` as its relation's
    /// new committed state: keeps the queue in step, and ends the slot of
    /// a broken relation.
    pub(super) async fn committed(
        &mut self,
        hook: &HookInfo,
        state: RelationState,
    ) -> Result<(), String> {
        let id = state.relation_id;
        if state.is_broken() {
            if self.slots.remove(&id).is_some() {
                info!(runtime = %self.runtime, relation = id, "relation-broken ran: the unit has left the relation");
                self.relations.finished(id, &self.runtime).await?;
            }
            return Ok(());
        }
        let Some(slot) = self.slots.get_mut(&id) else {
            return Ok(());
        };
        slot.state = state;
        if slot.popped.take().as_ref() != Some(hook) {
            self.rebuild(id);
        }
        Ok(())
    }

    /// A slot for `relation` whose queue starts from `state`.
    fn fresh_slot(&mut self, relation: Relation, state: RelationState) -> Slot {
        let (queue, watch) = self.fresh_queue(&relation, &state);
        Slot {
            relation,
            state,
            queue,
            watch,
            popped: None,
        }
    }

    /// Starts the queue of relation `id` afresh from its committed state.
    fn rebuild(&mut self, id: u64) {
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        let slot = self.fresh_slot(slot.relation, slot.state);
        self.slots.insert(id, slot);
    }

    /// A queue that starts from `state`: a dying relation's from the state
    /// alone, a live one's with a new watch of the other side's units.
    fn fresh_queue(
        &mut self,
        relation: &Relation,
        state: &RelationState,
    ) -> (Queue, Option<(u64, UnitsWatch)>) {
        let dying = || Queue::Dying(DyingQueue::new(state));
        let (RelationLife::Alive, Some(remote)) =
            (relation.life, relation.remote_of(&self.runtime))
        else {
            return (dying(), None);
        };
        // Only a broken state has no live queue, and none is kept.
        let Ok(queue) = AliveQueue::new(state) else {
            return (dying(), None);
        };
        let tag = self.next_tag;
        self.next_tag += 1;
        let watch = self.relations.source().watch(
            relation.id,
            &remote.runtime,
            &self.unit,
            tag,
            self.sink.clone(),
        );
        (Queue::Alive(queue), Some((tag, watch)))
    }
}

/// The write that commits `state` as `runtime`'s state of its relation.
pub(super) fn state_write(runtime: &str, state: &RelationState) -> RecordWrite {
    records::set_state(runtime, state)
}
