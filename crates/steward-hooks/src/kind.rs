//! Hook kinds and the description of one hook to run ([`HookInfo`]).
//!
//! This module owns the names (on the wire, in files and in the store) and
//! the rules a hook description must follow. It must never learn how or when
//! hooks run: that belongs to the runner and to the agent.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// What a hook is about. The name of a kind is its file name in a hooks
/// directory (relation hooks are prefixed by the endpoint, see
/// [`HookInfo::file_name`]) and its name on the wire.
///
/// Juju's `upgrade-charm` is `upgrade` here: it runs after the runtime's
/// active version was switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    /// Once per data dir, before the runtime's first start.
    Install,
    /// Once, after the runtime's first start.
    Start,
    /// At every agent start and every change of the runtime's settings.
    ConfigChanged,
    /// After every switch of the runtime's active version.
    Upgrade,
    /// When the runtime is removed.
    Stop,
    /// A remote unit joined a relation.
    RelationJoined,
    /// A remote unit's settings in a relation changed (always after joined).
    RelationChanged,
    /// A remote unit left a relation.
    RelationDeparted,
    /// The relation itself is gone (after every member departed).
    RelationBroken,
}

const UNIT_HOOKS: [HookKind; 5] = [
    HookKind::Install,
    HookKind::Start,
    HookKind::ConfigChanged,
    HookKind::Upgrade,
    HookKind::Stop,
];

const RELATION_HOOKS: [HookKind; 4] = [
    HookKind::RelationJoined,
    HookKind::RelationChanged,
    HookKind::RelationDeparted,
    HookKind::RelationBroken,
];

impl HookKind {
    /// The hooks about the unit itself, in lifecycle order.
    pub fn unit_hooks() -> &'static [HookKind] {
        &UNIT_HOOKS
    }

    /// The hooks about a relation, in the order a member goes through them.
    pub fn relation_hooks() -> &'static [HookKind] {
        &RELATION_HOOKS
    }

    /// Whether this kind is about a relation (its file name then needs the
    /// relation's endpoint name).
    pub fn is_relation(self) -> bool {
        RELATION_HOOKS.contains(&self)
    }

    /// The kind's name: `install`, `config-changed`, `relation-joined`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Install => "install",
            HookKind::Start => "start",
            HookKind::ConfigChanged => "config-changed",
            HookKind::Upgrade => "upgrade",
            HookKind::Stop => "stop",
            HookKind::RelationJoined => "relation-joined",
            HookKind::RelationChanged => "relation-changed",
            HookKind::RelationDeparted => "relation-departed",
            HookKind::RelationBroken => "relation-broken",
        }
    }

    /// Whether a hook of this kind is about one remote unit (joined, changed
    /// and departed are; broken is about the whole relation).
    fn needs_remote_unit(self) -> bool {
        matches!(
            self,
            HookKind::RelationJoined | HookKind::RelationChanged | HookKind::RelationDeparted
        )
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HookKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UNIT_HOOKS
            .iter()
            .chain(&RELATION_HOOKS)
            .copied()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| Error::UnknownHookKind { kind: s.into() })
    }
}

/// One hook to run: its kind and, for relation hooks, which relation and
/// which remote unit at which settings version.
///
/// Serialised with kebab-case keys (`kind`, `relation-id`, `remote-unit`,
/// `change-version`); fields that are `None` are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct HookInfo {
    /// What the hook is about.
    pub kind: HookKind,
    /// The relation, for relation hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation_id: Option<u64>,
    /// The remote unit, for joined, changed and departed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_unit: Option<String>,
    /// The remote unit's settings version the hook is about, when there is
    /// a remote unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_version: Option<u64>,
}

impl HookInfo {
    /// A hook about the unit itself (`install`, `start`, …), with no
    /// relation fields.
    pub fn unit(kind: HookKind) -> Self {
        Self {
            kind,
            relation_id: None,
            remote_unit: None,
            change_version: None,
        }
    }

    /// A relation hook. `remote_unit` is `None` for `relation-broken`.
    pub fn relation(
        kind: HookKind,
        relation_id: u64,
        remote_unit: Option<String>,
        change_version: Option<u64>,
    ) -> Self {
        Self {
            kind,
            relation_id: Some(relation_id),
            remote_unit,
            change_version,
        }
    }

    /// Checks that the description is complete for its kind: joined,
    /// changed and departed need a remote unit (juju's rule), and every
    /// relation hook needs a relation id. Like juju, fields a kind does not
    /// use are not rejected.
    pub fn validate(&self) -> Result<(), Error> {
        if self.kind.needs_remote_unit() && self.remote_unit.as_deref().is_none_or(str::is_empty) {
            return Err(Error::RemoteUnitRequired { kind: self.kind });
        }
        if self.kind.is_relation() && self.relation_id.is_none() {
            return Err(Error::RelationIdRequired { kind: self.kind });
        }
        Ok(())
    }

    /// The hook's file name in a hooks directory: the kind's name for unit
    /// hooks (`install`), `<endpoint>-<kind>` for relation hooks
    /// (`db-relation-joined`), which therefore need the relation's endpoint
    /// name.
    pub fn file_name(&self, endpoint: Option<&str>) -> Result<String, Error> {
        if !self.kind.is_relation() {
            return Ok(self.kind.as_str().to_string());
        }
        match endpoint {
            Some(endpoint) if !endpoint.is_empty() => Ok(format!("{endpoint}-{}", self.kind)),
            _ => Err(Error::EndpointRequired { kind: self.kind }),
        }
    }
}
