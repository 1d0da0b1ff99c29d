//! [`Aggregate`]: one logical runtime made of several versions of it, one
//! active, switched while calls keep flowing (after Oasis Core's
//! `runtime/host/multi.Aggregate`).
//!
//! Calls go to the active version; a switch is a *transition* run under a
//! single async lock (transitions never overlap), while calls only read the
//! active version through a `watch` channel — so no call ever waits for a
//! transition, and no lock is held across an `.await` into a sub-runtime.
//!
//! The default transition is **make-before-break**: start the target, wait
//! until it serves, route new calls to it, let the old version's calls in
//! flight finish (bounded by a drain timeout), then stop the old version.
//! **Stop-then-start** (the order of Oasis Core's aggregate) stays
//! available for runtimes that must never run twice at once; calls
//! arriving in its gap wait for the new version within their deadline.
//! This module must never spawn processes itself: it only drives
//! `RuntimeHost`s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use steward_protocol::{Body, RuntimeInfoResponse};
use steward_worker::BoxFuture;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Aborted, Error, Event, RuntimeHost, StartError};

/// How a switch replaces the active version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransitionMode {
    /// Start the new version first, switch calls over, drain and stop the
    /// old one: no call fails because of a switch. The default.
    #[default]
    MakeBeforeBreak,
    /// Stop the old version first, then start the new one (the original
    /// order), for runtimes that must never run twice at once. Calls in the
    /// gap wait for the new version within their deadline.
    StopThenStart,
}

/// What `set_version` does with an unknown version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnknownVersion {
    /// Return `NoSuchVersion` and leave the active version serving. The
    /// default: a typo must not cause an outage.
    #[default]
    KeepActive,
    /// Return `NoSuchVersion` after stopping the active version (what the
    /// original aggregate does).
    StopActive,
}

/// Settings of an [`Aggregate`].
///
/// | setting | default |
/// |---|---|
/// | `mode` | make-before-break |
/// | `on_unknown_version` | keep the active version |
/// | `start_timeout` (target serving) | 30 s |
/// | `drain_timeout` (old version's calls in flight) | 10 s |
/// | `stop_timeout` (old version's `Stopped`) | 15 s |
/// | `call_wait` (a call waiting for an active version) | 30 s |
#[derive(Debug, Clone)]
pub struct AggregateConfig {
    /// The transition order.
    pub mode: TransitionMode,
    /// The answer to an unknown version.
    pub on_unknown_version: OnUnknownVersion,
    /// How long a switch waits for the target to serve.
    pub start_timeout: Duration,
    /// How long the old version's calls in flight may take to finish; the
    /// rest fail with [`Error::Drained`].
    pub drain_timeout: Duration,
    /// How long a switch waits for the old version to stop.
    pub stop_timeout: Duration,
    /// How long [`RuntimeHost::call`] waits for an active version before
    /// failing with [`Error::NoActiveVersion`]; see also
    /// [`Aggregate::call_within`].
    pub call_wait: Duration,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        Self {
            mode: TransitionMode::default(),
            on_unknown_version: OnUnknownVersion::default(),
            start_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(15),
            call_wait: Duration::from_secs(30),
        }
    }
}

/// The version calls go to, with the bookkeeping of its calls in flight.
#[derive(Clone)]
struct Active {
    version: Arc<str>,
    host: Arc<dyn RuntimeHost>,
    calls: Arc<InFlight>,
}

#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
    /// Fired when the drain timeout runs out: the remaining calls give up.
    abandoned: CancellationToken,
}

/// Counts a call in flight for as long as it lives.
struct CallGuard(Arc<InFlight>);

