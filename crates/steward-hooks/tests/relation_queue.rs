//! The relation hook queues: juju's `hookqueue_test.go` tables exactly —
//! the 11 alive tests, the 6 reconcile tests (12–17) and the 3 dying tests
//! (D1–D3), relation 21345 everywhere; juju's "no further hook within
//! ShortWait" is `next()` being `None` — and the rules where steward
//! differs from juju 2014 (a refused first change, and two juju bugs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::collections::BTreeMap;

use steward_hooks::relation::{AliveQueue, DyingQueue, RelationState, RelationUnitsChange};
use steward_hooks::{Error, HookInfo, HookKind};

use HookKind::{RelationBroken, RelationChanged, RelationDeparted, RelationJoined};

const ID: u64 = 21345;

enum Step {
    Send(&'static [(&'static str, u64)], &'static [&'static str]),
    Advance(usize),
    Expect(HookKind, &'static str, u64),
}

use Step::{Advance, Expect, Send};

fn changed(units: &'static [(&'static str, u64)]) -> Step {
    Send(units, &[])
}

fn departed(units: &'static [&'static str]) -> Step {
    Send(&[], units)
}

fn expected(kind: HookKind, unit: &str, version: u64) -> HookInfo {
    HookInfo::relation(kind, ID, Some(unit.into()), Some(version))
}

fn state(members: &[(&str, u64)], pending: Option<&str>) -> RelationState {
    RelationState {
        relation_id: ID,
        members: Some(members.iter().map(|(u, v)| (u.to_string(), *v)).collect()),
        changed_pending: pending.map(String::from),
    }
}

/// Runs `steps` against a queue started from `initial`, then checks that
/// no further hook is due.
fn run(name: &str, initial: RelationState, steps: &[Step]) {
    let mut queue = AliveQueue::new(&initial).unwrap();
    assert_eq!(queue.relation_id(), ID);
    for (i, step) in steps.iter().enumerate() {
        match step {
            Send(versions, gone) => {
                let change = RelationUnitsChange {
                    changed: versions.iter().map(|(u, v)| (u.to_string(), *v)).collect(),
                    departed: gone.iter().map(|u| u.to_string()).collect(),
                };
                queue.update(&change).unwrap();
            }
            Advance(n) => {
                for _ in 0..*n {
                    assert!(
                        queue.pop().is_some(),
                        "{name}, step {i}: nothing to advance"
                    );
                }
            }
            Expect(kind, unit, version) => {
                let hook = expected(*kind, unit, *version);
                assert_eq!(queue.next(), Some(hook.clone()), "{name}, step {i}");
                assert_eq!(queue.pop(), Some(hook), "{name}, step {i}");
            }
        }
    }
    assert_eq!(queue.next(), None, "{name}: a further hook");
    assert!(queue.is_empty(), "{name}");
    assert_eq!(queue.pop(), None, "{name}");
}

fn full(name: &str, steps: &[Step]) {
    run(name, RelationState::new(ID), steps);
}

#[test]
fn alive_1_empty_initial_change_causes_no_hooks() {
    full("1", &[changed(&[])]);
}

#[test]
fn alive_2_joined_and_changed_are_both_run_when_unit_is_first_detected() {
    full(
        "2",
        &[
            changed(&[("u/0", 0)]),
            Expect(RelationJoined, "u/0", 0),
            Expect(RelationChanged, "u/0", 0),
        ],
    );
}

#[test]
fn alive_3_automatic_changed_is_run_with_latest_settings() {
    full(
        "3",
        &[
            changed(&[("u/0", 0)]),
            Expect(RelationJoined, "u/0", 0),
            changed(&[("u/0", 7)]),
            Expect(RelationChanged, "u/0", 7),
        ],
    );
}

