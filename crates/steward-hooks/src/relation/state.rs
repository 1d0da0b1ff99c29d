//! What a unit's hooks have seen of one relation ([`RelationState`]), the
//! rule a relation hook must satisfy to run against it
//! ([`RelationState::validate`]), and what a successful hook changes in it
//! ([`RelationState::commit`]).
//!
//! Juju kept this state as one YAML file per member in a directory per
//! relation (written without a directory fsync, and read back with rules
//! for stray files). Here it is one value the agent persists as a single
//! store record, committed in the same transaction as the hook's
//! completion; so juju's file-format rules (`.preparing` files, names that
//! are not units, `ReadAllStateDirs`) have no counterpart, and a broken
//! relation is a state (`members: None`) rather than a deleted directory.
//!
//! This module owns the rules; it must never persist anything or decide
//! which hook comes next (that is the [queues](super::AliveQueue)).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, HookInfo, HookKind};

/// What a unit's hooks have seen of one relation: the members whose
/// `relation-joined` ran, each with the last settings version a hook was
/// given, and the unit whose `relation-changed` must run next.
///
/// Serialised with kebab-case keys; `members` is always present (`null`
/// once broken), `changed-pending` only when set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RelationState {
    /// The relation.
    pub relation_id: u64,
    /// The members, by name, with the change version of the last hook run
    /// for them; `None` once `relation-broken` ran (the relation can change
    /// no further). Required when read back: a record that lost it must
    /// not read as a broken relation.
    #[serde(deserialize_with = "Option::deserialize")]
    pub members: Option<BTreeMap<String, u64>>,
    /// A member whose `relation-joined` ran and whose `relation-changed`
    /// must be the very next hook of this relation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_pending: Option<String>,
}

/// Why a relation hook does not fit a [`RelationState`] (the reason in
/// [`Error::InappropriateHook`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InappropriateReason {
    /// Not a relation hook at all.
    #[error("not a relation hook")]
    NotARelationHook,
    /// The hook is about another relation (or names none).
    #[error("expected relation {expected}, got {}", match got {
        Some(id) => format!("relation {id}"),
        None => "a hook with no relation id".to_owned(),
    })]
    WrongRelation {
        /// The state's relation.
        expected: u64,
        /// The hook's.
        got: Option<u64>,
    },
    /// `relation-broken` already ran.
    #[error("relation is broken and cannot be changed further")]
    Broken,
    /// `relation-broken` while members have not departed.
    #[error("cannot run \"relation-broken\" while units still present")]
    UnitsStillPresent,
    /// A joined, changed or departed hook without a remote unit.
    #[error("the hook names no remote unit")]
    NoRemoteUnit,
    /// Another hook than the changed that must follow a joined.
    #[error("expected \"relation-changed\" for {unit:?}")]
    ChangedPending {
        /// The unit whose changed must run next.
        unit: String,
    },
    /// `relation-joined` for a member.
    #[error("unit already joined")]
    AlreadyJoined,
    /// `relation-changed` or `relation-departed` for a unit that is not a
    /// member.
    #[error("unit has not joined")]
    NotJoined,
}

impl RelationState {
    /// The state of a relation no hook has run for yet: no members.
    pub fn new(relation_id: u64) -> Self {
        Self {
            relation_id,
            members: Some(BTreeMap::new()),
            changed_pending: None,
        }
    }

    /// Whether `relation-broken` ran.
    pub fn is_broken(&self) -> bool {
        self.members.is_none()
    }

    /// Checks that `hook` may run against this state (juju's
    /// `State.Validate`, with every error wrapped as
    /// `inappropriate "<kind>" for "<unit>": <reason>`). The agent checks
    /// this before it runs a relation hook: a hook that fails it would
    /// break the guarantees the hooks rely on.
    pub fn validate(&self, hook: &HookInfo) -> Result<(), Error> {
        self.check(hook).map_err(|reason| Error::InappropriateHook {
            kind: hook.kind,
            unit: hook.remote_unit.clone().unwrap_or_default(),
            reason,
        })
    }

    fn check(&self, hook: &HookInfo) -> Result<(), InappropriateReason> {
        if !hook.kind.is_relation() {
            return Err(InappropriateReason::NotARelationHook);
        }
        if hook.relation_id != Some(self.relation_id) {
            return Err(InappropriateReason::WrongRelation {
                expected: self.relation_id,
                got: hook.relation_id,
            });
        }
        let Some(members) = &self.members else {
            return Err(InappropriateReason::Broken);
        };
        if hook.kind == HookKind::RelationBroken {
            return match members.is_empty() {
                true => Ok(()),
                false => Err(InappropriateReason::UnitsStillPresent),
            };
        }
        let Some(unit) = hook.remote_unit.as_deref().filter(|unit| !unit.is_empty()) else {
            return Err(InappropriateReason::NoRemoteUnit);
        };
        if let Some(pending) = &self.changed_pending {
            if unit != pending || hook.kind != HookKind::RelationChanged {
                return Err(InappropriateReason::ChangedPending {
                    unit: pending.clone(),
                });
            }
            return Ok(());
        }
        match (members.contains_key(unit), hook.kind) {
            (true, HookKind::RelationJoined) => Err(InappropriateReason::AlreadyJoined),
            (false, kind) if kind != HookKind::RelationJoined => {
                Err(InappropriateReason::NotJoined)
            }
            _ => Ok(()),
        }
    }

    /// Records that `hook` succeeded (juju's `StateDir.Write`): joined and
    /// changed set the member's version (joined also makes its changed
    /// pending, changed clears it), departed removes the member, broken
    /// ends the relation.
    ///
    /// Committing is idempotent — the agent commits again after a crash
    /// between the hook's completion and the commit — and does not
    /// validate: call [`validate`](Self::validate) before running the hook.
    /// A hook that cannot apply (not a relation hook, another relation, no
    /// remote unit, a relation already broken) changes nothing.
    pub fn commit(&mut self, hook: &HookInfo) {
        if !hook.kind.is_relation() || hook.relation_id != Some(self.relation_id) {
            return;
        }
        if hook.kind == HookKind::RelationBroken {
            self.members = None;
            self.changed_pending = None;
            return;
        }
        let (Some(members), Some(unit)) = (&mut self.members, hook.remote_unit.as_deref()) else {
            return;
        };
        match hook.kind {
            HookKind::RelationDeparted => {
                members.remove(unit);
                // Juju's pending flag lived in the member's file, which a
                // departed removes.
                if self.changed_pending.as_deref() == Some(unit) {
                    self.changed_pending = None;
                }
            }
            kind => {
                members.insert(unit.to_owned(), hook.change_version.unwrap_or_default());
                self.changed_pending = (kind == HookKind::RelationJoined).then(|| unit.to_owned());
            }
        }
    }
}
