//! The environment of a hook process: cleared, then exactly the variables
//! the hook needs — the tools first on `PATH`, what the hook is for
//! (`STEWARD_*`), how to reach the agent, and juju's names as aliases, so
//! hooks written for juju's tools find what they expect. This module must
//! never let anything of the agent's own environment through.

use std::ffi::OsString;
use std::path::Path;

use steward_hooks::lifecycle::PlannedHook;

/// Where hooks find programs: the tools, then the system's usual places.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Who and what a hook runs for.
#[derive(Debug, Clone, Copy)]
pub(super) struct HookFacts<'a> {
    pub(super) runtime: &'a str,
    pub(super) unit: &'a str,
    pub(super) hook_name: &'a str,
    pub(super) hook: &'a PlannedHook,
    pub(super) hooks_dir: &'a Path,
    pub(super) tools_dir: &'a Path,
    /// For a relation hook, what it is about.
    pub(super) relation: Option<RelationFacts<'a>>,
}

/// What a relation hook is about.
#[derive(Debug, Clone, Copy)]
pub(super) struct RelationFacts<'a> {
    /// This unit's endpoint (`db`).
    pub(super) endpoint: &'a str,
    pub(super) relation: u64,
    /// The unit the hook is about (none in relation-broken).
    pub(super) remote_unit: Option<&'a str>,
    /// The runtime at the other end.
    pub(super) remote_runtime: Option<&'a str>,
}

/// The whole environment of the hook, with `agent` (the tool server's
/// context id and socket variables) added.
pub(super) fn hook_env(
    facts: HookFacts<'_>,
    agent: impl IntoIterator<Item = (&'static str, String)>,
) -> Vec<(OsString, OsString)> {
    let mut path = facts.tools_dir.as_os_str().to_owned();
    path.push(":");
    path.push(SYSTEM_PATH);
    let charm_dir = facts
        .hooks_dir
        .parent()
        .unwrap_or(facts.hooks_dir)
        .as_os_str()
        .to_owned();
    let mut env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), path),
        ("STEWARD_HOOK".into(), facts.hook_name.into()),
        ("STEWARD_RUNTIME".into(), facts.runtime.into()),
        ("STEWARD_UNIT".into(), facts.unit.into()),
        ("STEWARD_VERSION".into(), facts.hook.version.clone().into()),
        (
            "STEWARD_HOOKS_DIR".into(),
            facts.hooks_dir.as_os_str().to_owned(),
        ),
        ("JUJU_HOOK_NAME".into(), facts.hook_name.into()),
        ("JUJU_UNIT_NAME".into(), facts.unit.into()),
        ("CHARM_DIR".into(), charm_dir),
    ];
    if let Some(previous) = &facts.hook.previous_version {
        env.push(("STEWARD_PREVIOUS_VERSION".into(), previous.clone().into()));
    }
    if let Some(relation) = facts.relation {
        let label = format!("{}:{}", relation.endpoint, relation.relation);
        let mut pair = |names: [&str; 2], value: &str| {
            for name in names {
                env.push((name.into(), value.into()));
            }
        };
        pair(["STEWARD_RELATION", "JUJU_RELATION"], relation.endpoint);
        pair(["STEWARD_RELATION_ID", "JUJU_RELATION_ID"], &label);
        if let Some(unit) = relation.remote_unit {
            pair(["STEWARD_REMOTE_UNIT", "JUJU_REMOTE_UNIT"], unit);
        }
        if let Some(runtime) = relation.remote_runtime {
            pair(["STEWARD_REMOTE_RUNTIME", "JUJU_REMOTE_APP"], runtime);
        }
    }
    env.extend(
        agent
            .into_iter()
            .map(|(name, value)| (name.into(), value.into())),
    );
    env
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use steward_hooks::{HookInfo, HookKind};

    use super::*;

    #[test]
    fn a_hook_gets_exactly_its_variables() {
        let hook = PlannedHook {
            info: HookInfo::unit(HookKind::Upgrade),
            version: "2.0.0".to_owned(),
            previous_version: Some("1.0.0".to_owned()),
            endpoint: None,
        };
        let hooks_dir = PathBuf::from("/srv/charms/web/hooks");
        let tools_dir = PathBuf::from("/var/lib/steward/tools");
        let env = hook_env(
            HookFacts {
                runtime: "web",
                unit: "web/a1",
                hook_name: "upgrade",
                hook: &hook,
                hooks_dir: &hooks_dir,
                tools_dir: &tools_dir,
                relation: None,
            },
            [("STEWARD_CONTEXT_ID", "web/a1:upgrade:7".to_owned())],
        );
        let env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect();
        let expected = [
            (
                "PATH",
                "/var/lib/steward/tools:/usr/local/bin:/usr/bin:/bin",
            ),
            ("STEWARD_HOOK", "upgrade"),
            ("STEWARD_RUNTIME", "web"),
            ("STEWARD_UNIT", "web/a1"),
            ("STEWARD_VERSION", "2.0.0"),
            ("STEWARD_HOOKS_DIR", "/srv/charms/web/hooks"),
            ("JUJU_HOOK_NAME", "upgrade"),
            ("JUJU_UNIT_NAME", "web/a1"),
            ("CHARM_DIR", "/srv/charms/web"),
            ("STEWARD_PREVIOUS_VERSION", "1.0.0"),
            ("STEWARD_CONTEXT_ID", "web/a1:upgrade:7"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(env, expected);
    }

    #[test]
    fn a_relation_hook_gets_the_relation_variables_with_juju_aliases() {
        let hook = PlannedHook::relation(
            HookInfo::relation(HookKind::RelationChanged, 3, Some("kv/a1".into()), Some(2)),
            "db",
            "1.0.0",
        );
        let dir = PathBuf::from("/srv/web/hooks");
        let facts = |remote_unit| HookFacts {
            runtime: "web",
            unit: "web/a1",
            hook_name: "db-relation-changed",
            hook: &hook,
            hooks_dir: &dir,
            tools_dir: &dir,
            relation: Some(RelationFacts {
                endpoint: "db",
                relation: 3,
                remote_unit,
                remote_runtime: Some("kv"),
            }),
        };
        let vars = |remote_unit| -> Vec<(String, String)> {
            hook_env(facts(remote_unit), [])
                .into_iter()
                .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
                .filter(|(k, _)| k.contains("RELATION") || k.contains("REMOTE"))
                .collect()
        };
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            vars(Some("kv/a1")),
            pairs(&[
                ("STEWARD_RELATION", "db"),
                ("JUJU_RELATION", "db"),
                ("STEWARD_RELATION_ID", "db:3"),
                ("JUJU_RELATION_ID", "db:3"),
                ("STEWARD_REMOTE_UNIT", "kv/a1"),
                ("JUJU_REMOTE_UNIT", "kv/a1"),
                ("STEWARD_REMOTE_RUNTIME", "kv"),
                ("JUJU_REMOTE_APP", "kv"),
            ])
        );
        // relation-broken is about no unit.
        assert!(!vars(None).iter().any(|(k, _)| k.ends_with("REMOTE_UNIT")));
    }
}
