//! A unit's hook lifecycle, as data and rules: what its hooks have done
//! ([`UnitRecord`], which the agent persists as one record), which hook is
//! due next ([`UnitRecord::next_hook`]), and the steps of running one as an
//! *operation* (prepare → run → done → commit), so that a crash at any
//! point is recovered exactly (juju's uniter state file, with its rules).
//!
//! The order of a unit's hooks: `install` (once per data dir, before the
//! first start), `config-changed` (after install, at every agent start, and
//! after every settings edit), `start` (once, after the first start),
//! `upgrade` after every switch of the serving version, and `stop` when
//! the runtime leaves the config. What is due is recomputed from the record
//! and the facts of this agent run ([`Due`]), never kept as a queue: after
//! a crash nothing queued can be lost, and repeated changes fold into one
//! hook (two switches while a hook is failing are one `upgrade`).
//!
//! Crash rules: a *pending* operation (the agent died while the hook ran)
//! is a failed hook ([`UnitRecord::recover`]); a *done* one is committed
//! again, and committing is idempotent (the effects and the changes are
//! applied, and the operation cleared, in one write).
//!
//! Relation hooks run as operations of the same record (a unit runs one
//! hook at a time, whatever it is about); which one is due comes from the
//! [relation queues](crate::relation), and what a relation hook changes in
//! its relation's state and settings is committed by the agent in the same
//! transaction as the record ([`UnitRecord::commit`] applies only the unit
//! state).
//!
//! This module owns the rules; it must never persist or run anything (the
//! agent writes the record, the [runner](crate::runner) runs the hook).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Changes, HookInfo, HookKind};

/// What a unit's hooks have done, as persisted between agent runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRecord {
    /// Whether `install` succeeded (or was resolved).
    #[serde(default)]
    pub installed: bool,
    /// Whether `start` succeeded (or was resolved).
    #[serde(default)]
    pub started: bool,
    /// The version the last `start` or `upgrade` ran for: an `upgrade` is
    /// due when another version serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The hook run in progress, done but not committed, or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// The unit's persistent state (`state-set`), as committed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state: BTreeMap<String, String>,
}

/// One hook run, as persisted around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The hook.
    pub hook: PlannedHook,
    /// How far it got.
    pub step: Step,
    /// What it changed (with [`Step::Done`]: to be committed).
    #[serde(default)]
    pub changes: Changes,
}

/// How far an operation got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "step")]
pub enum Step {
    /// Written before the hook's process starts.
    Pending,
    /// Written after the hook succeeded, with its changes, before the
    /// commit.
    Done,
    /// The hook failed (or the agent died while it ran); later hooks wait
    /// until it is retried successfully or resolved.
    Failed {
        /// Why, for the operator.
        reason: String,
    },
}

/// A hook chosen to run, with what its environment tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedHook {
    /// Which hook.
    pub info: HookInfo,
    /// The version it runs for (`STEWARD_VERSION`): for `install` the one
    /// about to start, else the serving one.
    pub version: String,
    /// For `upgrade`, the version before the switch
    /// (`STEWARD_PREVIOUS_VERSION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// For a relation hook, this unit's endpoint in the relation (`db`):
    /// the hook's file name is `<endpoint>-<kind>`. Kept with the hook, so
    /// a failed hook can be named and retried even after its relation is
    /// gone from the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl PlannedHook {
    fn unit(kind: HookKind, version: &str) -> Self {
        Self {
            info: HookInfo::unit(kind),
            version: version.to_owned(),
            previous_version: None,
            endpoint: None,
        }
    }

    /// A relation hook (`info` is one), run for `version` through this
    /// unit's `endpoint`.
    pub fn relation(
        info: HookInfo,
        endpoint: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        Self {
            info,
            version: version.into(),
            previous_version: None,
            endpoint: Some(endpoint.into()),
        }
    }

    /// The hook's file name (`install`, `db-relation-joined`); falls back
    /// to the kind's name for a relation hook without an endpoint (which
    /// only a hand-edited record can hold).
    pub fn name(&self) -> String {
        self.info
            .file_name(self.endpoint.as_deref())
            .unwrap_or_else(|_| self.info.kind.as_str().to_owned())
    }
}

/// What makes hooks due besides the record: the facts of this agent run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due<'a> {
    /// `config-changed` is due: the agent started, or the settings changed
    /// since it last succeeded.
    pub config_changed: bool,
    /// The runtime left the config: `stop` is due (and nothing else).
    pub stop: bool,
    /// The version the runtime starts at (what `install` runs for).
    pub starting_version: &'a str,
    /// The version serving now, once the runtime has started.
    pub serving: Option<&'a str>,
}

/// Why an operation cannot be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no hook is in error")]
pub struct NothingToResolve;

