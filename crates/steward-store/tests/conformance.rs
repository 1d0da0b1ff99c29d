//! The shared [`DesiredState`] conformance suite on the embedded redb
//! store (the etcd backend runs the same suite in `steward-etcd`).

#![cfg(feature = "conformance")]
#![allow(clippy::unwrap_used, reason = "a test: a panic is its failure report")]

use std::sync::Arc;

use steward_store::{DesiredState, Store};
use tempfile::TempDir;

async fn fresh() -> (TempDir, Arc<dyn DesiredState>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.redb")).await.unwrap();
    (dir, Arc::new(store))
}

steward_store::desired_state_conformance!(fresh);
