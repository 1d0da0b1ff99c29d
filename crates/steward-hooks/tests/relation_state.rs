//! `RelationState`: juju's `TestWrite` table (each hook validated, then
//! committed twice), the validation reasons, and the persisted form.
//!
//! Juju's state-dir tests (YAML files per member, `.preparing` files,
//! `ReadStateDir`/`ReadAllStateDirs`, removing the directory) have no
//! counterpart: the state is one value the agent persists as one store
//! record, so its persisted form is tested as serde round trips instead,
//! and where juju deleted the directory the state here is broken.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::collections::BTreeMap;

use steward_hooks::relation::{InappropriateReason, RelationState};
use steward_hooks::{Error, HookInfo, HookKind};

use HookKind::{RelationBroken, RelationChanged, RelationDeparted, RelationJoined};

fn hook(kind: HookKind, relation_id: u64, unit: Option<&str>, version: u64) -> HookInfo {
    HookInfo::relation(
        kind,
        relation_id,
        unit.map(String::from),
        unit.map(|_| version),
    )
}

fn unit_hook(kind: HookKind, unit: &str) -> HookInfo {
    hook(kind, 123, Some(unit), 0)
}

fn broken() -> HookInfo {
    hook(RelationBroken, 123, None, 0)
}

fn members(list: &[(&str, u64)]) -> BTreeMap<String, u64> {
    list.iter().map(|(u, v)| (u.to_string(), *v)).collect()
}

/// Juju's starting state: foo/1 and foo/2 joined at version 0.
fn start() -> RelationState {
    RelationState {
        relation_id: 123,
        members: Some(members(&[("foo/1", 0), ("foo/2", 0)])),
        changed_pending: None,
    }
}

struct WriteCase {
    hooks: Vec<HookInfo>,
    /// The members after the hooks; `None` for a broken relation (juju: the
    /// directory is deleted).
    members: Option<&'static [(&'static str, u64)]>,
    pending: Option<&'static str>,
    /// The error the last hook's validation gives (it is then not
    /// committed).
    err: Option<&'static str>,
}

const DEFAULT: Option<&[(&str, u64)]> = Some(&[("foo/1", 0), ("foo/2", 0)]);

