//! The API's HTTP server: accepting connections and serving HTTP/1 on
//! them, with the limits a server exposed to slow, idle or hostile clients
//! needs (axum's `serve` has none of them):
//!
//! - **Header and idle timeout.** A request's head must arrive within
//!   [`ServerLimits::header_timeout`] of the connection starting to wait
//!   for it — which also closes keep-alive connections left idle that long.
//! - **A connection cap that evicts idle connections.** At most
//!   [`ServerLimits::max_connections`] connections are open; when a new one
//!   arrives at the cap, the connection idle the longest (not handling a
//!   request or streaming a response) is closed to make room, so a flood
//!   of half-open connections (a slowloris) cannot lock out real clients.
//!   Only when every connection is busy does accepting wait.
//! - **Accept errors are survived**: out of file descriptors, the loop
//!   backs off and tries again instead of spinning or stopping.
//! - **Prompt shutdown.** On stop, it stops accepting, asks each connection
//!   to finish (idle ones close at once), and after
//!   [`ServerLimits::shutdown_grace`] drops what is left, so a half-sent
//!   request cannot hold an agent's shutdown.
//!
//! This module must never look inside requests: routing, bodies and
//! errors are the router's.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

/// The limits of the API server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerLimits {
    /// How long a request's head may take to arrive (and a keep-alive
    /// connection may sit idle).
    pub(crate) header_timeout: Duration,
    /// The most connections open at once.
    pub(crate) max_connections: usize,
    /// How long connections get to finish after a stop.
    pub(crate) shutdown_grace: Duration,
}

