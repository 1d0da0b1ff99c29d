//! [`EtcdStore`]: the connection to etcd, its request deadlines and error
//! classification, and the background tasks' lifetime (they end when the
//! store is closed or its last handle dropped).
//!
//! Every request goes through [`Shared::request`]: a deadline, then a
//! verdict — etcd unreachable (reported to [`Health`], so an outage is
//! noticed by whichever request meets it first) or etcd refusing. This
//! module must never block on etcd without a deadline.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};
use steward_worker::{Backoff, QueueWatcher, change_queue};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::desired::DesiredRegistry;
use crate::follow::Follower;
use crate::health::Health;
use crate::keys::Keys;
use crate::presence::Presence;
use crate::{Error, EtcdOptions, FleetHealth, KeyChanges};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What everything of one store shares: the client, the health, the
/// watchers of desired state and the presence this agent owns.
pub(crate) struct Shared {
    pub(crate) options: EtcdOptions,
    pub(crate) keys: Keys,
    client: RwLock<Client>,
    pub(crate) health: Health,
    /// Cancelled when the store is closed or dropped: every task ends.
    pub(crate) stop: CancellationToken,
    pub(crate) desired: Mutex<DesiredRegistry>,
    pub(crate) presence: tokio::sync::Mutex<Presence>,
    /// The current lease, for reading without the presence lock (0: none).
    pub(crate) lease_id: AtomicI64,
    /// Wakes the maintenance task early (a lease found lost).
    pub(crate) wake: Notify,
}

/// The client's connection options. HTTP/2 keep-alive pings close a
/// connection whose peer went silent (a host gone without a reset); they
/// stay at 10 s because etcd answers pings more often than every 5 s
/// (`--grpc-keepalive-min-time`) by closing the connection. Fast outage
/// detection comes from the request deadlines and the probe instead.
fn connect_options(options: &EtcdOptions) -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(options.request_timeout)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_keep_alive_while_idle(false)
}

/// Whether an etcd client error means "etcd cannot be reached now"
/// (retrying later may work), as opposed to etcd refusing the request.
pub(crate) fn is_unreachable(error: &etcd_client::Error) -> bool {
    use tonic::Code;
    match error {
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Unknown
                | Code::Aborted
                | Code::Internal
        ),
        etcd_client::Error::TransportError(_)
        | etcd_client::Error::IoError(_)
        | etcd_client::Error::WatchError(_)
        | etcd_client::Error::LeaseKeepAliveError(_) => true,
        _ => false,
    }
}

/// Whether an etcd client error says the lease a write named is gone.
pub(crate) fn is_lease_not_found(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status) if status.code() == tonic::Code::NotFound)
}

impl Shared {
    pub(crate) fn client(&self) -> Client {
        self.client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the client with a new one (new connections): after an
    /// outage, so that no request waits behind a connection that died
    /// silently.
    pub(crate) async fn reconnect_client(&self) -> Result<(), String> {
        let connect = Client::connect(
            &self.options.endpoints,
            Some(connect_options(&self.options)),
        );
        match tokio::time::timeout(self.options.request_timeout, connect).await {
            Ok(Ok(client)) => {
                *self.client.write().unwrap_or_else(PoisonError::into_inner) = client;
                Ok(())
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(self.no_answer()),
        }
    }

    pub(crate) fn no_answer(&self) -> String {
        format!("no answer within {:?}", self.options.request_timeout)
    }

    /// The backoff between reconnection attempts.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(self.options.reconnect_initial)
            .max(self.options.reconnect_max)
            .jitter(0.2)
    }

    /// Runs one request with the deadline; fails with [`Error::Closed`]
    /// once the store is closed.
    pub(crate) async fn request<T, F>(
        &self,
        operation: impl Fn() -> String,
        call: impl FnOnce(Client) -> F,
    ) -> Result<T, Error>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        if self.stop.is_cancelled() {
            return Err(Error::Closed {
                operation: operation(),
            });
        }
        self.request_anyway(operation, call).await
    }

