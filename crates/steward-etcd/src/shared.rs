//! The store crate's fleet traits, [`Presence`] and [`RelationSettings`],
//! for [`EtcdStore`] (its [`DesiredState`](steward_store::DesiredState) is
//! in `desired`). Each method is the inherent one of the same name, its
//! error turned into the store crate's; this module must never hold logic
//! of its own.

use std::collections::BTreeMap;

use steward_store::{FleetHealth, KeyChanges, Presence, RelationSettings, UnitRecord};
use steward_worker::{BoxFuture, QueueWatcher};

use crate::EtcdStore;

/// Units as keys `<prefix>units/<runtime>/<agent>` under the agent's lease
/// (see the [crate docs](crate)); health from request deadlines and the
/// maintenance task's probe.
impl Presence for EtcdStore {
    fn agent(&self) -> &str {
        self.options().agent()
    }

    fn publish_unit<'a>(
        &'a self,
        unit: &'a str,
        status: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), steward_store::Error>> {
        Box::pin(async move { Ok(EtcdStore::publish_unit(self, unit, status).await?) })
    }

    fn remove_unit<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<(), steward_store::Error>> {
        Box::pin(async move { Ok(EtcdStore::remove_unit(self, unit).await?) })
    }

    fn units(&self) -> BoxFuture<'_, Result<Vec<UnitRecord>, steward_store::Error>> {
        Box::pin(async move { Ok(EtcdStore::units(self).await?) })
    }

    fn watch_units(&self) -> QueueWatcher<KeyChanges> {
        EtcdStore::watch_units(self)
    }

    fn health(&self) -> FleetHealth {
        EtcdStore::health(self)
    }

    fn watch_health(&self) -> QueueWatcher<()> {
        EtcdStore::watch_health(self)
    }
}

/// Settings as keys `<prefix>relations/<relation>/<runtime>/<agent>` under
/// the agent's lease.
impl RelationSettings for EtcdStore {
    fn set_relation_settings<'a>(
        &'a self,
        relation: &'a str,
        unit: &'a str,
        settings: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), steward_store::Error>> {
        Box::pin(async move {
            Ok(EtcdStore::set_relation_settings(self, relation, unit, settings).await?)
        })
    }

    fn remove_relation_settings<'a>(
        &'a self,
        relation: &'a str,
        unit: &'a str,
    ) -> BoxFuture<'a, Result<(), steward_store::Error>> {
        Box::pin(
            async move { Ok(EtcdStore::remove_relation_settings(self, relation, unit).await?) },
        )
    }

    fn relation_members<'a>(
        &'a self,
        relation: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Vec<u8>>, steward_store::Error>> {
        Box::pin(async move { Ok(EtcdStore::relation_members(self, relation).await?.1) })
    }

    fn watch_relation(
        &self,
        relation: &str,
    ) -> Result<QueueWatcher<KeyChanges>, steward_store::Error> {
        Ok(EtcdStore::watch_relation(self, relation)?)
    }
}
