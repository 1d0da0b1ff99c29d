//! The alive hook queue: a pure state machine that turns a live relation's
//! stream of [`RelationUnitsChange`]s into the relation hooks to run, in
//! order ([`AliveQueue`]).
//!
//! This is juju's alive hook queue (2014; unchanged through its later
//! `HookSource` refactor): one entry per unit in a FIFO that keeps a unit's
//! place when its queued hook is replaced, changed units taken in name
//! order, and a pending changed that runs before anything else. Two
//! differences, each a juju bug that the property test finds:
//!
//! - a change at the version the hooks last saw for a unit unqueues its
//!   changed. Juju compared with the *latest known* version, so a source
//!   that repeated a version a queued changed already carried (a re-list
//!   after a compacted watch does) dropped that changed for good;
//! - a unit that departs before its joined ran is forgotten. Juju kept it,
//!   so when it came back at a new version it got a changed without ever
//!   having joined.
//!
//! This module owns the ordering rules; it must never watch, run or
//! persist anything.

use std::collections::BTreeMap;

use crate::relation::{RelationState, RelationUnitsChange};
use crate::{Error, HookInfo, HookKind};

/// What the queue knows of one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UnitInfo {
    /// The latest version the source sent: what the next hook for the
    /// unit carries.
    version: u64,
    /// The version the last hook run for the unit carried; `None` until
    /// its joined ran (the unit is not a member yet).
    seen: Option<u64>,
    /// The unit's place in the FIFO and the hook queued for it.
    queued: Option<(u64, HookKind)>,
}

/// The hooks due for a live relation, from the state the hooks left
/// ([`RelationState`]) and a watch of the relation's units.
///
/// Drive it from one task: feed every change, in order, to
/// [`update`](Self::update); run [`next`](Self::next) when there is one,
/// taking it out with [`pop`](Self::pop) before feeding further changes
/// (changes that arrive while the hook runs are then folded in correctly);
/// and commit the hook's effect on the persisted state with
/// [`RelationState::commit`] once it succeeded. The queue is empty until
/// the first change arrived, and the first change must be the whole
/// current membership: members the hooks saw that are missing from it are
/// departed first (but a pending changed still runs before them).
#[derive(Debug, Clone)]
pub struct AliveQueue {
    relation_id: u64,
    units: BTreeMap<String, UnitInfo>,
    /// The FIFO: place → unit. Places only grow, so the first entry is the
    /// head and a replaced hook keeps its unit's place.
    order: BTreeMap<u64, String>,
    next_place: u64,
    changed_pending: Option<String>,
    started: bool,
}

impl AliveQueue {
    /// A queue that continues from `state`: its members have joined at
    /// their saved versions, and its pending changed runs first. Fails for
    /// a broken state, which runs no more hooks.
    pub fn new(state: &RelationState) -> Result<Self, Error> {
        let Some(members) = &state.members else {
            return Err(Error::RelationBroken {
                relation_id: state.relation_id,
            });
        };
        let units = members
            .iter()
            .map(|(unit, &version)| {
                let info = UnitInfo {
                    version,
                    seen: Some(version),
                    queued: None,
                };
                (unit.clone(), info)
            })
            .collect();
        Ok(Self {
            relation_id: state.relation_id,
            units,
            order: BTreeMap::new(),
            next_place: 0,
            changed_pending: state
                .changed_pending
                .clone()
                .filter(|unit| members.contains_key(unit)),
            started: false,
        })
    }

    /// The relation.
    pub fn relation_id(&self) -> u64 {
        self.relation_id
    }