    /// [`request`](Self::request), even on a closed store (its last
    /// request: revoking the lease).
    pub(crate) async fn request_anyway<T, F>(
        &self,
        operation: impl Fn() -> String,
        call: impl FnOnce(Client) -> F,
    ) -> Result<T, Error>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.options.request_timeout, call(self.client())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.failure(operation(), &error)),
            Err(_) => {
                let reason = self.no_answer();
                self.health.failed(&reason);
                Err(Error::Unavailable {
                    operation: operation(),
                    reason,
                })
            }
        }
    }

    /// The error for a failed request, reporting unreachability to health.
    pub(crate) fn failure(&self, operation: String, error: &etcd_client::Error) -> Error {
        let reason = error.to_string();
        if is_unreachable(error) {
            self.health.failed(&reason);
            Error::Unavailable { operation, reason }
        } else {
            Error::Rejected { operation, reason }
        }
    }

    /// Every key under `prefix` (absolute), relative to it, with its value,
    /// at one revision (a linearizable read); keys that are not UTF-8 are
    /// skipped.
    pub(crate) async fn list(
        &self,
        prefix: &str,
    ) -> Result<(i64, BTreeMap<String, etcd_client::KeyValue>), Error> {
        let key = prefix.to_owned();
        let mut response = self
            .request(
                || format!("listing {prefix}"),
                |mut client| async move {
                    client
                        .get(key, Some(GetOptions::new().with_prefix()))
                        .await
                },
            )
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let mut entries = BTreeMap::new();
        for kv in response.take_kvs() {
            match Keys::strip(kv.key(), prefix) {
                Some(rest) => {
                    entries.insert(rest.to_owned(), kv);
                }
                None => {
                    debug!(key = ?String::from_utf8_lossy(kv.key()), "skipping a key that is not UTF-8");
                }
            }
        }
        Ok((revision, entries))
    }

    /// Ends every task and watcher of the store.
    pub(crate) fn shutdown(&self) {
        self.stop.cancel();
        lock(&self.desired).close();
    }
}

/// The fleet's shared state in etcd, for one agent: desired versions
/// (implementing [`DesiredState`](steward_store::DesiredState)), the
/// agent's presence (its lease and its units' status), relation settings,
/// and watches of all of them. See the [crate docs](crate) for the key
/// layout and what happens in an outage.
///
/// Cheap to clone; all clones share one connection and one lease. Closing
/// ([`close`](Self::close)) revokes the lease, so the agent's units leave
/// the fleet at once; dropping the last clone without closing stops the
/// background work and lets the lease expire after its TTL (as a crash
/// would). Must be used inside a tokio runtime.
#[derive(Clone)]
pub struct EtcdStore {
    handle: Arc<Handle>,
}

