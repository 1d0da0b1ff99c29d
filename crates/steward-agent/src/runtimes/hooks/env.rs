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
}
