//! Presence: the agent's lease and the keys it owns under it (its units'
//! status, its relation settings), the maintenance task that keeps both
//! alive, and the fleet-wide listing of units.
//!
//! The store remembers every key it owns, so that whatever an outage did
//! — a put that got no answer, a lease that expired while etcd could not
//! be reached — is repaired by re-publishing: after every reconnect, and
//! whenever the lease had to be granted anew. A failed delete is retried
//! the same way. The maintenance task is also the health probe: a keep-
//! alive every third of the TTL, a linearizable read every probe interval
//! in between, each with the request deadline. This module must never
//! write a key that is not the agent's own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp};
use futures_util::future::join_all;
use steward_worker::QueueWatcher;
use tracing::{debug, warn};

use crate::keys::{UNITS_DIR, split_unit};
use crate::store::{Shared, is_lease_not_found};
use steward_store::UnitRecord;

use crate::{Error, EtcdStore, KeyChanges};

/// The most operations etcd takes in one transaction by default
/// (`--max-txn-ops` is 128); re-publishing is chunked below it.
const TXN_OPS: usize = 100;

/// What this agent owns in etcd.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    /// The lease the owned keys live under; `None` while a lost one is
    /// being granted anew, or after close.
    lease: Option<i64>,
    /// Absolute key → value, as the agent last set them.
    owned: BTreeMap<String, Vec<u8>>,
    /// Absolute keys whose delete etcd has not confirmed.
    deletes: BTreeSet<String>,
    /// Whether `owned` may differ from etcd (a put that failed).
    stale: bool,
}

impl Presence {
    pub(crate) fn set_lease(&mut self, shared: &Shared, lease: Option<i64>) {
        self.lease = lease;
        shared.lease_id.store(lease.unwrap_or(0), Ordering::Release);
    }

    /// Forgets everything (the store is closing); returns the lease.
    pub(crate) fn forget(&mut self, shared: &Shared) -> Option<i64> {
        let lease = self.lease;
        self.set_lease(shared, None);
        self.owned.clear();
        self.deletes.clear();
        lease
    }
}

impl Shared {
    pub(crate) async fn grant_lease(&self) -> Result<i64, Error> {
        let ttl = self.options.lease_ttl_secs();
        let response = self
            .request(
                || "granting the agent's lease".to_owned(),
                |mut client| async move { client.lease_grant(ttl, None).await },
            )
            .await?;
        Ok(response.id())
    }

    /// Records `key` = `value` as owned and puts it under the lease.
    async fn put_owned(&self, operation: String, key: String, value: Vec<u8>) -> Result<(), Error> {
        let mut presence = self.presence.lock().await;
        if self.stop.is_cancelled() {
            return Err(Error::Closed { operation });
        }
        presence.deletes.remove(&key);
        presence.owned.insert(key.clone(), value.clone());
        let Some(lease) = presence.lease else {
            presence.stale = true;
            return Err(Error::Unavailable {
                operation,
                reason: "the agent's lease is being granted anew; the value is published with it"
                    .to_owned(),
            });
        };
        let options = PutOptions::new().with_lease(lease);
        let put = self
            .request_raw(&operation, |mut client| async move {
                client.put(key, value, Some(options)).await
            })
            .await;
        self.settle(&mut presence, operation, put)
    }

    /// Forgets `key` as owned and deletes it.
    async fn delete_owned(&self, operation: String, key: String) -> Result<(), Error> {
        let mut presence = self.presence.lock().await;
        if self.stop.is_cancelled() {
            return Err(Error::Closed { operation });
        }
        presence.owned.remove(&key);
        presence.deletes.insert(key.clone());
        let target = key.clone();
        let deleted = self
            .request_raw(&operation, |mut client| async move {
                client.delete(target, None).await
            })
            .await;
        if deleted.is_ok() {
            presence.deletes.remove(&key);
        }
        self.settle(&mut presence, operation, deleted)
    }