/// Ends the background tasks when the last [`EtcdStore`] clone goes.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared();
        f.debug_struct("EtcdStore")
            .field("endpoints", &shared.options.endpoints)
            .field("prefix", &shared.options.prefix)
            .field("agent", &shared.options.agent)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd: makes the client, grants the agent's lease (its
    /// presence) and reads the desired state once, each within the request
    /// deadline; then starts the background work (keep-alive, health
    /// probe, the desired-state watch). Fails with [`Error::Connect`] if
    /// etcd does not answer, with nothing left running.
    pub async fn connect(options: EtcdOptions) -> Result<EtcdStore, Error> {
        options.validate()?;
        let endpoints = options.endpoint_list();
        let connect_error = |reason: String| Error::Connect {
            endpoints: endpoints.clone(),
            reason,
        };
        let connect = Client::connect(&options.endpoints, Some(connect_options(&options)));
        let client = match tokio::time::timeout(options.request_timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => return Err(connect_error(error.to_string())),
            Err(_) => {
                let reason = format!("no answer within {:?}", options.request_timeout);
                return Err(connect_error(reason));
            }
        };
        let keys = Keys::new(&options.prefix, &options.agent);
        let shared = Arc::new(Shared {
            health: Health::new(endpoints.clone()),
            keys,
            client: RwLock::new(client),
            options,
            stop: CancellationToken::new(),
            desired: Mutex::new(DesiredRegistry::default()),
            presence: tokio::sync::Mutex::new(Presence::default()),
            lease_id: AtomicI64::new(0),
            wake: Notify::new(),
        });
        let handle = Arc::new(Handle {
            shared: shared.clone(),
        });
        let reason = |error: Error| match error {
            Error::Unavailable { reason, .. } | Error::Rejected { reason, .. } => reason,
            other => other.to_string(),
        };

        let lease = shared
            .grant_lease()
            .await
            .map_err(|e| connect_error(reason(e)))?;
        shared.presence.lock().await.set_lease(&shared, Some(lease));
        let mut desired = Follower::new(shared.clone(), shared.keys.desired_dir());
        let (revision, initial) = desired.list().await.map_err(|e| connect_error(reason(e)))?;
        lock(&shared.desired).apply(revision, &initial);

        tokio::spawn(crate::desired::follow(shared.clone(), desired));
        tokio::spawn(crate::presence::maintain(shared.clone()));
        info!(
            endpoints = %endpoints,
            prefix = %shared.options.prefix,
            agent = %shared.options.agent,
            lease = %format_args!("{lease:x}"),
            "fleet: connected to etcd"
        );
        Ok(EtcdStore { handle })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// The options it was connected with.
    pub fn options(&self) -> &EtcdOptions {
        &self.shared().options
    }

    /// Whether etcd answers now.
    pub fn health(&self) -> FleetHealth {
        self.shared().health.get()
    }

    /// A notify watcher of [`health`](Self::health): one change at once,
    /// then one per transition (read `health` then).
    pub fn watch_health(&self) -> QueueWatcher<()> {
        self.shared().health.watch()
    }

    /// The agent's current lease (as `etcdctl lease timetolive` takes it,
    /// in hex), or `None` while a lost one is being granted anew.
    pub fn lease_id(&self) -> Option<i64> {
        match self.shared().lease_id.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    /// The name of the unit of `runtime` on this agent: `<runtime>/<agent>`.
    pub fn unit_name(&self, runtime: &str) -> String {
        format!("{runtime}/{}", self.shared().options.agent)
    }

    /// A watch of every key under `relative` (a prefix below the store's
    /// own, e.g. `units/`): its first change lists them all, then each
    /// change is the latest event per key (see [`KeyChanges`]). It resumes
    /// from the last revision it delivered after a disconnect, and lists
    /// again if that revision was compacted. It ends (cleanly) when the
    /// store is closed or dropped, never because etcd is away.
    pub fn watch_prefix(&self, relative: &str) -> QueueWatcher<KeyChanges> {
        let (sender, watcher) = change_queue();
        let shared = self.shared().clone();
        if shared.stop.is_cancelled() {
            let closed = Error::Closed {
                operation: format!("watching {relative}"),
            };
            sender.close(Err(steward_worker::Error::other(closed)));
            return watcher;
        }
        let prefix = shared.keys.absolute(relative);
        tokio::spawn(async move {
            let dying = sender.dying();
            tokio::select! {
                () = dying.cancelled() => {}
                () = crate::follow::follow_into(shared, prefix, &sender) => {}
            }
        });
        watcher
    }

    /// Every key under `relative` with its value, at one revision.
    pub(crate) async fn list_prefix(
        &self,
        relative: &str,
    ) -> Result<(i64, BTreeMap<String, etcd_client::KeyValue>), Error> {
        let shared = self.shared();
        shared.list(&shared.keys.absolute(relative)).await
    }

    /// Stops the background work, ends every watcher, and revokes the
    /// agent's lease, so its units and relation settings leave the fleet
    /// at once (not after the TTL). Idempotent. Fails, after stopping
    /// everything, if etcd did not confirm the revoke: the lease then
    /// expires after its TTL.
    pub async fn close(&self) -> Result<(), Error> {
        let shared = self.shared();
        if shared.stop.is_cancelled() {
            return Ok(());
        }
        shared.shutdown();
        let lease = shared.presence.lock().await.forget(shared);
        if let Some(id) = lease {
            shared
                .request_anyway(
                    || format!("revoking the agent's lease {id:x}"),
                    |mut client| async move { client.lease_revoke(id).await },
                )
                .await?;
            info!(lease = %format_args!("{id:x}"), "fleet: lease revoked; this agent's units left the fleet");
        }
        Ok(())
    }
}
