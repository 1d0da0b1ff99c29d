//! The shared [`DesiredState`] conformance suite on [`EtcdStore`], against
//! a real etcd server (one per test process, each case under its own key
//! prefix): the same cases the embedded redb store passes.

#![allow(clippy::unwrap_used, reason = "a test: a panic is its failure report")]

use std::sync::Arc;

use steward_etcd::testing::{EtcdServer, unique_prefix};
use steward_etcd::{EtcdOptions, EtcdStore};
use steward_store::DesiredState;

/// Keeps the shared server running while the case runs.
struct Case {
    _server: Arc<EtcdServer>,
}

async fn fresh() -> (Case, Arc<dyn DesiredState>) {
    let server = EtcdServer::shared().unwrap_or_else(|error| panic!("{error}"));
    let options =
        EtcdOptions::new([server.endpoint()], "conformance").prefix(&unique_prefix("desired"));
    let store = EtcdStore::connect(options).await.unwrap();
    (Case { _server: server }, Arc::new(store))
}

steward_store::desired_state_conformance!(fresh);