impl CallGuard {
    fn new(calls: &Arc<InFlight>) -> Self {
        calls.count.fetch_add(1, Ordering::SeqCst);
        Self(calls.clone())
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The active version, if any, with a call counted in flight on it.
///
/// Takes the watch's borrow, not a copy: counted while the borrow blocks a
/// switch, a drain that starts after the switch can never miss the call.
fn counted(active: &Option<Active>) -> Option<(Active, CallGuard)> {
    let current = active.as_ref()?;
    let guard = CallGuard::new(&current.calls);
    Some((current.clone(), guard))
}

/// Several versions of one runtime, one of them active.
///
/// A cheap handle; clones share everything.
///
/// Calls go to the active version. A switch ([`set_version`](Self::set_version))
/// runs under one async lock, so switches never overlap, while calls only
/// read the active version — no call waits for a switch, and no lock is
/// held across an `.await` into a sub-runtime.
///
/// - **Make-before-break** (the default): start the target, wait until it
///   serves, route new calls to it, let the old version's calls in flight
///   finish (bounded by `drain_timeout`, then they fail with
///   [`Error::Drained`]), stop the old version. No call fails because of a
///   switch.
/// - **Stop-then-start** (the original order, for runtimes that must never
///   run twice at once): stop the old version, start the new one; calls in
///   the gap wait for the new version within their deadline.
///
/// Subscribers of [`watch_events`](RuntimeHost::watch_events) see the
/// active version's events (each carries its version), the target's while
/// it starts, and the old version's final `Stopped`.
#[derive(Clone)]
pub struct Aggregate {
    shared: Arc<Shared>,
}

struct Shared {
    id: Arc<str>,
    config: AggregateConfig,
    versions: Mutex<BTreeMap<Arc<str>, Version>>,
    active: watch::Sender<Option<Active>>,
    /// Whose events reach subscribers, and which versions were
    /// pre-warmed.
    routing: Mutex<Routing>,
    /// Woken when a forwarder drops a retired version from `forwarded`.
    retired: Notify,
    events: broadcast::Sender<Event>,
    /// Transitions run one at a time; a second `set_version` waits its turn.
    transition: tokio::sync::Mutex<()>,
}

/// Which versions' events reach subscribers, and which were pre-warmed:
/// one lock, so that activation moves a version from one to the other at
/// once.
#[derive(Debug, Default)]
struct Routing {
    /// The active version, a target while it starts, and a version being
    /// switched away from until its final `Stopped` has been forwarded
    /// (the forwarder removes it then). Decided before events happen, so
    /// no event races the decision.
    forwarded: BTreeSet<Arc<str>>,
    /// Versions started by `set_next_version`: their `Started` went
    /// unforwarded, so activation announces them.
    prewarmed: BTreeSet<Arc<str>>,
}

struct Version {
    host: Arc<dyn RuntimeHost>,
    forwarder: JoinHandle<()>,
}

impl Drop for Version {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

const EVENT_BUFFER: usize = 256;

/// How long a switch waits for abandoned calls to answer and for the old
/// version's final `Stopped` to be forwarded.
const FORWARD_WAIT: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregate")
            .field("id", &self.shared.id)
            .field("versions", &self.versions())
            .field("active", &self.active_version())
            .finish_non_exhaustive()
    }
}

impl Aggregate {
    /// An aggregate of `versions` (at least one; every sub-runtime must have
    /// the id `id`). Subscribes to every version's events; starts nothing;
    /// no version is active until [`set_version`](Self::set_version).
    pub fn new<I, V>(
        id: impl Into<Arc<str>>,
        versions: I,
        config: AggregateConfig,
    ) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (V, Arc<dyn RuntimeHost>)>,
        V: Into<Arc<str>>,
    {
        let (active, _) = watch::channel(None);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let aggregate = Self {
            shared: Arc::new(Shared {
                id: id.into(),
                config,
                versions: Mutex::new(BTreeMap::new()),
                active,
                routing: Mutex::new(Routing::default()),
                retired: Notify::new(),
                events,
                transition: tokio::sync::Mutex::new(()),
            }),
        };
        for (version, host) in versions {
            aggregate.add_version(version, host)?;
        }
        if aggregate.versions().is_empty() {
            return Err(Error::NoVersions {
                runtime: aggregate.shared.id.clone(),
            });
        }
        Ok(aggregate)
    }

    /// Adds a version. Fails if the id differs or the version exists.
    pub fn add_version(
        &self,
        version: impl Into<Arc<str>>,
        host: Arc<dyn RuntimeHost>,
    ) -> Result<(), Error> {
        let version = version.into();
        if host.id() != &*self.shared.id {
            return Err(Error::IdMismatch {
                aggregate: self.shared.id.clone(),
                version,
                runtime: host.id().to_owned(),
            });
        }
        let mut versions = self.shared.versions();
        if versions.contains_key(&version) {
            return Err(Error::VersionExists {
                runtime: self.shared.id.clone(),
                version,
            });
        }
        let forwarder = tokio::spawn(forward_events(
            Arc::downgrade(&self.shared),
            version.clone(),
            host.watch_events(),
        ));
        versions.insert(version, Version { host, forwarder });
        Ok(())
    }

