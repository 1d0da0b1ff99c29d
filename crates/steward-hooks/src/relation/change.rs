//! What a watch of a relation's units sends: [`RelationUnitsChange`].
//!
//! This module owns only the shape of a change. It must never know where
//! changes come from (a store watch, etcd) or what hooks they cause.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One change of a relation's remote units, as a watch sends it: units
/// that are in the relation with their settings' *change version* (a
/// number that grows with every settings write, such as a store
/// revision), and units that left it.
///
/// A watch's **first** change is the whole current state: every member
/// with its version, and nothing departed. Later changes carry only what
/// changed. Serialised with `changed` and `departed` keys, both optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationUnitsChange {
    /// Units in the relation whose version is new (or, in the first
    /// change, every member), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changed: BTreeMap<String, u64>,
    /// Units that left the relation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departed: Vec<String>,
}

impl RelationUnitsChange {
    /// A change of versions only.
    pub fn changed<U: Into<String>>(units: impl IntoIterator<Item = (U, u64)>) -> Self {
        Self {
            changed: units.into_iter().map(|(u, v)| (u.into(), v)).collect(),
            departed: Vec::new(),
        }
    }

    /// A change of departures only.
    pub fn departed<U: Into<String>>(units: impl IntoIterator<Item = U>) -> Self {
        Self {
            changed: BTreeMap::new(),
            departed: units.into_iter().map(Into::into).collect(),
        }
    }
}