    /// Folds in the watch's next change. The first must be the whole
    /// current membership: one that departs units is refused
    /// ([`Error::FirstChangeDeparts`]) and changes nothing.
    pub fn update(&mut self, change: &RelationUnitsChange) -> Result<(), Error> {
        if !self.started {
            if !change.departed.is_empty() {
                return Err(Error::FirstChangeDeparts {
                    relation_id: self.relation_id,
                    departed: change.departed.clone(),
                });
            }
            // Members the hooks saw that are gone now depart first, as if
            // the source had said so before its first change.
            let gone: Vec<String> = self
                .units
                .keys()
                .filter(|unit| !change.changed.contains_key(*unit))
                .cloned()
                .collect();
            self.depart(&gone);
            self.started = true;
        }
        // A BTreeMap: changed units in name order, as juju sorted them.
        for (unit, &version) in &change.changed {
            let Some(info) = self.units.get_mut(unit) else {
                self.units.insert(
                    unit.clone(),
                    UnitInfo {
                        version,
                        seen: None,
                        queued: None,
                    },
                );
                self.queue(unit, HookKind::RelationJoined);
                continue;
            };
            info.version = version;
            match info.queued {
                // The joined will carry the latest version.
                Some((_, HookKind::RelationJoined)) => {}
                _ if info.seen == Some(version) => self.unqueue(unit),
                _ => self.queue(unit, HookKind::RelationChanged),
            }
        }
        self.depart(&change.departed);
        Ok(())
    }

    fn depart(&mut self, units: &[String]) {
        for unit in units {
            match self.units.get(unit).map(|info| info.queued) {
                // Never seen (or already forgotten): nothing to undo.
                None => {}
                Some(Some((_, HookKind::RelationJoined))) => {
                    self.unqueue(unit);
                    self.units.remove(unit);
                }
                Some(_) => self.queue(unit, HookKind::RelationDeparted),
            }
        }
    }

    /// The hook to run next, if any: the pending changed, else the head of
    /// the FIFO; it carries the unit's latest known version. `None` before
    /// the first change.
    pub fn next(&self) -> Option<HookInfo> {
        if !self.started {
            return None;
        }
        let (unit, kind) = match &self.changed_pending {
            Some(unit) => (unit, HookKind::RelationChanged),
            None => {
                let unit = self.order.values().next()?;
                let (_, kind) = self.units.get(unit)?.queued?;
                (unit, kind)
            }
        };
        let version = self.units.get(unit)?.version;
        Some(HookInfo::relation(
            kind,
            self.relation_id,
            Some(unit.clone()),
            Some(version),
        ))
    }

    /// Takes out the hook [`next`](Self::next) returns, and returns it. A
    /// joined makes that unit's changed the very next hook; a departed
    /// forgets the unit.
    pub fn pop(&mut self) -> Option<HookInfo> {
        let hook = self.next()?;
        let unit = hook.remote_unit.as_deref()?;
        if self.changed_pending.take().is_some() {
            // A changed queued for the unit too is this very hook.
            if let Some((_, HookKind::RelationChanged)) = self.units.get(unit)?.queued {
                self.unqueue(unit);
            }
            self.saw(unit);
            return Some(hook);
        }
        self.unqueue(unit);
        match hook.kind {
            HookKind::RelationJoined => {
                self.saw(unit);
                self.changed_pending = Some(unit.to_owned());
            }
            HookKind::RelationDeparted => {
                self.units.remove(unit);
            }
            _ => self.saw(unit),
        }
        Some(hook)
    }

    /// Whether no hook is due (always, before the first change).
    pub fn is_empty(&self) -> bool {
        self.next().is_none()
    }

    fn saw(&mut self, unit: &str) {
        if let Some(info) = self.units.get_mut(unit) {
            info.seen = Some(info.version);
        }
    }

    /// Queues `kind` for `unit`, at the tail unless the unit already has a
    /// place (then the hook is replaced in place).
    fn queue(&mut self, unit: &str, kind: HookKind) {
        let Some(info) = self.units.get_mut(unit) else {
            return;
        };
        let place = match info.queued {
            Some((place, _)) => place,
            None => {
                let place = self.next_place;
                self.next_place += 1;
                self.order.insert(place, unit.to_owned());
                place
            }
        };
        info.queued = Some((place, kind));
    }

    fn unqueue(&mut self, unit: &str) {
        if let Some((place, _)) = self.units.get_mut(unit).and_then(|info| info.queued.take()) {
            self.order.remove(&place);
        }
    }
}
