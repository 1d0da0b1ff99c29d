//! [`KeyChanges`]: what a watch of a set of shared keys (a fleet's units, a
//! relation's members) delivers, and how its changes coalesce while nobody
//! takes them (the latest event per key wins, so a slow consumer holds one
//! event per key, never a backlog). This module must never interpret the
//! values.

use std::collections::BTreeMap;

use steward_worker::Change;

/// One key's latest change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    /// The key, relative to what is watched: for [`Presence::watch_units`]
    /// and [`RelationSettings::watch_relation`], a unit name
    /// `<runtime>/<agent>`.
    ///
    /// [`Presence::watch_units`]: crate::Presence::watch_units
    /// [`RelationSettings::watch_relation`]: crate::RelationSettings::watch_relation
    pub key: String,
    /// The value now; `None`: the key was deleted (or its lease expired).
    pub value: Option<Vec<u8>>,
    /// The backend's revision that created the key's current incarnation
    /// (0 when deleted; etcd's `create_revision`). It changes when a key is deleted and created again — a
    /// unit that departed and joined anew — even if the two coalesced.
    pub create_revision: i64,
    /// The revision of this change (the delete's, for a delete): grows
    /// with every change of the key, so it serves as a change version.
    pub mod_revision: i64,
}

/// A batch of changes of a watch of shared keys: at most one event per key,
/// the latest, sorted by key.
///
/// The first batch of a watch holds every key (an empty batch if none): the
/// whole membership. After a reconnect the watch resumes from the last
/// revision it delivered; if the backend no longer has that revision's
/// history (etcd compacted it), the watch lists again and delivers the
/// difference (puts of what changed, deletes of what went), so nothing is
/// missed either way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChanges {
    /// The backend's revision up to which this batch is complete.
    pub revision: i64,
    /// The changed keys.
    pub events: Vec<KeyEvent>,
}

/// The pending (not yet taken) changes of a [`KeyChanges`] watch.
#[derive(Debug, Default)]
pub struct PendingKeyChanges {
    changed: bool,
    revision: i64,
    events: BTreeMap<String, KeyEvent>,
}

impl Change for KeyChanges {
    type Pending = PendingKeyChanges;

    fn accumulate(pending: &mut PendingKeyChanges, change: KeyChanges) {
        pending.changed = true;
        pending.revision = pending.revision.max(change.revision);
        for event in change.events {
            pending.events.insert(event.key.clone(), event);
        }
    }

    fn take(pending: &mut PendingKeyChanges) -> Option<KeyChanges> {
        if !std::mem::take(&mut pending.changed) {
            return None;
        }
        Some(KeyChanges {
            revision: pending.revision,
            events: std::mem::take(&mut pending.events).into_values().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str, value: Option<&str>, create: i64, rev: i64) -> KeyEvent {
        KeyEvent {
            key: key.to_owned(),
            value: value.map(|v| v.as_bytes().to_vec()),
            create_revision: create,
            mod_revision: rev,
        }
    }

    #[test]
    fn the_latest_event_per_key_wins_and_keys_are_sorted() {
        let mut pending = PendingKeyChanges::default();
        assert_eq!(KeyChanges::take(&mut pending), None);
        KeyChanges::accumulate(
            &mut pending,
            KeyChanges {
                revision: 5,
                events: vec![event("b", Some("1"), 5, 5), event("a", Some("1"), 4, 4)],
            },
        );
        KeyChanges::accumulate(
            &mut pending,
            KeyChanges {
                revision: 7,
                events: vec![event("b", None, 0, 6), event("b", Some("2"), 7, 7)],
            },
        );
        let taken = KeyChanges::take(&mut pending).unwrap();
        assert_eq!(taken.revision, 7);
        assert_eq!(
            taken.events,
            [event("a", Some("1"), 4, 4), event("b", Some("2"), 7, 7)]
        );
        assert_eq!(KeyChanges::take(&mut pending), None);
    }

    #[test]
    fn an_empty_batch_is_a_change() {
        let mut pending = PendingKeyChanges::default();
        KeyChanges::accumulate(&mut pending, KeyChanges::default());
        assert_eq!(KeyChanges::take(&mut pending), Some(KeyChanges::default()));
    }
}