    /// A request of the presence, with the lease's loss told apart.
    async fn request_raw<T, F>(
        &self,
        operation: &str,
        call: impl FnOnce(etcd_client::Client) -> F,
    ) -> Result<T, (Error, bool)>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut lease_lost = false;
        let flag = &mut lease_lost;
        let result = self
            .request_anyway(
                || operation.to_owned(),
                |client| {
                    let call = call(client);
                    async move {
                        let result = call.await;
                        if let Err(error) = &result {
                            *flag = is_lease_not_found(error);
                        }
                        result
                    }
                },
            )
            .await;
        result.map_err(|error| (error, lease_lost))
    }

    /// The outcome of a presence write: a failure leaves the presence to
    /// be re-published; a lost lease is granted anew at once.
    fn settle<T>(
        &self,
        presence: &mut Presence,
        operation: String,
        result: Result<T, (Error, bool)>,
    ) -> Result<(), Error> {
        match result {
            Ok(_) => Ok(()),
            Err((_, true)) => {
                presence.set_lease(self, None);
                presence.stale = true;
                self.wake.notify_one();
                Err(Error::Unavailable {
                    operation,
                    reason: "the agent's lease had expired; a new one is granted and the value published with it".to_owned(),
                })
            }
            Err((error, false)) => {
                presence.stale = true;
                Err(error)
            }
        }
    }

    /// Makes etcd hold exactly what the agent owns: deletes what it gave
    /// up, puts everything else under the current lease.
    async fn republish(&self, presence: &mut Presence) -> Result<(), String> {
        let Some(lease) = presence.lease else {
            return Err("no lease".to_owned());
        };
        for key in presence.deletes.clone() {
            let target = key.clone();
            self.request_raw(
                "deleting a key the agent gave up",
                |mut client| async move { client.delete(target, None).await },
            )
            .await
            .map_err(|(error, _)| error.to_string())?;
            presence.deletes.remove(&key);
        }
        let owned: Vec<_> = presence.owned.iter().collect();
        for chunk in owned.chunks(TXN_OPS) {
            let puts: Vec<_> = chunk
                .iter()
                .map(|(key, value)| {
                    TxnOp::put(
                        key.as_str(),
                        value.as_slice(),
                        Some(PutOptions::new().with_lease(lease)),
                    )
                })
                .collect();
            let txn = Txn::new().and_then(puts);
            match self
                .request_raw("re-publishing the agent's keys", |mut client| async move {
                    client.txn(txn).await
                })
                .await
            {
                Ok(_) => {}
                Err((error, lease_lost)) => {
                    if lease_lost {
                        presence.set_lease(self, None);
                    }
                    return Err(error.to_string());
                }
            }
        }
        presence.stale = false;
        Ok(())
    }
}

/// The maintenance task's own state: the keep-alive stream.
struct Keeper {
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    last: Instant,
    every: Duration,
}

/// Keeps the lease alive, probes etcd, re-publishes after an outage or a
/// lost lease, and reports health; until the store stops.
pub(crate) async fn maintain(shared: Arc<Shared>) {
    let stop = shared.stop.clone();
    let ttl = shared.options.lease_ttl_secs();
    let mut keeper = Keeper {
        stream: None,
        // The grant at connect was the first keep-alive.
        last: Instant::now(),
        every: Duration::from_secs(u64::try_from(ttl / 3).unwrap_or(1).max(1)),
    };
    let backoff = shared.backoff();
    let mut delays = backoff.start();
    loop {
        let connected = shared.health.get().is_connected();
        let wait = if connected {
            shared.options.probe_interval
        } else {
            delays.next_delay(None)
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = shared.wake.notified() => {}
        }
        // Read again: another request may have met an outage meanwhile,
        // and then the keep-alive stream is dead even if etcd is back (a
        // restart): a check that trusted the state from before the sleep
        // would keep it, report etcd reachable, then fail on it at the
        // next keep-alive — a second, false outage.
        let connected = shared.health.get().is_connected();
        match check(&shared, &mut keeper, connected).await {
            Ok(()) => {
                delays = backoff.start();
                shared.health.recovered();
            }
            Err(reason) => {
                keeper.stream = None;
                debug!(%reason, "fleet: check failed");
                shared.health.failed(&reason);
            }
        }
    }
}

