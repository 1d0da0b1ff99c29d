//! The dying hook queue: the hooks that end a relation that is going away
//! ([`DyingQueue`]).
//!
//! This module owns only their order; it must never watch, run or persist
//! anything.

use std::collections::VecDeque;

use crate::relation::RelationState;
use crate::{HookInfo, HookKind};

/// The hooks that end a relation, from the state the hooks left: the
/// pending changed (its obligation stands), a departed for every member in
/// name order at its saved version, then `relation-broken` (relation id
/// only). Nothing for a state that is already broken.
///
/// Built from the committed state, so an agent that restarts while a
/// relation is dying builds it again and continues where the hooks left
/// off. Use it like an [`AliveQueue`](super::AliveQueue) without updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DyingQueue {
    hooks: VecDeque<HookInfo>,
}

impl DyingQueue {
    /// The hooks that end the relation `state` describes.
    pub fn new(state: &RelationState) -> Self {
        let mut hooks = VecDeque::new();
        let id = state.relation_id;
        let Some(members) = &state.members else {
            return Self { hooks };
        };
        let unit_hook = |kind, unit: &str, version: u64| {
            HookInfo::relation(kind, id, Some(unit.to_owned()), Some(version))
        };
        if let Some((unit, &version)) = state
            .changed_pending
            .as_ref()
            .and_then(|unit| members.get_key_value(unit))
        {
            hooks.push_back(unit_hook(HookKind::RelationChanged, unit, version));
        }
        for (unit, &version) in members {
            hooks.push_back(unit_hook(HookKind::RelationDeparted, unit, version));
        }
        hooks.push_back(HookInfo::relation(HookKind::RelationBroken, id, None, None));
        Self { hooks }
    }

    /// The hook to run next, if any.
    pub fn next(&self) -> Option<HookInfo> {
        self.hooks.front().cloned()
    }

    /// Takes out the hook [`next`](Self::next) returns, and returns it.
    pub fn pop(&mut self) -> Option<HookInfo> {
        self.hooks.pop_front()
    }

    /// Whether every hook was taken.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }
}
