//! A unit's status: what this agent publishes for each of its runtimes
//! ([`UnitStatus`], as JSON, the value of its unit key in etcd), and how a
//! published record reads back ([`FleetUnit`]). This module must never
//! talk to etcd.

use steward_store::UnitRecord;

use crate::api::types::{FleetUnit, UnitStatus};
use crate::runtimes::Hosted;

/// `hosted`'s status as its unit publishes it, with `desired` the
/// fleet-wide desired version as this agent last read it.
pub(crate) fn unit_status(hosted: &Hosted, desired: Option<String>) -> UnitStatus {
    let status = hosted.status();
    let hooks = hosted
        .config()
        .hooks
        .is_some()
        .then(|| hosted.hook_status().activity.state());
    UnitStatus {
        active_version: hosted.active_version(),
        desired_version: desired,
        state: status.state,
        restarts: status.restarts,
        hooks,
        error: status.last_error,
    }
}

/// A unit as `GET /v1/fleet` shows it. A status that does not read as a
/// [`UnitStatus`] (written by another Steward, or by hand) is shown with
/// its problem as the error, never dropped: the unit is alive.
pub(crate) fn fleet_unit(record: &UnitRecord) -> FleetUnit {
    let last_seen = record
        .last_seen
        .map(|at| humantime::format_rfc3339_seconds(at).to_string());
    // What an unreadable status leaves: the unit, with the reason as its
    // error and nothing else known about it.
    let (active_version, desired_version, state, hooks, error) =
        match serde_json::from_slice::<UnitStatus>(&record.status) {
            Ok(status) => (
                status.active_version,
                status.desired_version,
                Some(status.state),
                status.hooks,
                status.error,
            ),
            Err(error) => (
                None,
                None,
                None,
                None,
                Some(format!("its published status cannot be read: {error}")),
            ),
        };
    FleetUnit {
        unit: record.unit.clone(),
        agent: record.agent.clone(),
        runtime: record.runtime.clone(),
        active_version,
        desired_version,
        state,
        hooks,
        error,
        last_seen,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::api::types::{HooksState, RuntimeState};

    fn record(status: &[u8]) -> UnitRecord {
        UnitRecord {
            unit: "echo/a1".to_owned(),
            runtime: "echo".to_owned(),
            agent: "a1".to_owned(),
            status: status.to_vec(),
            revision: 7,
            last_seen: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
        }
    }

    #[test]
    fn a_published_status_reads_back_as_the_unit() {
        let status = UnitStatus {
            active_version: Some("2.0.0".to_owned()),
            desired_version: Some("2.0.0".to_owned()),
            state: RuntimeState::Running,
            restarts: 3,
            hooks: Some(HooksState::Idle),
            error: None,
        };
        let unit = fleet_unit(&record(&serde_json::to_vec(&status).unwrap()));
        assert_eq!(
            unit,
            FleetUnit {
                unit: "echo/a1".to_owned(),
                agent: "a1".to_owned(),
                runtime: "echo".to_owned(),
                active_version: Some("2.0.0".to_owned()),
                desired_version: Some("2.0.0".to_owned()),
                state: Some(RuntimeState::Running),
                hooks: Some(HooksState::Idle),
                error: None,
                last_seen: Some("2027-01-15T08:00:00Z".to_owned()),
            }
        );
    }

    #[test]
    fn an_unreadable_status_keeps_the_unit_and_says_why() {
        let unit = fleet_unit(&record(b"not json"));
        assert_eq!(unit.unit, "echo/a1");
        assert_eq!(unit.state, None);
        let error = unit.error.unwrap();
        assert!(
            error.starts_with("its published status cannot be read"),
            "{error}"
        );
    }
}