#[test]
fn alive_4_joined_is_also_run_with_latest_settings() {
    full(
        "4",
        &[
            changed(&[("u/0", 0)]),
            changed(&[("u/0", 7)]),
            Expect(RelationJoined, "u/0", 7),
            Expect(RelationChanged, "u/0", 7),
        ],
    );
}

#[test]
fn alive_5_nothing_happens_if_a_unit_departs_before_its_joined_is_run() {
    full(
        "5",
        &[
            changed(&[("u/0", 0)]),
            changed(&[("u/0", 7)]),
            departed(&["u/0"]),
        ],
    );
}

#[test]
fn alive_6_a_changed_is_run_after_a_joined_even_if_a_departed_is_known() {
    full(
        "6",
        &[
            changed(&[("u/0", 0)]),
            Expect(RelationJoined, "u/0", 0),
            departed(&["u/0"]),
            Expect(RelationChanged, "u/0", 0),
            Expect(RelationDeparted, "u/0", 0),
        ],
    );
}

#[test]
fn alive_7_a_departed_replaces_a_changed() {
    full(
        "7",
        &[
            changed(&[("u/0", 0)]),
            Advance(2),
            changed(&[("u/0", 7)]),
            departed(&["u/0"]),
            Expect(RelationDeparted, "u/0", 7),
        ],
    );
}

#[test]
fn alive_8_changed_events_are_ignored_if_the_version_has_not_changed() {
    full(
        "8",
        &[changed(&[("u/0", 0)]), Advance(2), changed(&[("u/0", 0)])],
    );
}

#[test]
fn alive_9_redundant_changed_events_are_elided() {
    full(
        "9",
        &[
            changed(&[("u/0", 0)]),
            Advance(2),
            changed(&[("u/0", 3)]),
            changed(&[("u/0", 7)]),
            changed(&[("u/0", 79)]),
            Expect(RelationChanged, "u/0", 79),
        ],
    );
}

#[test]
fn alive_10_latest_hooks_are_run_in_the_original_unit_order() {
    full(
        "10",
        &[
            changed(&[("u/0", 0), ("u/1", 1)]),
            Advance(4),
            changed(&[("u/0", 3)]),
            changed(&[("u/1", 7)]),
            departed(&["u/0"]),
            Expect(RelationDeparted, "u/0", 3),
            Expect(RelationChanged, "u/1", 7),
        ],
    );
}

#[test]
fn alive_11_test_everything_we_can_think_of_at_the_same_time() {
    full(
        "11",
        &[
            changed(&[("u/0", 0), ("u/1", 0), ("u/2", 0), ("u/3", 0), ("u/4", 0)]),
            Advance(6),
            // u/0, u/1 and u/2 joined and changed; u/3 and u/4 queued.
            changed(&[("u/0", 1)]),
            Send(
                &[("u/1", 1), ("u/2", 1), ("u/3", 1), ("u/5", 0)],
                &["u/0", "u/4"],
            ),
            changed(&[("u/3", 2)]),
            Expect(RelationJoined, "u/3", 2),
            Expect(RelationChanged, "u/3", 2),
            Expect(RelationDeparted, "u/0", 1),
            Expect(RelationChanged, "u/1", 1),
            Expect(RelationChanged, "u/2", 1),
            Expect(RelationJoined, "u/5", 0),
            Expect(RelationChanged, "u/5", 0),
        ],
    );
}

#[test]
fn reconcile_12_matching_settings_versions_cause_no_changes() {
    run("12", state(&[("u/0", 0)], None), &[changed(&[("u/0", 0)])]);
}

#[test]
fn reconcile_13_new_settings_versions_cause_changed() {
    run(
        "13",
        state(&[("u/0", 0)], None),
        &[changed(&[("u/0", 1)]), Expect(RelationChanged, "u/0", 1)],
    );
}

#[test]
fn reconcile_14_a_just_joined_unit_gets_its_changed_hook_run_first() {
    run(
        "14",
        state(&[("u/0", 0)], Some("u/0")),
        &[changed(&[("u/0", 0)]), Expect(RelationChanged, "u/0", 0)],
    );
}