    /// Removes a version and stops it. The active version cannot be
    /// removed: switch away from it first.
    pub async fn remove_version(&self, version: &str) -> Result<(), Error> {
        let _turn = self.shared.transition.lock().await;
        if self.active_version().as_deref() == Some(version) {
            return Err(Error::VersionActive {
                runtime: self.shared.id.clone(),
                version: Arc::from(version),
            });
        }
        let removed = self.shared.versions().remove(version);
        let Some(removed) = removed else {
            return Err(self.no_such_version(version));
        };
        bounded_stop(&removed.host, self.shared.config.stop_timeout).await;
        Ok(())
    }

    /// The versions, sorted.
    pub fn versions(&self) -> Vec<String> {
        self.shared
            .versions()
            .keys()
            .map(|v| v.to_string())
            .collect()
    }

    /// The process serving `version`, if one does (`None` too for an
    /// unknown version).
    pub fn process(&self, version: &str) -> Option<crate::ProcessInfo> {
        let host = self.shared.versions().get(version)?.host.clone();
        host.process()
    }

    /// The active version, if any.
    pub fn active_version(&self) -> Option<String> {
        self.shared
            .active
            .borrow()
            .as_ref()
            .map(|active| active.version.to_string())
    }

    /// Makes `version` the active one (see [`Aggregate`] for the two modes).
    ///
    /// Nothing happens if it is already active. An unknown version gives
    /// [`Error::NoSuchVersion`] (see [`OnUnknownVersion`]). If the target
    /// fails to start, the previous version stays active (make-before-break)
    /// or is started again (stop-then-start), and the start error is
    /// returned. Transitions never overlap: a second call waits its turn.
    pub async fn set_version(&self, version: &str) -> Result<(), Error> {
        let _turn = self.shared.transition.lock().await;
        let current = self.shared.active.borrow().clone();
        if current
            .as_ref()
            .is_some_and(|active| &*active.version == version)
        {
            return Ok(());
        }
        let Some(next) = self.candidate(version) else {
            if self.shared.config.on_unknown_version == OnUnknownVersion::StopActive
                && let Some(current) = current
            {
                warn!(runtime = %self.shared.id, version, "unknown version: stopping the active one, as configured");
                self.shared.active.send_replace(None);
                self.retire(current).await;
            }
            return Err(self.no_such_version(version));
        };
        info!(runtime = %self.shared.id, from = ?current.as_ref().map(|a| &a.version), to = %next.version, mode = ?self.shared.config.mode, "switching version");
        match (self.shared.config.mode, current) {
            (_, None) => {
                let info = self.start_serving(&next, true).await?;
                self.activate(next, info);
            }
            (TransitionMode::MakeBeforeBreak, Some(current)) => {
                let info = self.start_serving(&next, true).await?;
                self.activate(next, info);
                self.retire(current).await;
            }
            (TransitionMode::StopThenStart, Some(current)) => {
                self.shared.active.send_replace(None);
                self.retire(current.clone()).await;
                match self.start_serving(&next, true).await {
                    Ok(info) => self.activate(next, info),
                    Err(error) => {
                        warn!(runtime = %self.shared.id, %error, version = %current.version, "new version failed to start; restarting the previous one");
                        let previous = Active {
                            calls: Arc::new(InFlight::default()),
                            ..current
                        };
                        if let Ok(info) = self.start_serving(&previous, true).await {
                            self.activate(previous, info);
                        }
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }

    /// Routes new calls to `next`; announces it if it was pre-warmed (its
    /// own `Started` was not forwarded then).
    fn activate(&self, next: Active, info: RuntimeInfoResponse) {
        let version = next.version.clone();
        let prewarmed = {
            let mut routing = self.shared.routing();
            routing.forwarded.insert(version.clone());
            routing.prewarmed.remove(&version)
        };
        self.shared.active.send_replace(Some(next));
        if prewarmed {
            let _ = self.shared.events.send(Event::Started { version, info });
        }
    }

    /// Starts `version` ahead of time without making it active, so that a
    /// later [`set_version`](Self::set_version) to it is instant. Waits for
    /// a transition in progress. Its events are not forwarded until it
    /// becomes active (then its `Started` is announced).
    pub async fn set_next_version(&self, version: &str) -> Result<(), Error> {
        let _turn = self.shared.transition.lock().await;
        if self.active_version().as_deref() == Some(version) {
            return Ok(());
        }
        let Some(next) = self.candidate(version) else {
            return Err(self.no_such_version(version));
        };
        self.start_serving(&next, false).await?;
        self.shared.routing().prewarmed.insert(next.version);
        Ok(())
    }

    /// Like [`RuntimeHost::call`], waiting at most `wait` for a version to
    /// become active.
    pub async fn call_within(&self, body: Body, wait: Duration) -> Result<Body, Error> {
        let (active, guard) = self.wait_active(wait).await?;
        let drained = || Error::Drained {
            runtime: self.shared.id.clone(),
            version: active.version.clone(),
        };
        // The call is polled first, so that the abandonment's wait (a lock
        // of the token every call of the version shares, and one of its
        // `Notify`, per poll) is set up only while the call is pending, and
        // never polled again once the answer is in. (Borrowed, not cloned:
        // a clone and its drop would take that lock too.)
        let result = tokio::select! {
            biased;
            result = active.host.call(body) => result,
            () = active.calls.abandoned.cancelled() => Err(drained()),
        };
        drop(guard);
        // Once abandoned, a failure is "drained", even if the stopping
        // sub-runtime failed the call first; an answer that made it is
        // still the answer.
        match result {
            Err(_) if active.calls.abandoned.is_cancelled() => Err(drained()),
            result => result,
        }
    }

    /// The active version, waiting up to `wait` for one, with the call
    /// already counted in flight on it.
    async fn wait_active(&self, wait: Duration) -> Result<(Active, CallGuard), Error> {
        // Nearly always a version is active: take it without the
        // subscription and the timer (a clock read and a runtime handle
        // per call) that only waiting needs.
        if let Some(found) = counted(&self.shared.active.borrow()) {
            return Ok(found);
        }
        let mut active = self.shared.active.subscribe();
        let found = tokio::time::timeout(wait, async {
            loop {
                if let Some(found) = counted(&active.borrow_and_update()) {
                    return Some(found);
                }
                if active.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match found {
            Ok(Some(found)) => Ok(found),
            _ => Err(Error::NoActiveVersion {
                runtime: self.shared.id.clone(),
            }),
        }
    }

    /// Starts `next` and waits until it serves or fails to start. With
    /// `forward`, its events (its `Started`, or why it failed) reach
    /// subscribers from the start.
    async fn start_serving(
        &self,
        next: &Active,
        forward: bool,
    ) -> Result<RuntimeInfoResponse, Error> {
        // A forwarded start learns of a failure from the aggregate's own
        // stream, i.e. only once subscribers got the `FailedToStart` too:
        // the version leaves the forwarded set below, and doing that
        // before the forwarder relayed the event would lose it.
        let mut events = if forward {
            self.shared.routing().forwarded.insert(next.version.clone());
            self.shared.events.subscribe()
        } else {
            next.host.watch_events()
        };
        next.host.start()?;
        let failed = async {
            loop {
                match events.recv().await {
                    Ok(Event::FailedToStart { version, error }) if version == next.version => {
                        return error;
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return StartError::HostGone,
                }
            }
        };
        let outcome = tokio::time::timeout(self.shared.config.start_timeout, async {
            tokio::select! {
                info = next.host.info() => info,
                error = failed => Err(Error::FailedToStart {
                    runtime: self.shared.id.clone(),
                    version: next.version.clone(),
                    reason: error,
                }),
            }
        })
        .await;
        let result = outcome.unwrap_or_else(|_| {
            Err(Error::FailedToStart {
                runtime: self.shared.id.clone(),
                version: next.version.clone(),
                reason: StartError::NotServing {
                    within: self.shared.config.start_timeout,
                },
            })
        });
        if result.is_err() {
            bounded_stop(&next.host, self.shared.config.stop_timeout).await;
            self.shared.routing().forwarded.remove(&next.version);
        }
        result
    }

    /// Drains the old version's calls (bounded), abandons the rest, stops
    /// it (bounded), and waits until its final `Stopped` was forwarded.
    async fn retire(&self, old: Active) {
        let all_done = || async {
            loop {
                let idle = old.calls.idle.notified();
                if old.calls.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(self.shared.config.drain_timeout, all_done())
            .await
            .is_err()
        {
            warn!(
                runtime = %self.shared.id,
                version = %old.version,
                left = old.calls.count.load(Ordering::SeqCst),
                "calls still running after the drain timeout; abandoning them"
            );
            old.calls.abandoned.cancel();
            // Let them answer "drained" before their runtime goes away.
            let _ = tokio::time::timeout(FORWARD_WAIT, all_done()).await;
        }
        bounded_stop(&old.host, self.shared.config.stop_timeout).await;
        // `stop` has returned, so its `Stopped` (if any) is on its way:
        // give the forwarder a moment to pass it on.
        let forwarded = tokio::time::timeout(FORWARD_WAIT, async {
            loop {
                let retired = self.shared.retired.notified();
                if !self.shared.routing().forwarded.contains(&old.version) {
                    return;
                }
                retired.await;
            }
        })
        .await;
        if forwarded.is_err() {
            self.shared.routing().forwarded.remove(&old.version);
        }
    }

    /// `version` as a (not yet active) switch target, if it exists.
    fn candidate(&self, version: &str) -> Option<Active> {
        let versions = self.shared.versions();
        let (version, entry) = versions.get_key_value(version)?;
        Some(Active {
            version: version.clone(),
            host: entry.host.clone(),
            calls: Arc::new(InFlight::default()),
        })
    }

    fn no_such_version(&self, version: &str) -> Error {
        Error::NoSuchVersion {
            runtime: self.shared.id.clone(),
            version: Arc::from(version),
            known: self.versions().join(", "),
        }
    }

    fn active(&self) -> Result<Active, Error> {
        self.shared
            .active
            .borrow()
            .clone()
            .ok_or_else(|| Error::NoActiveVersion {
                runtime: self.shared.id.clone(),
            })
    }
}

impl Shared {
    fn versions(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, Version>> {
        self.versions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn routing(&self) -> MutexGuard<'_, Routing> {
        self.routing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops `host`, giving up waiting after `timeout` (the sub-runtime keeps
/// stopping in the background).
async fn bounded_stop(host: &Arc<dyn RuntimeHost>, timeout: Duration) {
    if tokio::time::timeout(timeout, host.stop()).await.is_err() {
        warn!(
            runtime = host.id(),
            ?timeout,
            "sub-runtime did not stop in time"
        );
    }
}

/// Copies one version's events to the aggregate's subscribers while that
/// version is in the forwarded set; drops a retired version from the set
/// once its final `Stopped` went through.
async fn forward_events(
    shared: std::sync::Weak<Shared>,
    version: Arc<str>,
    mut events: broadcast::Receiver<Event>,
) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(%version, missed, "aggregate fell behind a version's events");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !shared.routing().forwarded.contains(&version) {
            continue;
        }
        let stopped = matches!(event, Event::Stopped { .. });
        // No subscriber is not an error.
        let _ = shared.events.send(event);
        let active = shared
            .active
            .borrow()
            .as_ref()
            .is_some_and(|a| a.version == version);
        if stopped && !active {
            shared.routing().forwarded.remove(&version);
            shared.retired.notify_waiters();
        }
    }
}

impl RuntimeHost for Aggregate {
    fn id(&self) -> &str {
        &self.shared.id
    }

    fn info(&self) -> BoxFuture<'_, Result<RuntimeInfoResponse, Error>> {
        Box::pin(async move { self.active()?.host.info().await })
    }

    fn call(&self, body: Body) -> BoxFuture<'_, Result<Body, Error>> {
        Box::pin(self.call_within(body, self.shared.config.call_wait))
    }

    fn watch_events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    fn start(&self) -> Result<(), Error> {
        match &*self.shared.active.borrow() {
            Some(active) => active.host.start(),
            None => Ok(()),
        }
    }

    fn abort(&self, force: bool) -> BoxFuture<'_, Result<Aborted, Error>> {
        Box::pin(async move { self.active()?.host.abort(force).await })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Not in the middle of a switch: it would stop the old version
            // and leave the new one running.
            let _turn = self.shared.transition.lock().await;
            let active = self.shared.active.borrow().clone();
            if let Some(active) = active {
                bounded_stop(&active.host, self.shared.config.stop_timeout).await;
            }
            // Then every other version: a pre-warmed one (`set_next_version`)
            // or a target whose switch was cancelled may still run, and
            // "stopped for good" must leave no process behind. Stopping a
            // version that never started returns at once.
            let others: Vec<_> = self
                .shared
                .versions()
                .values()
                .map(|version| version.host.clone())
                .collect();
            let stops = others.iter().map(|host| {
                let host = host.clone();
                let timeout = self.shared.config.stop_timeout;
                tokio::spawn(async move { bounded_stop(&host, timeout).await })
            });
            for stop in stops.collect::<Vec<_>>() {
                let _ = stop.await;
            }
        })
    }

    fn process(&self) -> Option<crate::ProcessInfo> {
        let active = self.shared.active.borrow().clone()?;
        active.host.process()
    }
}
