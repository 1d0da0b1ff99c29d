//! Fleet mode: this agent's side of a fleet of agents sharing one etcd
//! (`steward run --fleet URL`). Desired versions are the fleet's (the
//! runtime workers read them through the same
//! [`DesiredState`](steward_store::DesiredState) trait as the embedded
//! store's, in the workers' fleet scope), and
//! this module publishes the agent's units — `<runtime>/<agent>` — with
//! their status, under the agent's lease, for `steward fleet status` and
//! for `set-version` to see a fleet-wide switch converge.
//!
//! What it must never do: switch, stop or start a runtime (an etcd outage
//! only delays what it publishes), or write desired state.

mod presence;
mod status;

use std::time::Duration;

use steward_etcd::{EtcdOptions, EtcdStore};

pub(crate) use presence::{Publisher, start as start_presence};
pub(crate) use status::{fleet_unit, unit_status};

use crate::Error;

/// Where the fleet's etcd is, from `--fleet` or `[fleet]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetOptions {
    /// etcd's client URLs.
    pub endpoints: Vec<String>,
    /// The key prefix; `None` is `/steward/`.
    pub prefix: Option<String>,
    /// How long a dead agent's units stay listed; `None` is 10 s.
    pub lease_ttl: Option<Duration>,
}

/// Connects agent `name` to the fleet's etcd: its first contact must
/// succeed (an agent that cannot reach etcd at start has no desired state
/// to serve), after which outages are ridden out.
pub(crate) async fn connect(options: &FleetOptions, name: &str) -> Result<EtcdStore, Error> {
    let mut etcd = EtcdOptions::new(options.endpoints.iter().cloned(), name);
    if let Some(prefix) = &options.prefix {
        etcd = etcd.prefix(prefix);
    }
    if let Some(ttl) = options.lease_ttl {
        etcd = etcd.lease_ttl(ttl);
    }
    EtcdStore::connect(etcd).await.map_err(Error::Fleet)
}
