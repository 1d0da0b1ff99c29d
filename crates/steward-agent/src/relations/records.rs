//! How relations are kept in the store: the record kinds and keys, and the
//! values as JSON. Every write goes through [`RecordWrite`]s, so that a
//! caller can put a relation's writes into the same transaction as a hook's
//! completion. This module must never decide anything: it only reads,
//! encodes and names records.
//!
//! The kinds:
//!
//! | kind | key | value |
//! |---|---|---|
//! | `relation` | the id, 20 digits | [`RelationRecord`] |
//! | `relation-seq` | `next` | the next relation id |
//! | `relation-unit` | `<id>/<unit>` | [`RelationUnit`]: a unit's settings and scope |
//! | `relation-state` | `<runtime>/<id>` | `steward_hooks::relation::RelationState`: what the unit's hooks saw |

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use steward_hooks::relation::RelationState;
use steward_store::{RecordWrite, Store};

use crate::api::types::RelationLife;
use crate::config::Endpoint;

const RELATION: &str = "relation";
const SEQUENCE: &str = "relation-seq";
const SEQUENCE_KEY: &str = "next";
const UNIT: &str = "relation-unit";
const STATE: &str = "relation-state";

/// A relation as the agent keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RelationRecord {
    pub(crate) id: u64,
    pub(crate) endpoints: [Endpoint; 2],
    pub(crate) life: RelationLife,
}

/// One unit's side of a relation: its settings, their change version, and
/// whether it is in the relation's scope (seen by the other side).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct RelationUnit {
    /// The unit's runtime: which side of the relation it is on.
    pub(crate) runtime: String,
    /// Whether the other side sees the unit. A unit may have settings
    /// before it enters (a hook's `relation-set -r` before it joined).
    #[serde(default)]
    pub(crate) in_scope: bool,
    /// Grows with every change of the settings (never with a write that
    /// changes nothing): the other side's relation-changed follows it.
    #[serde(default)]
    pub(crate) version: u64,
    #[serde(default)]
    pub(crate) settings: BTreeMap<String, String>,
}

fn id_key(id: u64) -> String {
    format!("{id:020}")
}

fn unit_key(id: u64, unit: &str) -> String {
    format!("{}/{unit}", id_key(id))
}

fn state_key(runtime: &str, id: u64) -> String {
    format!("{runtime}/{}", id_key(id))
}

#[expect(
    clippy::expect_used,
    reason = "structs of strings, numbers and string-keyed maps always encode as JSON"
)]
pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("relation records encode as JSON")
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|error| format!("{what} is unreadable: {error}"))
}

/// Every relation record, by id.
pub(crate) async fn relations(store: &Store) -> Result<Vec<RelationRecord>, String> {
    let records = store
        .records(RELATION)
        .await
        .map_err(|error| error.to_string())?;
    records
        .iter()
        .map(|(key, bytes)| decode(&format!("relation record {key}"), bytes))
        .collect()
}

/// The id the next relation gets (ids are never reused, so a relation
/// removed and added again is a new relation to every hook).
pub(crate) async fn next_id(store: &Store) -> Result<u64, String> {
    match store
        .record(SEQUENCE, SEQUENCE_KEY)
        .await
        .map_err(|error| error.to_string())?
    {
        Some(bytes) => decode("the relation id sequence", &bytes),
        None => Ok(0),
    }
}

/// Writes the id sequence past `id`.
pub(crate) fn sequence_past(id: u64) -> RecordWrite {
    RecordWrite::set(SEQUENCE, SEQUENCE_KEY, encode(&(id + 1)))
}

pub(crate) fn set_relation(record: &RelationRecord) -> RecordWrite {
    RecordWrite::set(RELATION, id_key(record.id), encode(record))
}

pub(crate) fn delete_relation(id: u64) -> RecordWrite {
    RecordWrite::delete(RELATION, id_key(id))
}

/// Every unit record of every relation, as (relation id, unit, record).
pub(crate) async fn units(store: &Store) -> Result<Vec<(u64, String, RelationUnit)>, String> {
    let records = store
        .records(UNIT)
        .await
        .map_err(|error| error.to_string())?;
    records
        .iter()
        .map(|(key, bytes)| {
            let what = format!("relation unit record {key}");
            let (id, unit) = key
                .split_once('/')
                .and_then(|(id, unit)| Some((id.parse().ok()?, unit)))
                .ok_or_else(|| format!("{what} has a malformed key"))?;
            Ok((id, unit.to_owned(), decode(&what, bytes)?))
        })
        .collect()
}