impl UnitRecord {
    /// Applies the crash rule after an agent start: a hook that was running
    /// when the agent died failed. Returns whether the record changed (then
    /// the agent writes it).
    pub fn recover(&mut self) -> bool {
        match &mut self.operation {
            Some(operation) if operation.step == Step::Pending => {
                operation.step = Step::Failed {
                    reason: "the agent stopped while the hook ran".to_owned(),
                };
                operation.changes = Changes::default();
                true
            }
            _ => false,
        }
    }

    /// The hook to run next, if any. `None` also while an operation is
    /// unfinished: a done one must be committed, a failed one retried or
    /// resolved first (later hooks wait for it).
    pub fn next_hook(&self, due: &Due<'_>) -> Option<PlannedHook> {
        if self.operation.is_some() {
            return None;
        }
        let version = due.serving.unwrap_or(due.starting_version);
        if due.stop {
            // A unit that never installed has nothing to stop.
            return self
                .installed
                .then(|| PlannedHook::unit(HookKind::Stop, version));
        }
        if !self.installed {
            return Some(PlannedHook::unit(HookKind::Install, due.starting_version));
        }
        if due.config_changed {
            return Some(PlannedHook::unit(HookKind::ConfigChanged, version));
        }
        let serving = due.serving?;
        if !self.started {
            return Some(PlannedHook::unit(HookKind::Start, serving));
        }
        match &self.version {
            Some(previous) if previous == serving => None,
            previous => Some(PlannedHook {
                previous_version: previous.clone(),
                ..PlannedHook::unit(HookKind::Upgrade, serving)
            }),
        }
    }

    /// Step 1: the hook is about to run (write the record before the
    /// process starts).
    pub fn prepare(&mut self, hook: PlannedHook) {
        self.operation = Some(Operation {
            hook,
            step: Step::Pending,
            changes: Changes::default(),
        });
    }

    /// Step 2: the hook succeeded with `changes` (write the record, then
    /// commit).
    pub fn done(&mut self, changes: Changes) {
        if let Some(operation) = &mut self.operation {
            operation.step = Step::Done;
            operation.changes = changes;
        }
    }

    /// The hook failed: later hooks wait, and its changes are dropped.
    pub fn fail(&mut self, reason: impl Into<String>) {
        if let Some(operation) = &mut self.operation {
            operation.step = Step::Failed {
                reason: reason.into(),
            };
            operation.changes = Changes::default();
        }
    }

    /// Step 3: applies a done operation — the hook's effects on the
    /// lifecycle and its changes — and clears it. Returns the committed
    /// hook; `None` if no operation is done (committing is idempotent).
    pub fn commit(&mut self) -> Option<PlannedHook> {
        match &self.operation {
            Some(operation) if operation.step == Step::Done => {}
            _ => return None,
        }
        let operation = self.operation.take()?;
        operation.changes.apply_state(&mut self.state);
        self.apply(&operation.hook);
        Some(operation.hook)
    }

    /// The failed hook and why, if a hook is in error.
    pub fn failed(&self) -> Option<(&PlannedHook, &str)> {
        match &self.operation {
            Some(Operation {
                hook,
                step: Step::Failed { reason },
                ..
            }) => Some((hook, reason)),
            _ => None,
        }
    }

    /// Resolves a failed hook without running it (`resolve --skip`): its
    /// effects apply as if it had succeeded, with no changes (juju's
    /// "resolved": continue as though the hook had completed). Returns the
    /// skipped hook.
    pub fn skip(&mut self) -> Result<PlannedHook, NothingToResolve> {
        if self.failed().is_none() {
            return Err(NothingToResolve);
        }
        let operation = self.operation.take().ok_or(NothingToResolve)?;
        self.apply(&operation.hook);
        Ok(operation.hook)
    }

    /// The failed hook, to run again (`resolve --retry`, or the retry
    /// backoff): prepare it again with [`prepare`](Self::prepare).
    pub fn retry(&self) -> Result<PlannedHook, NothingToResolve> {
        self.failed()
            .map(|(hook, _)| hook.clone())
            .ok_or(NothingToResolve)
    }