#[test]
fn reconcile_15_missing_units_are_queued_for_depart_as_early_as_possible() {
    run(
        "15",
        state(&[("u/0", 0)], None),
        &[
            changed(&[("u/1", 0)]),
            Expect(RelationDeparted, "u/0", 0),
            Expect(RelationJoined, "u/1", 0),
            Expect(RelationChanged, "u/1", 0),
        ],
    );
}

#[test]
fn reconcile_16_a_pending_changed_happens_before_an_injected_departed() {
    run(
        "16",
        state(&[("u/0", 0)], Some("u/0")),
        &[
            changed(&[]),
            Expect(RelationChanged, "u/0", 0),
            Expect(RelationDeparted, "u/0", 0),
        ],
    );
}

#[test]
fn reconcile_17_missing_units_dont_slip_in_front_of_required_changed_hooks() {
    run(
        "17",
        state(&[("u/0", 0)], Some("u/0")),
        &[
            changed(&[("u/1", 0)]),
            Expect(RelationChanged, "u/0", 0),
            Expect(RelationDeparted, "u/0", 0),
            Expect(RelationJoined, "u/1", 0),
            Expect(RelationChanged, "u/1", 0),
        ],
    );
}

fn drain(mut queue: DyingQueue) -> Vec<HookInfo> {
    let mut hooks = Vec::new();
    while let Some(next) = queue.next() {
        assert_eq!(queue.pop(), Some(next.clone()));
        hooks.push(next);
    }
    assert!(queue.is_empty());
    assert_eq!(queue.pop(), None);
    hooks
}

fn broken() -> HookInfo {
    HookInfo::relation(RelationBroken, ID, None, None)
}

/// Juju's D1 starts from `State{21345, nil, ""}`, which Go reads as a
/// relation without members: here that is `members: Some({})` (`None`
/// means broken, tested below).
#[test]
fn dying_d1_an_empty_relation_just_breaks() {
    assert_eq!(drain(DyingQueue::new(&RelationState::new(ID))), [broken()]);
}

#[test]
fn dying_d2_every_member_departs_in_order_then_the_relation_breaks() {
    assert_eq!(
        drain(DyingQueue::new(&state(&[("u/4", 33), ("u/1", 7)], None))),
        [
            expected(RelationDeparted, "u/1", 7),
            expected(RelationDeparted, "u/4", 33),
            broken(),
        ]
    );
}

#[test]
fn dying_d3_a_pending_changed_runs_first() {
    assert_eq!(
        drain(DyingQueue::new(&state(&[("u/0", 3)], Some("u/0")))),
        [
            expected(RelationChanged, "u/0", 3),
            expected(RelationDeparted, "u/0", 3),
            broken(),
        ]
    );
}

#[test]
fn dying_a_broken_relation_has_nothing_left_to_run() {
    let mut gone = RelationState::new(ID);
    gone.commit(&broken());
    assert!(drain(DyingQueue::new(&gone)).is_empty());
}

#[test]
fn dying_hooks_validate_and_commit_to_a_broken_state() {
    let mut state = state(&[("u/0", 3), ("u/1", 5)], Some("u/1"));
    for hook in drain(DyingQueue::new(&state.clone())) {
        state.validate(&hook).unwrap();
        state.commit(&hook);
    }
    assert!(state.is_broken());
}

#[test]
fn the_queue_is_empty_until_the_first_change() {
    // Even with a pending changed: the first change may depart the unit,
    // and the changed must still run first, so nothing runs before it.
    let mut queue = AliveQueue::new(&state(&[("u/0", 0)], Some("u/0"))).unwrap();
    assert_eq!(queue.next(), None);
    assert_eq!(queue.pop(), None);
    queue.update(&RelationUnitsChange::default()).unwrap();
    assert_eq!(queue.next(), Some(expected(RelationChanged, "u/0", 0)));
}