impl ServerLimits {
    /// The defaults: 15 s for a request head, 5 s to finish at shutdown,
    /// and a connection cap that leaves most file descriptors to runtimes
    /// and hooks (a quarter of the soft limit, at least 16, at most 1024).
    pub(crate) fn for_fd_limit(open_files: u64) -> Self {
        let cap = (open_files / 4).clamp(16, 1024);
        Self {
            header_timeout: Duration::from_secs(15),
            max_connections: usize::try_from(cap).unwrap_or(1024),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What the server knows about one open connection.
#[derive(Debug)]
struct Entry {
    /// Requests being handled or responses being streamed on it.
    busy: Arc<AtomicUsize>,
    /// When it last became idle (or opened).
    idle_since: Arc<Mutex<Instant>>,
    /// Fired to drop it at once (it is idle: nothing is lost); a child of
    /// the server's stop token, which fires it too.
    evict: CancellationToken,
}

/// The open connections.
#[derive(Debug, Default)]
struct Connections {
    /// The connections that may be evicted (open and not evicted yet).
    open: Mutex<HashMap<u64, Entry>>,
    /// Connection tasks alive, each holding its socket.
    live: AtomicUsize,
    next_id: AtomicU64,
    /// Woken when a connection closes or becomes idle.
    changed: Notify,
}

impl Connections {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until a new connection may be accepted: below the cap, after
    /// closing the connection idle the longest if need be (and waiting
    /// until its socket is really closed, so the descriptors a flood of
    /// connections takes stay bounded).
    async fn room(&self, max: usize) {
        loop {
            let changed = self.changed.notified();
            if self.live.load(Ordering::SeqCst) < max {
                return;
            }
            {
                let mut open = self.open();
                let idlest = open
                    .iter()
                    .filter(|(_, entry)| entry.busy.load(Ordering::SeqCst) == 0)
                    .min_by_key(|(_, entry)| *lock(&entry.idle_since))
                    .map(|(id, _)| *id);
                if let Some(entry) = idlest.and_then(|id| open.remove(&id)) {
                    debug!("at the connection cap: closing the connection idle the longest");
                    entry.evict.cancel();
                }
            }
            changed.await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a request (and its response body) as activity of a connection.
struct BusyGuard {
    busy: Arc<AtomicUsize>,
    idle_since: Arc<Mutex<Instant>>,
    connections: Arc<Connections>,
}

impl BusyGuard {
    fn new(
        entry: (&Arc<AtomicUsize>, &Arc<Mutex<Instant>>),
        connections: &Arc<Connections>,
    ) -> Self {
        entry.0.fetch_add(1, Ordering::SeqCst);
        Self {
            busy: entry.0.clone(),
            idle_since: entry.1.clone(),
            connections: connections.clone(),
        }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if self.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            *lock(&self.idle_since) = Instant::now();
            self.connections.changed.notify_waiters();
        }
    }
}

/// A response body that keeps its connection busy until it is done (an
/// event stream is activity, not idleness).
struct TrackedBody {
    inner: Body,
    _busy: BusyGuard,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` on `listener` until `stop` fires; returns once every
/// connection is closed (at most the shutdown grace after `stop`).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    stop: CancellationToken,
) {
    let connections = Arc::new(Connections::default());
    let mut tasks = JoinSet::new();
    let mut accept_backoff = Duration::from_millis(10);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = connections.room(limits.max_connections) => {}
        }
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connection tasks as we go.
        while tasks.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => {
                accept_backoff = Duration::from_millis(10);
                stream
            }
            Err(error) => {
                // Out of descriptors (or memory): closing connections frees
                // some; spinning on the error would not.
                warn!(%error, retry_in = ?accept_backoff, "cannot accept a connection");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(accept_backoff) => {}
                }
                accept_backoff = (accept_backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let id = connections.next_id.fetch_add(1, Ordering::Relaxed);
        let busy = Arc::new(AtomicUsize::new(0));
        let idle_since = Arc::new(Mutex::new(Instant::now()));
        // One token per connection, fired by an eviction or by `stop`:
        // the connection's task polls it on every wake-up, and a token
        // that all connections shared would have both workers contend
        // for its lock on every request.
        let evict = stop.child_token();
        connections.live.fetch_add(1, Ordering::SeqCst);
        connections.open().insert(
            id,
            Entry {
                busy: busy.clone(),
                idle_since: idle_since.clone(),
                evict: evict.clone(),
            },
        );
        let service = {
            let (router, connections) = (router.clone(), connections.clone());
            router
                .map_request(|request: Request<Incoming>| request.map(Body::new))
                .map_response({
                    let connections = connections.clone();
                    let (busy, idle_since) = (busy.clone(), idle_since.clone());
                    move |response: Response| {
                        // The request's guard ends when the handler answered;
                        // the body's lasts as long as the body streams.
                        let guard = BusyGuard::new((&busy, &idle_since), &connections);
                        response.map(|inner| {
                            Body::new(TrackedBody {
                                inner,
                                _busy: guard,
                            })
                        })
                    }
                })
        };
        let request_guard = {
            let (busy, idle_since, connections) =
                (busy.clone(), idle_since.clone(), connections.clone());
            move || BusyGuard::new((&busy, &idle_since), &connections)
        };
        let service = tower::service_fn(move |request: Request<Incoming>| {
            let guard = request_guard();
            let service = service.clone();
            async move {
                let response = service.oneshot(request).await;
                drop(guard);
                response
            }
        });
        let connections = connections.clone();
        let grace = limits.shutdown_grace;
        let header_timeout = limits.header_timeout;
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            // Boxed so that it can be dropped (closing the socket) before
            // the slot is counted free.
            let mut connection = Box::pin(
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)),
            );
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        debug!(%error, "connection ended with an error");
                    }
                }
                () = evict.cancelled() => {
                    // Stopping: finish what is in flight (an idle
                    // connection closes at once), within the grace.
                    // Otherwise idle and in the way of a new connection:
                    // dropped.
                    if stop.is_cancelled() {
                        connection.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(grace, connection.as_mut()).await;
                    }
                }
            }
            drop(connection);
            connections.open().remove(&id);
            connections.live.fetch_sub(1, Ordering::SeqCst);
            connections.changed.notify_waiters();
        });
    }
    drop(listener);
    // Every connection saw `stop` and is finishing: wait for them, bounded.
    let deadline = Instant::now() + limits.shutdown_grace + Duration::from_secs(1);
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                warn!(
                    left = tasks.len(),
                    "connections still open after the shutdown grace; closing them"
                );
                tasks.abort_all();
                break;
            }
        }
    }
}