    fn apply(&mut self, hook: &PlannedHook) {
        match hook.info.kind {
            HookKind::Install => self.installed = true,
            HookKind::Start => {
                self.started = true;
                self.version = Some(hook.version.clone());
            }
            HookKind::Upgrade => self.version = Some(hook.version.clone()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due<'a>(config_changed: bool, serving: Option<&'a str>) -> Due<'a> {
        Due {
            config_changed,
            stop: false,
            starting_version: "1",
            serving,
        }
    }

    /// Runs every due hook to success, as the agent would with no failures,
    /// and returns their names.
    fn run_all(record: &mut UnitRecord, mut due: Due<'_>) -> Vec<String> {
        let mut ran = Vec::new();
        while let Some(hook) = record.next_hook(&due) {
            let name = match &hook.previous_version {
                Some(previous) => format!("{} {previous}->{}", hook.info.kind, hook.version),
                None => format!("{} {}", hook.info.kind, hook.version),
            };
            ran.push(name);
            record.prepare(hook);
            record.done(Changes::default());
            let committed = record.commit().unwrap();
            if committed.info.kind == HookKind::ConfigChanged {
                due.config_changed = false;
            }
            if committed.info.kind == HookKind::Stop {
                break;
            }
        }
        ran
    }

    #[test]
    fn a_first_run_installs_configures_then_starts_once_serving() {
        let mut record = UnitRecord::default();
        assert_eq!(
            run_all(&mut record, due(true, None)),
            ["install 1", "config-changed 1"]
        );
        assert!(record.installed && !record.started);
        assert_eq!(run_all(&mut record, due(false, Some("1"))), ["start 1"]);
        assert_eq!(record.version.as_deref(), Some("1"));
        assert!(run_all(&mut record, due(false, Some("1"))).is_empty());
    }

    #[test]
    fn an_agent_restart_runs_config_changed_only() {
        let mut record = UnitRecord::default();
        run_all(&mut record, due(true, Some("1")));
        assert_eq!(
            run_all(&mut record, due(true, Some("1"))),
            ["config-changed 1"]
        );
    }

    #[test]
    fn a_switch_is_one_upgrade_from_the_last_version_hooks_saw() {
        let mut record = UnitRecord::default();
        run_all(&mut record, due(true, Some("1")));
        assert_eq!(
            run_all(&mut record, due(false, Some("2"))),
            ["upgrade 1->2"]
        );
        // Two switches while no hook ran (say, the agent was down): one
        // upgrade from where the hooks left off.
        assert_eq!(
            run_all(&mut record, due(false, Some("4"))),
            ["upgrade 2->4"]
        );
    }

    #[test]
    fn stop_runs_alone_and_only_for_an_installed_unit() {
        let stop = |serving| Due {
            stop: true,
            ..due(true, serving)
        };
        assert!(UnitRecord::default().next_hook(&stop(Some("1"))).is_none());
        let mut record = UnitRecord::default();
        run_all(&mut record, due(true, Some("1")));
        assert_eq!(run_all(&mut record, stop(Some("1"))), ["stop 1"]);
    }

    #[test]
    fn a_pending_operation_is_a_failed_hook_after_a_crash() {
        let mut record = UnitRecord::default();
        let hook = record.next_hook(&due(true, None)).unwrap();
        record.prepare(hook.clone());
        assert!(record.recover());
        let (failed, reason) = record.failed().unwrap();
        assert_eq!(failed, &hook);
        assert!(reason.contains("agent stopped"), "{reason}");
        // Later hooks wait for it.
        assert!(record.next_hook(&due(true, Some("1"))).is_none());
        assert!(!record.recover(), "recovering twice changes nothing");
    }

    #[test]
    fn a_done_operation_is_committed_once_with_its_changes() {
        let mut record = UnitRecord::default();
        let hook = record.next_hook(&due(true, None)).unwrap();
        record.prepare(hook);
        let mut changes = Changes::default();
        changes.state.insert("port".into(), Some("8080".into()));
        record.done(changes);
        // The agent died after writing `done`: recovery leaves it alone, and
        // the commit applies it once.
        assert!(!record.recover());
        let committed = record.commit().unwrap();
        assert_eq!(committed.info.kind, HookKind::Install);
        assert!(record.installed);
        assert_eq!(record.state.get("port").map(String::as_str), Some("8080"));
        assert!(record.commit().is_none());
    }

    #[test]
    fn a_failed_hook_drops_its_changes_and_can_be_retried_or_skipped() {
        let mut record = UnitRecord::default();
        let hook = record.next_hook(&due(true, None)).unwrap();
        record.prepare(hook.clone());
        record.fail("exit status 1");
        assert_eq!(record.retry(), Ok(hook.clone()));
        let skipped = record.skip().unwrap();
        assert_eq!(skipped, hook);
        assert!(record.installed, "a skipped install counts as done");
        assert_eq!(record.skip(), Err(NothingToResolve));
        assert_eq!(record.retry(), Err(NothingToResolve));
    }

    #[test]
    fn the_record_round_trips_through_json() {
        let mut record = UnitRecord::default();
        run_all(&mut record, due(true, Some("1")));
        record.state.insert("k".into(), "v".into());
        record.prepare(PlannedHook {
            info: HookInfo::unit(HookKind::Upgrade),
            version: "2".into(),
            previous_version: Some("1".into()),
            endpoint: None,
        });
        record.fail("hook \"upgrade\" failed: exit status 3");
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<UnitRecord>(&json).unwrap(), record);
        let relation = PlannedHook::relation(
            HookInfo::relation(HookKind::RelationJoined, 3, Some("kv/a1".into()), Some(0)),
            "db",
            "2",
        );
        assert_eq!(relation.name(), "db-relation-joined");
        record.prepare(relation);
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""endpoint":"db""#), "{json}");
        assert_eq!(serde_json::from_str::<UnitRecord>(&json).unwrap(), record);
        assert_eq!(
            serde_json::from_str::<UnitRecord>("{}").unwrap(),
            UnitRecord::default()
        );
    }
}