#[test]
fn a_first_change_that_departs_units_is_refused() {
    let mut queue = AliveQueue::new(&state(&[("u/0", 0)], None)).unwrap();
    let error = queue
        .update(&RelationUnitsChange::departed(["u/0"]))
        .unwrap_err();
    assert!(
        matches!(&error, Error::FirstChangeDeparts { relation_id: ID, departed } if departed == &["u/0"]),
        "{error:?}"
    );
    assert!(error.to_string().contains("fresh watch"), "{error}");
    // Nothing changed: a proper first change still works.
    assert!(queue.is_empty());
    queue
        .update(&RelationUnitsChange::changed([("u/0", 1)]))
        .unwrap();
    assert_eq!(queue.pop(), Some(expected(RelationChanged, "u/0", 1)));
    // After the first change, departures are ordinary.
    queue
        .update(&RelationUnitsChange::departed(["u/0", "u/9"]))
        .unwrap();
    assert_eq!(queue.pop(), Some(expected(RelationDeparted, "u/0", 1)));
    assert!(queue.is_empty(), "a unit never seen departs silently");
}

#[test]
fn a_broken_state_has_no_alive_queue() {
    let mut gone = RelationState::new(ID);
    gone.commit(&broken());
    assert!(matches!(
        AliveQueue::new(&gone),
        Err(Error::RelationBroken { relation_id: ID })
    ));
}

/// Juju compared a new version with the latest known one, so a source
/// that sent the same version twice (a re-list after a compacted watch)
/// unqueued the changed the first one queued: the hooks never saw it.
#[test]
fn a_repeated_version_does_not_drop_a_queued_changed() {
    full(
        "repeat",
        &[
            changed(&[("u/0", 0)]),
            Advance(2),
            changed(&[("u/0", 4)]),
            changed(&[("u/0", 4)]),
            Expect(RelationChanged, "u/0", 4),
        ],
    );
    // Back at the version the hooks saw: the queued changed is moot.
    full(
        "back",
        &[
            changed(&[("u/0", 0)]),
            Advance(2),
            changed(&[("u/0", 4)]),
            changed(&[("u/0", 0)]),
        ],
    );
}

/// Juju kept a unit whose joined was cancelled by a departed, so when it
/// came back at another version it got a changed without a joined.
#[test]
fn a_unit_that_departed_before_joining_joins_when_it_comes_back() {
    full(
        "rejoin",
        &[
            changed(&[("u/0", 0)]),
            departed(&["u/0"]),
            changed(&[("u/0", 5)]),
            Expect(RelationJoined, "u/0", 5),
            Expect(RelationChanged, "u/0", 5),
        ],
    );
}

#[test]
fn a_member_that_departs_and_returns_before_its_departed_ran_stays() {
    full(
        "return",
        &[
            changed(&[("u/0", 0)]),
            Advance(2),
            departed(&["u/0"]),
            changed(&[("u/0", 0)]),
        ],
    );
    full(
        "return-changed",
        &[
            changed(&[("u/0", 0)]),
            Advance(2),
            departed(&["u/0"]),
            changed(&[("u/0", 9)]),
            Expect(RelationChanged, "u/0", 9),
        ],
    );
}

#[test]
fn changes_round_trip_through_json() {
    let change = RelationUnitsChange {
        changed: BTreeMap::from([("u/0".to_string(), 3)]),
        departed: vec!["u/1".into()],
    };
    let json = serde_json::to_value(&change).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"changed": {"u/0": 3}, "departed": ["u/1"]})
    );
    assert_eq!(
        serde_json::from_value::<RelationUnitsChange>(json).unwrap(),
        change
    );
    assert_eq!(
        serde_json::from_str::<RelationUnitsChange>("{}").unwrap(),
        RelationUnitsChange::default()
    );
}
