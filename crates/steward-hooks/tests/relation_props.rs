//! The alive hook queue against random histories of a relation: units
//! joining, changing settings, repeating a version (a re-list), departing
//! and rejoining, in batches, interleaved with random numbers of hooks run
//! and with agent restarts (a new queue from the committed state and a
//! fresh first change). Every hook delivered must pass
//! `RelationState::validate` and juju's guarantees; once the source is
//! quiet and every hook ran, the committed state is the source's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use steward_hooks::relation::{AliveQueue, DyingQueue, RelationState, RelationUnitsChange};
use steward_hooks::{HookInfo, HookKind};

const ID: u64 = 7;
const UNITS: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    /// Join the unit if it is not a member, else change its settings.
    Write(usize),
    /// Send the unit's current version again.
    Resend(usize),
    /// The unit leaves (if it is a member).
    Depart(usize),
}

#[derive(Debug, Clone)]
enum Step {
    /// One change made of these operations (one per unit at most).
    Event(Vec<Op>),
    /// Run up to this many hooks.
    Run(usize),
    /// The agent restarts: a new queue from the committed state.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..UNITS).prop_map(Op::Write),
        1 => (0..UNITS).prop_map(Op::Resend),
        2 => (0..UNITS).prop_map(Op::Depart),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop::collection::vec(op(), 1..4).prop_map(Step::Event),
        4 => (0..6usize).prop_map(Step::Run),
        1 => Just(Step::Restart),
    ]
}

fn unit(index: usize) -> String {
    format!("u/{index}")
}

/// The watched side: the relation's current members and their versions,
/// which grow like a store's revision.
#[derive(Debug, Default)]
struct Source {
    members: BTreeMap<String, u64>,
    revision: u64,
}

impl Source {
    fn apply(&mut self, ops: &[Op]) -> RelationUnitsChange {
        let mut change = RelationUnitsChange::default();
        let mut touched = BTreeSet::new();
        for op in ops {
            let (Op::Write(i) | Op::Resend(i) | Op::Depart(i)) = op;
            let name = unit(*i);
            if !touched.insert(name.clone()) {
                continue;
            }
            match op {
                Op::Write(_) => {
                    self.revision += 1;
                    self.members.insert(name.clone(), self.revision);
                    change.changed.insert(name, self.revision);
                }
                Op::Resend(_) => {
                    if let Some(&version) = self.members.get(&name) {
                        change.changed.insert(name, version);
                    }
                }
                Op::Depart(_) => {
                    if self.members.remove(&name).is_some() {
                        change.departed.push(name);
                    }
                }
            }
        }
        change
    }

    /// What a fresh watch sends first.
    fn snapshot(&self) -> RelationUnitsChange {
        RelationUnitsChange::changed(self.members.clone())
    }
}

/// The agent's side: the committed state, and what the hooks saw.
struct Hooks {
    state: RelationState,
    /// The unit whose changed must be the next hook.
    must_change: Option<String>,
    /// The last version a hook carried, per unit, across departures.
    versions: BTreeMap<String, u64>,
}

impl Hooks {
    fn run(&mut self, hook: HookInfo) -> Result<(), TestCaseError> {
        prop_assert_eq!(hook.relation_id, Some(ID));
        if let Err(error) = self.state.validate(&hook) {
            return Err(TestCaseError::fail(format!(
                "{error} (state {:?})",
                self.state
            )));
        }
        let name = hook.remote_unit.clone().unwrap();
        let version = hook.change_version.unwrap();
        let members = self.state.members.as_ref().unwrap();
        if let Some(expected) = self.must_change.take() {
            prop_assert_eq!(
                (hook.kind, &name),
                (HookKind::RelationChanged, &expected),
                "joined must be followed by changed"
            );
        }
        match hook.kind {
            HookKind::RelationJoined => {
                prop_assert!(!members.contains_key(&name), "joined for a member");
                self.must_change = Some(name.clone());
            }
            HookKind::RelationChanged | HookKind::RelationDeparted => {
                prop_assert!(
                    members.contains_key(&name),
                    "{:?} for a non-member",
                    hook.kind
                );
            }
            kind => prop_assert!(false, "unexpected {kind:?}"),
        }
        if let Some(&last) = self.versions.get(&name) {
            prop_assert!(version >= last, "{name}: version {version} after {last}");
        }
        self.versions.insert(name, version);
        // The hook succeeded; the agent commits it (twice, as after a crash
        // between the hook's completion and the commit).
        self.state.commit(&hook);
        self.state.commit(&hook);
        Ok(())
    }
}

fn check(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut source = Source::default();
    let mut hooks = Hooks {
        state: RelationState::new(ID),
        must_change: None,
        versions: BTreeMap::new(),
    };
    let mut queue = AliveQueue::new(&hooks.state).unwrap();
    queue.update(&source.snapshot()).unwrap();
    for step in steps {
        match step {
            Step::Event(ops) => queue.update(&source.apply(&ops)).unwrap(),
            Step::Run(n) => {
                for _ in 0..n {
                    let Some(hook) = queue.pop() else { break };
                    hooks.run(hook)?;
                }
            }
            Step::Restart => {
                queue = AliveQueue::new(&hooks.state).unwrap();
                prop_assert!(queue.is_empty(), "hooks before the first change");
                queue.update(&source.snapshot()).unwrap();
            }
        }
    }
    // The source is quiet: run everything that is due.
    while let Some(hook) = queue.pop() {
        hooks.run(hook)?;
    }
    prop_assert_eq!(hooks.must_change, None);
    prop_assert_eq!(&hooks.state.changed_pending, &None);
    prop_assert_eq!(hooks.state.members.as_ref(), Some(&source.members));
    // And the relation can always be wound down from there.
    let mut dying = DyingQueue::new(&hooks.state);
    while let Some(hook) = dying.pop() {
        hooks.state.validate(&hook).unwrap();
        hooks.state.commit(&hook);
    }
    prop_assert!(hooks.state.is_broken());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn hooks_keep_the_guarantees_and_reach_the_source_state(
        steps in prop::collection::vec(step(), 0..40)
    ) {
        check(steps)?;
    }
}