fn write_cases() -> Vec<WriteCase> {
    vec![
        // 1. Valid changes.
        WriteCase {
            hooks: vec![hook(RelationChanged, 123, Some("foo/1"), 1)],
            members: Some(&[("foo/1", 1), ("foo/2", 0)]),
            pending: None,
            err: None,
        },
        // 2.
        WriteCase {
            hooks: vec![unit_hook(RelationJoined, "foo/3")],
            members: Some(&[("foo/1", 0), ("foo/2", 0), ("foo/3", 0)]),
            pending: Some("foo/3"),
            err: None,
        },
        // 3.
        WriteCase {
            hooks: vec![
                unit_hook(RelationJoined, "foo/3"),
                unit_hook(RelationChanged, "foo/3"),
            ],
            members: Some(&[("foo/1", 0), ("foo/2", 0), ("foo/3", 0)]),
            pending: None,
            err: None,
        },
        // 4.
        WriteCase {
            hooks: vec![unit_hook(RelationDeparted, "foo/1")],
            members: Some(&[("foo/2", 0)]),
            pending: None,
            err: None,
        },
        // 5.
        WriteCase {
            hooks: vec![
                unit_hook(RelationDeparted, "foo/1"),
                unit_hook(RelationJoined, "foo/1"),
            ],
            members: DEFAULT,
            pending: Some("foo/1"),
            err: None,
        },
        // 6.
        WriteCase {
            hooks: vec![
                unit_hook(RelationDeparted, "foo/1"),
                unit_hook(RelationJoined, "foo/1"),
                unit_hook(RelationChanged, "foo/1"),
            ],
            members: DEFAULT,
            pending: None,
            err: None,
        },
        // 7. Juju: the directory is deleted.
        WriteCase {
            hooks: vec![
                unit_hook(RelationDeparted, "foo/1"),
                unit_hook(RelationDeparted, "foo/2"),
                broken(),
            ],
            members: None,
            pending: None,
            err: None,
        },
        // 8. Error conditions.
        WriteCase {
            hooks: vec![hook(RelationJoined, 456, Some("foo/1"), 0)],
            members: DEFAULT,
            pending: None,
            err: Some("expected relation 123, got relation 456"),
        },
        // 9.
        WriteCase {
            hooks: vec![
                unit_hook(RelationJoined, "foo/3"),
                unit_hook(RelationJoined, "foo/4"),
            ],
            members: Some(&[("foo/1", 0), ("foo/2", 0), ("foo/3", 0)]),
            pending: Some("foo/3"),
            err: Some(r#"expected "relation-changed" for "foo/3""#),
        },
        // 10.
        WriteCase {
            hooks: vec![
                unit_hook(RelationJoined, "foo/3"),
                unit_hook(RelationChanged, "foo/1"),
            ],
            members: Some(&[("foo/1", 0), ("foo/2", 0), ("foo/3", 0)]),
            pending: Some("foo/3"),
            err: Some(r#"expected "relation-changed" for "foo/3""#),
        },
        // 11.
        WriteCase {
            hooks: vec![unit_hook(RelationJoined, "foo/1")],
            members: DEFAULT,
            pending: None,
            err: Some("unit already joined"),
        },
        // 12.
        WriteCase {
            hooks: vec![unit_hook(RelationChanged, "foo/3")],
            members: DEFAULT,
            pending: None,
            err: Some("unit has not joined"),
        },
        // 13.
        WriteCase {
            hooks: vec![unit_hook(RelationDeparted, "foo/3")],
            members: DEFAULT,
            pending: None,
            err: Some("unit has not joined"),
        },
        // 14.
        WriteCase {
            hooks: vec![broken()],
            members: DEFAULT,
            pending: None,
            err: Some(r#"cannot run "relation-broken" while units still present"#),
        },
        // 15. Juju: the directory stays deleted.
        WriteCase {
            hooks: vec![
                unit_hook(RelationDeparted, "foo/1"),
                unit_hook(RelationDeparted, "foo/2"),
                broken(),
                unit_hook(RelationJoined, "foo/1"),
            ],
            members: None,
            pending: None,
            err: Some("relation is broken and cannot be changed further"),
        },
    ]
}

#[test]
fn juju_write_table() {
    let cases = write_cases();
    assert_eq!(cases.len(), 15);
    for (i, case) in cases.into_iter().enumerate() {
        let n = i + 1;
        let mut state = start();
        let (last, rest) = case.hooks.split_last().unwrap();
        for hook in rest {
            state.validate(hook).unwrap();
            // Juju writes every hook twice: commits are idempotent.
            state.commit(hook);
            state.commit(hook);
        }
        match case.err {
            None => {
                state.validate(last).unwrap();
                state.commit(last);
                state.commit(last);
            }
            Some(reason) => {
                let error = state.validate(last).unwrap_err();
                let unit = last.remote_unit.as_deref().unwrap_or("");
                assert_eq!(
                    error.to_string(),
                    format!(
                        "inappropriate {:?} for {unit:?}: {reason}",
                        last.kind.as_str()
                    ),
                    "case {n}"
                );
            }
        }
        let expected = RelationState {
            relation_id: 123,
            members: case.members.map(members),
            changed_pending: case.pending.map(String::from),
        };
        assert_eq!(state, expected, "case {n}");
        assert_eq!(state.is_broken(), case.members.is_none(), "case {n}");
        // What the agent persists reads back as the same state.
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(
            serde_json::from_str::<RelationState>(&json).unwrap(),
            state,
            "case {n}"
        );
    }
}

#[test]
fn validation_reasons_are_matchable() {
    let reason = |state: &RelationState, hook: &HookInfo| match state.validate(hook) {
        Err(Error::InappropriateHook { kind, unit, reason }) => {
            assert_eq!(kind, hook.kind);
            assert_eq!(unit, hook.remote_unit.clone().unwrap_or_default());
            reason
        }
        other => panic!("expected an inappropriate hook, got {other:?}"),
    };
    let state = start();
    assert_eq!(
        reason(&state, &HookInfo::unit(HookKind::Install)),
        InappropriateReason::NotARelationHook
    );
    let no_id = HookInfo {
        relation_id: None,
        ..unit_hook(RelationChanged, "foo/1")
    };
    assert_eq!(
        reason(&state, &no_id),
        InappropriateReason::WrongRelation {
            expected: 123,
            got: None
        }
    );
    assert_eq!(
        state.validate(&no_id).unwrap_err().to_string(),
        r#"inappropriate "relation-changed" for "foo/1": expected relation 123, got a hook with no relation id"#
    );
    assert_eq!(
        reason(&state, &hook(RelationChanged, 123, None, 0)),
        InappropriateReason::NoRemoteUnit
    );
    assert_eq!(
        reason(&state, &broken()),
        InappropriateReason::UnitsStillPresent
    );
    let mut pending = start();
    pending.commit(&unit_hook(RelationJoined, "foo/3"));
    assert_eq!(
        reason(&pending, &unit_hook(RelationDeparted, "foo/3")),
        InappropriateReason::ChangedPending {
            unit: "foo/3".into()
        }
    );
    assert!(
        pending
            .validate(&unit_hook(RelationChanged, "foo/3"))
            .is_ok()
    );
    // An empty relation may break; a broken one takes nothing more.
    let mut empty = RelationState::new(123);
    empty.validate(&broken()).unwrap();
    empty.commit(&broken());
    assert_eq!(reason(&empty, &broken()), InappropriateReason::Broken);
    assert_eq!(
        reason(&empty, &unit_hook(RelationJoined, "foo/1")),
        InappropriateReason::Broken
    );
}

#[test]
fn commit_ignores_hooks_it_cannot_apply() {
    let mut state = start();
    state.commit(&HookInfo::unit(HookKind::ConfigChanged));
    state.commit(&hook(RelationDeparted, 456, Some("foo/1"), 0));
    state.commit(&hook(RelationJoined, 123, None, 0));
    assert_eq!(state, start());
    // A departed of a unit that is not a member is a repeat: nothing to do.
    state.commit(&unit_hook(RelationDeparted, "foo/9"));
    assert_eq!(state, start());
    // A broken relation stays broken.
    let mut gone = RelationState::new(123);
    gone.commit(&broken());
    gone.commit(&unit_hook(RelationJoined, "foo/1"));
    assert!(gone.is_broken());
}

#[test]
fn a_departed_unit_takes_its_pending_changed_along() {
    // The agent never runs this (validation refuses it), but a commit that
    // leaves a pending changed for a non-member would wedge the relation.
    let mut state = start();
    state.commit(&unit_hook(RelationJoined, "foo/3"));
    state.commit(&unit_hook(RelationDeparted, "foo/3"));
    assert_eq!(state, start());
}

#[test]
fn the_persisted_form_has_kebab_case_keys_and_null_for_broken() {
    let mut state = start();
    state.commit(&hook(RelationJoined, 123, Some("foo/3"), 7));
    assert_eq!(
        serde_json::to_value(&state).unwrap(),
        serde_json::json!({
            "relation-id": 123,
            "members": {"foo/1": 0, "foo/2": 0, "foo/3": 7},
            "changed-pending": "foo/3",
        })
    );
    let mut gone = RelationState::new(9);
    gone.commit(&hook(RelationBroken, 9, None, 0));
    let json = serde_json::to_value(&gone).unwrap();
    assert_eq!(json, serde_json::json!({"relation-id": 9, "members": null}));
    assert_eq!(serde_json::from_value::<RelationState>(json).unwrap(), gone);
    // A record without members is refused rather than read as broken.
    assert!(serde_json::from_str::<RelationState>(r#"{"relation-id": 9}"#).is_err());
    assert_eq!(
        serde_json::from_str::<RelationState>(r#"{"relation-id": 9, "members": {}}"#).unwrap(),
        RelationState::new(9)
    );
}