/// One unit's record in relation `id`.
pub(crate) async fn unit(
    store: &Store,
    id: u64,
    unit: &str,
) -> Result<Option<RelationUnit>, String> {
    let what = format!("the settings of {unit} in relation {id}");
    match store
        .record(UNIT, &unit_key(id, unit))
        .await
        .map_err(|error| error.to_string())?
    {
        Some(bytes) => decode(&what, &bytes).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn set_unit(id: u64, unit: &str, record: &RelationUnit) -> RecordWrite {
    RecordWrite::set(UNIT, unit_key(id, unit), encode(record))
}

pub(crate) fn delete_unit(id: u64, unit: &str) -> RecordWrite {
    RecordWrite::delete(UNIT, unit_key(id, unit))
}

/// What `runtime`'s hooks saw of relation `id`, if they ever took part.
pub(crate) async fn state(
    store: &Store,
    runtime: &str,
    id: u64,
) -> Result<Option<RelationState>, String> {
    let what = format!("the relation state of {runtime} in relation {id}");
    match store
        .record(STATE, &state_key(runtime, id))
        .await
        .map_err(|error| error.to_string())?
    {
        Some(bytes) => decode(&what, &bytes).map(Some),
        None => Ok(None),
    }
}

/// The ids of the relations whose state `runtime`'s hooks keep.
pub(crate) async fn state_ids(store: &Store, runtime: &str) -> Result<Vec<u64>, String> {
    let prefix = format!("{runtime}/");
    let records = store
        .records(STATE)
        .await
        .map_err(|error| error.to_string())?;
    Ok(records
        .iter()
        .filter_map(|(key, _)| key.strip_prefix(&prefix)?.parse().ok())
        .collect())
}

/// Writes `runtime`'s relation state; a broken one is deleted (a broken
/// relation runs no more hooks, so there is nothing left to remember).
pub(crate) fn set_state(runtime: &str, state: &RelationState) -> RecordWrite {
    let key = state_key(runtime, state.relation_id);
    match state.is_broken() {
        true => RecordWrite::delete(STATE, key),
        false => RecordWrite::set(STATE, key, encode(state)),
    }
}

pub(crate) fn delete_state(runtime: &str, id: u64) -> RecordWrite {
    RecordWrite::delete(STATE, state_key(runtime, id))
}

#[cfg(test)]
mod tests {
    use steward_hooks::{HookInfo, HookKind};

    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store.redb")).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn records_round_trip_through_the_store() {
        let (_dir, store) = store().await;
        assert_eq!(next_id(&store).await.unwrap(), 0);
        let relation = RelationRecord {
            id: 7,
            endpoints: [Endpoint::new("web", "db"), Endpoint::new("kv", "store")],
            life: RelationLife::Alive,
        };
        let unit_record = RelationUnit {
            runtime: "kv".into(),
            in_scope: true,
            version: 3,
            settings: BTreeMap::from([("host".into(), "10.0.0.1".into())]),
        };
        let mut seen = RelationState::new(7);
        seen.commit(&HookInfo::relation(
            HookKind::RelationJoined,
            7,
            Some("kv/a1".into()),
            Some(3),
        ));
        store
            .commit_records(vec![
                sequence_past(7),
                set_relation(&relation),
                set_unit(7, "kv/a1", &unit_record),
                set_state("web", &seen),
            ])
            .await
            .unwrap();
        assert_eq!(next_id(&store).await.unwrap(), 8);
        assert_eq!(relations(&store).await.unwrap(), vec![relation]);
        assert_eq!(
            units(&store).await.unwrap(),
            vec![(7, "kv/a1".to_owned(), unit_record.clone())]
        );
        assert_eq!(unit(&store, 7, "kv/a1").await.unwrap(), Some(unit_record));
        assert_eq!(unit(&store, 7, "web/a1").await.unwrap(), None);
        assert_eq!(state(&store, "web", 7).await.unwrap(), Some(seen));
        assert_eq!(state_ids(&store, "web").await.unwrap(), vec![7]);
        assert!(state_ids(&store, "we").await.unwrap().is_empty());

        // A broken state is not kept.
        let mut broken = RelationState::new(7);
        broken.commit(&HookInfo::relation(HookKind::RelationBroken, 7, None, None));
        store
            .commit_records(vec![set_state("web", &broken), delete_unit(7, "kv/a1")])
            .await
            .unwrap();
        assert_eq!(state(&store, "web", 7).await.unwrap(), None);
        assert!(units(&store).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unreadable_record_is_an_error_that_names_it() {
        let (_dir, store) = store().await;
        store
            .commit_records(vec![RecordWrite::set(
                STATE,
                state_key("web", 2),
                b"{".to_vec(),
            )])
            .await
            .unwrap();
        let error = state(&store, "web", 2).await.unwrap_err();
        assert!(
            error.starts_with("the relation state of web in relation 2 is unreadable"),
            "{error}"
        );
    }

    /// Juju's state-dir write table (`TestWrite`, relation 123, members
    /// foo/1 and foo/2 at version 0), through the store: each hook is
    /// validated against the state read back, committed, and written twice
    /// (writing is idempotent); the state read back afresh is the expected
    /// one, and a broken relation's state is gone.
    #[tokio::test]
    async fn juju_state_dir_writes_through_the_store() {
        use HookKind::{RelationBroken, RelationChanged, RelationDeparted, RelationJoined};
        let hook = |kind, unit: Option<&str>, version| {
            HookInfo::relation(kind, 123, unit.map(str::to_owned), Some(version))
        };
        let members = |list: &[(&str, u64)]| -> Option<BTreeMap<String, u64>> {
            Some(list.iter().map(|(u, v)| ((*u).to_owned(), *v)).collect())
        };
        type Case = (
            Vec<HookInfo>,
            Option<(Option<BTreeMap<String, u64>>, Option<&'static str>)>,
        );
        let cases: Vec<Case> = vec![
            (
                vec![hook(RelationChanged, Some("foo/1"), 1)],
                Some((members(&[("foo/1", 1), ("foo/2", 0)]), None)),
            ),
            (
                vec![hook(RelationJoined, Some("foo/3"), 0)],
                Some((
                    members(&[("foo/1", 0), ("foo/2", 0), ("foo/3", 0)]),
                    Some("foo/3"),
                )),
            ),
            (
                vec![
                    hook(RelationJoined, Some("foo/3"), 0),
                    hook(RelationChanged, Some("foo/3"), 0),
                ],
                Some((members(&[("foo/1", 0), ("foo/2", 0), ("foo/3", 0)]), None)),
            ),
            (
                vec![hook(RelationDeparted, Some("foo/1"), 0)],
                Some((members(&[("foo/2", 0)]), None)),
            ),
            (
                vec![
                    hook(RelationDeparted, Some("foo/1"), 0),
                    hook(RelationJoined, Some("foo/1"), 0),
                ],
                Some((members(&[("foo/1", 0), ("foo/2", 0)]), Some("foo/1"))),
            ),
            (
                vec![
                    hook(RelationDeparted, Some("foo/1"), 0),
                    hook(RelationJoined, Some("foo/1"), 0),
                    hook(RelationChanged, Some("foo/1"), 0),
                ],
                Some((members(&[("foo/1", 0), ("foo/2", 0)]), None)),
            ),
            (
                vec![
                    hook(RelationDeparted, Some("foo/1"), 0),
                    hook(RelationDeparted, Some("foo/2"), 0),
                    HookInfo::relation(RelationBroken, 123, None, None),
                ],
                None,
            ),
        ];
        for (number, (hooks, expected)) in cases.into_iter().enumerate() {
            let (_dir, store) = store().await;
            let start = RelationState {
                relation_id: 123,
                members: members(&[("foo/1", 0), ("foo/2", 0)]),
                changed_pending: None,
            };
            store
                .commit_records(vec![set_state("web", &start)])
                .await
                .unwrap();
            for hook in &hooks {
                let mut seen = state(&store, "web", 123).await.unwrap().unwrap();
                seen.validate(hook)
                    .unwrap_or_else(|e| panic!("case {}: {e}", number + 1));
                seen.commit(hook);
                for _ in 0..2 {
                    store
                        .commit_records(vec![set_state("web", &seen)])
                        .await
                        .unwrap();
                }
            }
            let read = state(&store, "web", 123).await.unwrap();
            match expected {
                Some((members, pending)) => {
                    let read = read.unwrap_or_else(|| panic!("case {}: state gone", number + 1));
                    assert_eq!(read.members, members, "case {}", number + 1);
                    assert_eq!(
                        read.changed_pending.as_deref(),
                        pending,
                        "case {}",
                        number + 1
                    );
                }
                None => assert_eq!(read, None, "case {}: a broken state is gone", number + 1),
            }
        }
    }
}
