//! Liveness: whether a serving runtime still answers. The host pings it
//! on an interval; a run of unanswered pings means it is hung (stopped by
//! a signal, deadlocked, its event loop blocked), and the supervisor kills
//! and restarts it like a crash. This module only watches and decides; it
//! must never signal or kill a process (the supervisor does, with the
//! whole process group).

use std::time::Duration;

use steward_protocol::{Body, Connection};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::warn;

/// How the host checks that a serving runtime still answers: a
/// `RuntimePing` every `interval`; a ping not answered within `timeout`
/// is a miss; `failures` misses in a row and the runtime is hung (killed
/// and restarted, reported as [`ExitReason::Hung`](crate::ExitReason::Hung)).
///
/// Any answer counts, an error too: a runtime refusing a ping as "busy"
/// is busy, not hung. Pings never wait behind calls on the runtime's side
/// (the protocol serves them without a free slot), so a runtime whose
/// calls are slow is not killed as long as its event loop runs. Pings go
/// one at a time: when `timeout` exceeds `interval`, the next ping follows
/// the previous one's answer or miss. A hung runtime is therefore killed
/// within about `interval + failures × max(interval, timeout)` of its last
/// answer (20 s with the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Time between pings. Default 5 s.
    pub interval: Duration,
    /// How long a ping may wait for its answer. Default 5 s.
    pub timeout: Duration,
    /// Unanswered pings in a row that make the runtime hung. Default 3;
    /// 0 turns liveness off.
    pub failures: u32,
}

impl Default for Liveness {
    /// A ping every 5 s, 5 s to answer, hung after 3 misses: a runtime has
    /// to be unresponsive for 15 s straight, far beyond a pause for garbage
    /// collection or a loaded machine, and a hung one is replaced within
    /// about 20 s; a ping every 5 s costs nothing worth measuring.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            failures: 3,
        }
    }
}

impl Liveness {
    /// No pings at all: a runtime is never found hung.
    pub const fn off() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            failures: 0,
        }
    }

    /// True when no pings are sent (`failures` or `interval` is zero).
    pub fn is_off(&self) -> bool {
        self.failures == 0 || self.interval.is_zero()
    }
}

/// Pings the runtime over `connection` until `liveness.failures` pings in
/// a row went unanswered, and returns how many that was. Never returns
/// while the runtime answers, when liveness is off, or once the connection
/// closed (the supervisor notices that by itself). Cancel safe.
pub(super) async fn hung(connection: &Connection, liveness: &Liveness) -> u32 {
    if liveness.is_off() {
        return std::future::pending().await;
    }
    let mut ticks = tokio::time::interval_at(Instant::now() + liveness.interval, liveness.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut missed = 0;
    loop {
        ticks.tick().await;
        let ping = tokio::time::timeout(liveness.timeout, connection.call(Body::RuntimePing));
        match ping.await {
            Err(_) => {
                missed += 1;
                warn!(
                    missed,
                    of = liveness.failures,
                    within = %humantime::format_duration(liveness.timeout),
                    "runtime did not answer a ping in time"
                );
                if missed >= liveness.failures {
                    return missed;
                }
            }
            Ok(Err(steward_protocol::Error::ConnectionClosed { .. })) => {
                return std::future::pending().await;
            }
            // Whatever the answer, the runtime's event loop runs.
            Ok(_) => missed = 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use steward_protocol::{ErrorBody, Handler, Limits, Peer};

    use super::*;

    /// Answers pings while `answering`, else never; counts pings seen.
    struct Pings {
        answering: Arc<AtomicBool>,
        seen: Arc<AtomicU32>,
        refuse: bool,
    }

    impl Handler for Pings {
        async fn handle(&self, _request: Body, _peer: &Peer) -> Body {
            self.seen.fetch_add(1, Ordering::SeqCst);
            if !self.answering.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.refuse {
                Body::Error(ErrorBody::new("protocol", ErrorBody::CODE_BUSY, "busy"))
            } else {
                Body::Empty
            }
        }
    }

    fn runtime(refuse: bool) -> (Connection, Connection, Arc<AtomicBool>, Arc<AtomicU32>) {
        let (answering, seen) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
        let (host_end, runtime_end) = tokio::io::duplex(64 * 1024);
        let (read, write) = tokio::io::split(host_end);
        let host = Connection::start(read, write, steward_protocol::NoRequests, Limits::default());
        let (read, write) = tokio::io::split(runtime_end);
        let handler = Pings {
            answering: answering.clone(),
            seen: seen.clone(),
            refuse,
        };
        let runtime = Connection::start(read, write, handler, Limits::default());
        (host, runtime, answering, seen)
    }

    const TEST: Liveness = Liveness {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        failures: 3,
    };

    /// A runtime that stops answering is hung after `failures` misses in a
    /// row, within `interval + failures × timeout` (virtual time).
    #[tokio::test(start_paused = true)]
    async fn a_runtime_that_stops_answering_is_hung_after_the_misses() {
        let (host, _runtime, answering, seen) = runtime(false);
        let watch = hung(&host, &TEST);
        tokio::pin!(watch);
        // Answering for a while: nothing is decided.
        let quiet = tokio::time::timeout(Duration::from_secs(10), &mut watch).await;
        assert!(quiet.is_err(), "an answering runtime is not hung");
        assert!(seen.load(Ordering::SeqCst) >= 9, "a ping a second");

        answering.store(false, Ordering::SeqCst);
        let began = Instant::now();
        assert_eq!(watch.await, 3);
        let took = began.elapsed();
        assert!(
            took <= TEST.interval + TEST.timeout * 3,
            "hung after {took:?}"
        );
        assert!(took >= TEST.timeout * 3, "hung after {took:?}");
    }

    /// A refusal ("busy") is an answer: the runtime is alive.
    #[tokio::test(start_paused = true)]
    async fn a_refused_ping_counts_as_alive() {
        let (host, _runtime, _answering, seen) = runtime(true);
        let quiet = tokio::time::timeout(Duration::from_secs(60), hung(&host, &TEST)).await;
        assert!(
            quiet.is_err(),
            "a runtime refusing pings as busy is not hung"
        );
        assert!(seen.load(Ordering::SeqCst) >= 50);
    }

    /// Off sends nothing and never decides.
    #[tokio::test(start_paused = true)]
    async fn off_never_pings() {
        let (host, _runtime, _answering, seen) = runtime(false);
        let quiet =
            tokio::time::timeout(Duration::from_secs(60), hung(&host, &Liveness::off())).await;
        assert!(quiet.is_err());
        assert_eq!(seen.load(Ordering::SeqCst), 0);
        assert!(Liveness::off().is_off());
        assert!(!Liveness::default().is_off());
    }
}