/// One round of maintenance; the reason if etcd could not be reached.
async fn check(shared: &Shared, keeper: &mut Keeper, connected: bool) -> Result<(), String> {
    if !connected {
        shared.reconnect_client().await?;
        keeper.stream = None;
    }
    let mut presence = shared.presence.lock().await;
    if shared.stop.is_cancelled() {
        return Ok(());
    }
    let mut republish = presence.stale || !connected;
    let lease = presence.lease;
    let alive = match lease {
        Some(lease) if keeper.stream.is_none() || keeper.last.elapsed() >= keeper.every => {
            keep_alive(shared, keeper, lease).await?
        }
        // Between keep-alives, a read proves etcd works.
        Some(_) => {
            probe(shared).await?;
            true
        }
        None => false,
    };
    if !alive {
        if let Some(lease) = lease {
            warn!(
                lease = %format_args!("{lease:x}"),
                "fleet: the agent's lease expired; granting a new one and publishing its units again"
            );
        }
        let granted = shared.grant_lease().await.map_err(|e| e.to_string())?;
        debug!(lease = %format_args!("{granted:x}"), "fleet: lease granted");
        presence.set_lease(shared, Some(granted));
        keeper.stream = None;
        keeper.last = Instant::now();
        republish = true;
    }
    if republish {
        shared.republish(&mut presence).await?;
    }
    Ok(())
}

