//! Host storage: the key-value space the host offers each runtime,
//! namespaced by runtime id so every version of a runtime shares it.
//!
//! The agent backs it with its embedded database; [`MemoryStorage`] serves
//! tests and embedders that need no persistence. This module must never
//! interpret values: they are opaque CBOR.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use steward_protocol::Value;
use steward_worker::BoxFuture;

use crate::Error;

/// Where runtimes' state lives. `namespace` is the runtime id.
pub trait Storage: Send + Sync + 'static {
    /// The value under `key`, if any.
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, Error>>;
    /// Stores `value` under `key` (durably, for persistent stores).
    fn set<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// Removes `key`; removing a missing key succeeds.
    fn delete<'a>(&'a self, namespace: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// The keys starting with `prefix`, sorted.
    fn list<'a>(
        &'a self,
        namespace: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, Error>>;
}

/// Storage in memory, shared by clones; lost when the process exits.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    entries: Arc<Mutex<BTreeMap<(String, String), Value>>>,
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Value>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Storage for MemoryStorage {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, Error>> {
        let found = self
            .entries()
            .get(&(namespace.to_owned(), key.to_owned()))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn set<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.entries()
            .insert((namespace.to_owned(), key.to_owned()), value);
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, namespace: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        self.entries()
            .remove(&(namespace.to_owned(), key.to_owned()));
        Box::pin(async { Ok(()) })
    }

    fn list<'a>(
        &'a self,
        namespace: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        let keys = self
            .entries()
            .range((namespace.to_owned(), prefix.to_owned())..)
            .take_while(|((ns, key), _)| ns == namespace && key.starts_with(prefix))
            .map(|((_, key), _)| key.clone())
            .collect();
        Box::pin(async move { Ok(keys) })
    }
}
