//! The key layout under the prefix (documented for operators in
//! `docs/guide.md`: it is an interface, used with `etcdctl`), and the
//! checks that keep names from splitting a key. This module is the only
//! place that spells a key; it must never talk to etcd.
//!
//! ```text
//! <prefix>desired/<runtime>                    the runtime's desired version (UTF-8)
//! <prefix>units/<runtime>/<agent>              the unit's status (the agent's bytes), under its lease
//! <prefix>relations/<relation>/<runtime>/<agent>  the unit's settings in the relation, under its lease
//! ```

use crate::Error;

/// Checks a name that is one segment of a key: not empty, no `/`.
pub(crate) fn check_segment(what: &'static str, name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('/') {
        "it contains a /, which would split its key"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        what,
        name: name.to_owned(),
        reason: reason.to_owned(),
    })
}

/// A unit's two halves, `<runtime>/<agent>`.
pub(crate) fn split_unit(unit: &str) -> Option<(&str, &str)> {
    let (runtime, agent) = unit.split_once('/')?;
    (!runtime.is_empty() && !agent.is_empty() && !agent.contains('/')).then_some((runtime, agent))
}

/// The units' prefix, relative to the fleet's prefix.
pub(crate) const UNITS_DIR: &str = "units/";

/// The keys of one fleet, under its prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    agent: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, agent: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            agent: agent.to_owned(),
        }
    }

    /// Prefixes `relative` (a key or a key prefix under the fleet's prefix).
    pub(crate) fn absolute(&self, relative: &str) -> String {
        format!("{}{relative}", self.prefix)
    }

    /// The part of a key below `prefix` (absolute), if it is under it and
    /// UTF-8.
    pub(crate) fn strip<'k>(key: &'k [u8], prefix: &str) -> Option<&'k str> {
        let rest = key.strip_prefix(prefix.as_bytes())?;
        std::str::from_utf8(rest).ok()
    }

    pub(crate) fn desired_dir(&self) -> String {
        self.absolute("desired/")
    }

    pub(crate) fn desired(&self, runtime: &str) -> String {
        self.absolute(&format!("desired/{runtime}"))
    }

    /// The key of a unit of *this* agent: `unit` must be
    /// `<runtime>/<this agent>`.
    pub(crate) fn own_unit(&self, unit: &str) -> Result<String, Error> {
        self.check_own_unit(unit)?;
        Ok(self.absolute(&format!("{UNITS_DIR}{unit}")))
    }

    /// The prefix of `relation`'s members, relative to the fleet's prefix.
    pub(crate) fn relation_dir(&self, relation: &str) -> Result<String, Error> {
        check_segment("relation", relation)?;
        Ok(format!("relations/{relation}/"))
    }

    /// The key of `unit`'s settings in `relation` (any unit).
    pub(crate) fn relation_unit(&self, relation: &str, unit: &str) -> Result<String, Error> {
        check_unit(unit)?;
        Ok(self.absolute(&format!("{}{unit}", self.relation_dir(relation)?)))
    }

    /// The key of the settings of a unit of *this* agent in `relation`.
    pub(crate) fn own_relation_unit(&self, relation: &str, unit: &str) -> Result<String, Error> {
        self.check_own_unit(unit)?;
        self.relation_unit(relation, unit)
    }

    fn check_own_unit(&self, unit: &str) -> Result<(), Error> {
        check_unit(unit)?;
        match split_unit(unit) {
            Some((_, agent)) if agent == self.agent => Ok(()),
            _ => Err(Error::InvalidName {
                what: "unit",
                name: unit.to_owned(),
                reason: format!(
                    "an agent publishes only its own units, <runtime>/{}",
                    self.agent
                ),
            }),
        }
    }
}

fn check_unit(unit: &str) -> Result<(), Error> {
    match split_unit(unit) {
        Some(_) => Ok(()),
        None => Err(Error::InvalidName {
            what: "unit",
            name: unit.to_owned(),
            reason: "a unit is <runtime>/<agent>, both non-empty, with one /".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_have_two_non_empty_halves() {
        assert_eq!(split_unit("echo/a1"), Some(("echo", "a1")));
        for bad in ["echo", "echo/", "/a1", "echo/a1/x", ""] {
            assert_eq!(split_unit(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_agent_writes_only_its_own_units() {
        let keys = Keys::new("/s/", "a1");
        assert_eq!(keys.own_unit("echo/a1").unwrap(), "/s/units/echo/a1");
        assert_eq!(
            keys.own_relation_unit("db", "echo/a1").unwrap(),
            "/s/relations/db/echo/a1"
        );
        let error = keys.own_unit("echo/a2").unwrap_err();
        assert!(error.to_string().contains("<runtime>/a1"), "{error}");
        assert!(matches!(
            keys.own_unit("echo"),
            Err(Error::InvalidName { what: "unit", .. })
        ));
        assert!(keys.relation_unit("db", "kv/a2").is_ok());
        assert!(matches!(
            keys.relation_dir("a/b"),
            Err(Error::InvalidName {
                what: "relation",
                ..
            })
        ));
    }

    #[test]
    fn stripping_keeps_only_utf8_keys_under_the_prefix() {
        assert_eq!(Keys::strip(b"/s/desired/echo", "/s/desired/"), Some("echo"));
        assert_eq!(Keys::strip(b"/s/units/echo/a", "/s/desired/"), None);
        assert_eq!(Keys::strip(b"/s/desired/\xff", "/s/desired/"), None);
    }
}