/// One keep-alive round trip: `Ok(false)` if etcd says the lease is gone.
async fn keep_alive(shared: &Shared, keeper: &mut Keeper, lease: i64) -> Result<bool, String> {
    let deadline = shared.options.request_timeout;
    if keeper.stream.is_none() {
        // Opening the stream is a keep-alive round trip of its own.
        let opened = tokio::time::timeout(deadline, async {
            shared.client().lease_keep_alive(lease).await
        })
        .await;
        match opened {
            Ok(Ok(stream)) => {
                keeper.stream = Some(stream);
                keeper.last = Instant::now();
                return Ok(true);
            }
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => {
                // The client says "lease not found" this way; etcd's own
                // word is the lease's remaining TTL.
                return lease_alive(shared, lease).await;
            }
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err(shared.no_answer()),
        }
    }
    let Some((sender, stream)) = keeper.stream.as_mut() else {
        return Err("no keep-alive stream".to_owned());
    };
    let answered = tokio::time::timeout(deadline, async {
        sender.keep_alive().await?;
        stream.message().await
    })
    .await;
    match answered {
        Ok(Ok(Some(response))) if response.ttl() > 0 => {
            keeper.last = Instant::now();
            Ok(true)
        }
        Ok(Ok(Some(_))) => Ok(false),
        Ok(Ok(None)) => Err("the keep-alive stream ended".to_owned()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(shared.no_answer()),
    }
}

/// Whether etcd still has `lease`, by its remaining TTL.
async fn lease_alive(shared: &Shared, lease: i64) -> Result<bool, String> {
    let response = shared
        .request(
            || "reading the agent's lease".to_owned(),
            |mut client| async move { client.lease_time_to_live(lease, None).await },
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.ttl() > 0)
}

/// A linearizable read that needs a leader: etcd works, not just answers.
async fn probe(shared: &Shared) -> Result<(), String> {
    let key = shared.keys.desired_dir();
    shared
        .request(
            || "checking that etcd answers".to_owned(),
            |mut client| async move {
                client
                    .get(key, Some(GetOptions::new().with_prefix().with_count_only()))
                    .await
            },
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl EtcdStore {
    /// Publishes the status of `unit` (`<runtime>/<this agent>`) under the
    /// agent's lease, replacing the last one. The store remembers it: if
    /// etcd cannot be reached now ([`Error::Unavailable`]), or the lease
    /// is lost later, it is published again by itself once etcd answers.
    pub async fn publish_unit(&self, unit: &str, status: Vec<u8>) -> Result<(), Error> {
        let shared = self.shared();
        let key = shared.keys.own_unit(unit)?;
        let operation = format!("publishing unit {unit}");
        shared.put_owned(operation, key, status).await
    }

    /// Removes `unit` (`<runtime>/<this agent>`) from the fleet. Remembered
    /// like [`publish_unit`](Self::publish_unit): a delete etcd did not
    /// confirm is retried after reconnecting.
    pub async fn remove_unit(&self, unit: &str) -> Result<(), Error> {
        let shared = self.shared();
        let key = shared.keys.own_unit(unit)?;
        shared
            .delete_owned(format!("removing unit {unit}"), key)
            .await
    }

    /// Every unit of the fleet with its status, sorted by name, and when
    /// its agent was last seen.
    pub async fn units(&self) -> Result<Vec<UnitRecord>, Error> {
        let (_, entries) = self.list_prefix(UNITS_DIR).await?;
        let mut units = Vec::new();
        // The lease of each unit, by index: etcd tells when the agent last
        // kept it alive.
        let mut leases = Vec::new();
        for (name, kv) in entries {
            let Some((runtime, agent)) = split_unit(&name) else {
                debug!(key = %name, "skipping a key under units/ that is not <runtime>/<agent>");
                continue;
            };
            leases.push(kv.lease());
            units.push(UnitRecord {
                runtime: runtime.to_owned(),
                agent: agent.to_owned(),
                unit: name.clone(),
                status: kv.value().to_vec(),
                revision: kv.mod_revision(),
                last_seen: None,
            });
        }
        let distinct: BTreeSet<i64> = leases.iter().copied().filter(|l| *l != 0).collect();
        let shared = self.shared();
        let seen = join_all(distinct.iter().map(|&lease| async move {
            let response = shared
                .request(
                    || format!("reading lease {lease:x}"),
                    |mut client| async move { client.lease_time_to_live(lease, None).await },
                )
                .await
                .ok()?;
            let since_keep_alive = response.granted_ttl().checked_sub(response.ttl())?;
            let since = Duration::from_secs(u64::try_from(since_keep_alive).ok()?);
            (response.ttl() > 0).then(|| (lease, SystemTime::now() - since))
        }))
        .await;
        let seen: BTreeMap<i64, SystemTime> = seen.into_iter().flatten().collect();
        for (unit, lease) in units.iter_mut().zip(leases) {
            unit.last_seen = seen.get(&lease).copied();
        }
        Ok(units)
    }

    /// A watch of every unit of the fleet: keys are unit names, values
    /// their status; its first change lists them all (see
    /// [`watch_prefix`](Self::watch_prefix)).
    pub fn watch_units(&self) -> QueueWatcher<KeyChanges> {
        self.watch_prefix(UNITS_DIR)
    }

    /// Sets `unit`'s settings in `relation` (`unit` is
    /// `<runtime>/<this agent>`), under the agent's lease: they leave with
    /// the agent. Remembered and re-published like
    /// [`publish_unit`](Self::publish_unit).
    pub async fn set_relation_settings(
        &self,
        relation: &str,
        unit: &str,
        settings: Vec<u8>,
    ) -> Result<(), Error> {
        let shared = self.shared();
        let key = shared.keys.own_relation_unit(relation, unit)?;
        let operation = format!("writing {unit}'s settings in relation {relation}");
        shared.put_owned(operation, key, settings).await
    }

    /// Removes `unit`'s settings from `relation` (the unit leaves it).
    pub async fn remove_relation_settings(&self, relation: &str, unit: &str) -> Result<(), Error> {
        let shared = self.shared();
        let key = shared.keys.own_relation_unit(relation, unit)?;
        let operation = format!("removing {unit}'s settings from relation {relation}");
        shared.delete_owned(operation, key).await
    }

    /// The settings of any `unit` in `relation`, if it is a member.
    pub async fn relation_settings(
        &self,
        relation: &str,
        unit: &str,
    ) -> Result<Option<Vec<u8>>, Error> {
        let shared = self.shared();
        let key = shared.keys.relation_unit(relation, unit)?;
        let response = shared
            .request(
                || format!("reading {unit}'s settings in relation {relation}"),
                |mut client| async move { client.get(key, None).await },
            )
            .await?;
        Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Every member of `relation` with its settings, by unit, at one
    /// revision (returned with them).
    pub async fn relation_members(
        &self,
        relation: &str,
    ) -> Result<(i64, BTreeMap<String, Vec<u8>>), Error> {
        let shared = self.shared();
        let dir = shared.keys.relation_dir(relation)?;
        let (revision, entries) = self.list_prefix(&dir).await?;
        Ok((
            revision,
            entries
                .into_iter()
                .map(|(unit, kv)| (unit, kv.value().to_vec()))
                .collect(),
        ))
    }

    /// A watch of `relation`'s members: keys are unit names, values their
    /// settings; its first change is the whole membership, then the latest
    /// event per unit ([`KeyChanges`]; a unit that left and joined again
    /// has a new `create_revision`).
    pub fn watch_relation(&self, relation: &str) -> Result<QueueWatcher<KeyChanges>, Error> {
        let shared = self.shared();
        let dir = shared.keys.relation_dir(relation)?;
        Ok(self.watch_prefix(&dir))
    }
}
