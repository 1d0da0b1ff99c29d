//! [`Registry`]: the hosted runtimes by id, which the API looks runtimes
//! up in and the manager keeps in step with the config. Locks are held
//! only to clone an `Arc`; this module must never hold a lock while a
//! runtime is started or stopped.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::Hosted;

/// The hosted runtimes by id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    runtimes: RwLock<BTreeMap<String, Arc<Hosted>>>,
}

impl Registry {
    /// The runtime `id`, if the config has it.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Hosted>> {
        self.runtimes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Every runtime, sorted by id.
    pub(crate) fn all(&self) -> Vec<Arc<Hosted>> {
        self.runtimes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.runtimes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    pub(crate) fn insert(&self, hosted: Arc<Hosted>) {
        self.runtimes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hosted.id.clone(), hosted);
    }

    pub(crate) fn remove(&self, id: &str) -> Option<Arc<Hosted>> {
        self.runtimes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
    }
}
