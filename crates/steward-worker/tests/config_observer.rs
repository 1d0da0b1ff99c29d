//! `wait_for_valid` and `ConfigObserver`: a port of Juju's
//! `worker/environ_test.go` (`WaitForEnviron`, `EnvironObserver`), with a
//! `WatchedValue<String>` as the raw configuration and a port number as
//! the valid one.
//!
//! Paused time on a current-thread runtime: the code under test only runs
//! while the test awaits, and every wait is bounded by [`within`].

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use steward_worker::{
    BoxFuture, ConfigObserver, Error, WatchedValue, Watcher, Worker, change_queue, wait_for_valid,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- helpers

/// Paused time: a wait that cannot finish fails at once instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the loader does when called.
#[derive(Clone, Copy)]
enum Load {
    /// Returns the raw value.
    Read,
    /// Fails with an I/O error with this message.
    Fail(&'static str),
    /// Never resolves.
    Hang,
}

/// The raw configuration, a loader over it that counts its calls and can
/// be scripted, a validator (a port number), and the log of both.
#[derive(Clone)]
struct Source {
    raw: WatchedValue<String>,
    mode: Arc<Mutex<Load>>,
    loads: Arc<AtomicUsize>,
    events: mpsc::UnboundedSender<String>,
}

/// The test's end of a [`Source`]'s log: "load", "valid 8080",
/// "invalid nope".
struct Events(mpsc::UnboundedReceiver<String>);

impl Events {
    async fn expect(&mut self, expected: &[&str]) {
        for want in expected {
            let got = within(want, self.0.recv()).await.expect("source alive");
            assert_eq!(got, *want);
        }
    }

    fn assert_none(&mut self) {
        if let Ok(event) = self.0.try_recv() {
            panic!("unexpected event {event:?}");
        }
    }
}

fn source(initial: &str) -> (Source, Events) {
    let (events, log) = mpsc::unbounded_channel();
    let source = Source {
        raw: WatchedValue::new(initial.to_owned()),
        mode: Arc::new(Mutex::new(Load::Read)),
        loads: Arc::new(AtomicUsize::new(0)),
        events,
    };
    (source, Events(log))
}

impl Source {
    fn set_mode(&self, mode: Load) {
        *lock(&self.mode) = mode;
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    fn loader(&self) -> impl FnMut() -> BoxFuture<'static, Result<String, Error>> + Send + 'static {
        let source = self.clone();
        move || {
            let source = source.clone();
            Box::pin(async move {
                source.loads.fetch_add(1, Ordering::SeqCst);
                let _ = source.events.send("load".into());
                let mode = *lock(&source.mode);
                match mode {
                    Load::Read => Ok(source.raw.get()),
                    Load::Fail(message) => Err(io::Error::other(message).into()),
                    Load::Hang => std::future::pending().await,
                }
            })
        }
    }

    fn validator(&self) -> impl FnMut(String) -> Result<u16, String> + Send + 'static {
        let events = self.events.clone();
        move |text: String| {
            let port = text
                .parse::<u16>()
                .map_err(|error| format!("bad port {text:?}: {error}"));
            let _ = events.send(match &port {
                Ok(port) => format!("valid {port}"),
                Err(_) => format!("invalid {text}"),
            });
            port
        }
    }
}

/// The message of a loader error (an `io::Error` inside `Error::Other`).
fn io_message(error: &Error) -> String {
    assert!(matches!(error, Error::Other(_)), "{error:?}");
    error
        .downcast_ref::<io::Error>()
        .expect("the loader's io::Error")
        .to_string()
}

async fn start_observer(
    source: &Source,
    cancel: &CancellationToken,
) -> Result<ConfigObserver<u16>, Error> {
    ConfigObserver::start(
        source.raw.watch(),
        source.loader(),
        source.validator(),
        cancel,
    )
    .await
}

/// Starts an observer on a source that is already valid.
async fn running_observer(source: &Source, events: &mut Events) -> ConfigObserver<u16> {
    let observer = within("start", start_observer(source, &CancellationToken::new()))
        .await
        .expect("a valid initial config");
    events
        .expect(&["load", &format!("valid {}", source.raw.get())])
        .await;
    observer
}

// ------------------------------------------------------------ wait_for_valid

/// Ports `environSuite.TestInvalidConfig`: invalid values are loaded,
/// rejected and skipped until a valid one arrives.
#[tokio::test(start_paused = true)]
async fn wait_for_valid_skips_invalid_values() {
    let (source, mut events) = source("nope");
    let waiter = tokio::spawn({
        let source = source.clone();
        async move {
            let mut watcher = source.raw.watch();
            let cancel = CancellationToken::new();
            wait_for_valid(&mut watcher, source.loader(), source.validator(), &cancel).await
        }
    });
    events.expect(&["load", "invalid nope"]).await;
    source.raw.set("99999".into());
    events.expect(&["load", "invalid 99999"]).await;
    assert!(!waiter.is_finished());
    source.raw.set("8080".into());
    events.expect(&["load", "valid 8080"]).await;
    let port = within("the waiter", waiter).await.unwrap();
    assert_eq!(port.unwrap(), 8080);
    assert_eq!(source.loads(), 3);
}

/// A loader (I/O) error is returned, not skipped.
#[tokio::test(start_paused = true)]
async fn wait_for_valid_returns_loader_error() {
    let (source, mut events) = source("8080");
    source.set_mode(Load::Fail("config unreadable"));
    let mut watcher = source.raw.watch();
    let cancel = CancellationToken::new();
    let result = within(
        "wait_for_valid",
        wait_for_valid(&mut watcher, source.loader(), source.validator(), &cancel),
    )
    .await;
    assert_eq!(io_message(&result.unwrap_err()), "config unreadable");
    events.expect(&["load"]).await;
    events.assert_none();
    assert_eq!(source.loads(), 1);
}

/// Ports `environSuite.TestStop`: cancelling while waiting for a change
/// returns `Error::Cancelled` at once.
#[tokio::test(start_paused = true)]
async fn wait_for_valid_is_cancelled_while_waiting_for_a_change() {
    let (source, mut events) = source("nope");
    let cancel = CancellationToken::new();
    let waiter = tokio::spawn({
        let (source, cancel) = (source.clone(), cancel.clone());
        async move {
            let mut watcher = source.raw.watch();
            wait_for_valid(&mut watcher, source.loader(), source.validator(), &cancel).await
        }
    });
    events.expect(&["load", "invalid nope"]).await;
    let cancelled_at = Instant::now();
    cancel.cancel();
    let result = within("the waiter", waiter).await.unwrap();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_eq!(cancelled_at.elapsed(), Duration::ZERO, "not prompt");
    assert_eq!(source.loads(), 1);
}

/// Ports `environSuite.TestStop` (cancelled during a load that never
/// finishes): `Error::Cancelled` at once.
#[tokio::test(start_paused = true)]
async fn wait_for_valid_is_cancelled_while_loading() {
    let (source, mut events) = source("8080");
    source.set_mode(Load::Hang);
    let cancel = CancellationToken::new();
    let waiter = tokio::spawn({
        let (source, cancel) = (source.clone(), cancel.clone());
        async move {
            let mut watcher = source.raw.watch();
            wait_for_valid(&mut watcher, source.loader(), source.validator(), &cancel).await
        }
    });
    events.expect(&["load"]).await;
    let cancelled_at = Instant::now();
    cancel.cancel();
    let result = within("the waiter", waiter).await.unwrap();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_eq!(cancelled_at.elapsed(), Duration::ZERO, "not prompt");
    assert_eq!(source.loads(), 1);
    events.assert_none();
}

/// A watcher that dies with an error: that error, without loading.
#[tokio::test(start_paused = true)]
async fn wait_for_valid_returns_watcher_error() {
    let (source, mut events) = source("8080");
    let (sender, mut watcher) = change_queue::<()>();
    sender.close(Err(Error::other(io::Error::other("watch broken"))));
    let result = within(
        "wait_for_valid",
        wait_for_valid(
            &mut watcher,
            source.loader(),
            source.validator(),
            &CancellationToken::new(),
        ),
    )
    .await;
    assert_eq!(io_message(&result.unwrap_err()), "watch broken");
    assert_eq!(source.loads(), 0);
    events.assert_none();
}

/// A watcher that ends cleanly after one invalid value:
/// `Error::WatcherStopped`.
#[tokio::test(start_paused = true)]
async fn wait_for_valid_returns_watcher_stopped() {
    let (source, mut events) = source("nope");
    let (sender, mut watcher) = change_queue::<()>();
    sender.send(());
    drop(sender);
    let result = within(
        "wait_for_valid",
        wait_for_valid(
            &mut watcher,
            source.loader(),
            source.validator(),
            &CancellationToken::new(),
        ),
    )
    .await;
    assert!(matches!(result, Err(Error::WatcherStopped)), "{result:?}");
    events.expect(&["load", "invalid nope"]).await;
    assert_eq!(source.loads(), 1);
}

// ------------------------------------------------------------ ConfigObserver

/// Ports `environSuite.TestInvalidConfig` for `NewEnvironObserver`:
/// `start` waits through invalid values and returns with the first valid
/// one current.
#[tokio::test(start_paused = true)]
async fn start_returns_first_valid_value() {
    let (source, mut events) = source("nope");
    let starting = tokio::spawn({
        let source = source.clone();
        async move { start_observer(&source, &CancellationToken::new()).await }
    });
    events.expect(&["load", "invalid nope"]).await;
    assert!(!starting.is_finished());
    source.raw.set("8080".into());
    let observer = within("start", starting).await.unwrap().unwrap();
    events.expect(&["load", "valid 8080"]).await;
    assert_eq!(*observer.current(), 8080);
    assert_eq!(source.loads(), 2);
    observer.kill();
    within("wait", observer.wait()).await.unwrap();
}

/// Ports `environSuite.TestEnvironmentChanges` (valid changes): every new
/// valid value becomes current and reaches subscribers.
#[tokio::test(start_paused = true)]
async fn subscribers_see_each_new_valid_value() {
    let (source, mut events) = source("8080");
    let observer = running_observer(&source, &mut events).await;
    let mut updates = observer.subscribe();
    let mut other = observer.subscribe();

    for (text, port) in [("9090", 9090), ("9091", 9091)] {
        source.raw.set(text.into());
        within("an update", updates.changed()).await.unwrap();
        assert_eq!(**updates.borrow_and_update(), port);
        assert_eq!(*observer.current(), port);
    }
    within("an update", other.changed()).await.unwrap();
    assert_eq!(**other.borrow_and_update(), 9091);
    assert!(!updates.has_changed().unwrap());
    events
        .expect(&["load", "valid 9090", "load", "valid 9091"])
        .await;

    observer.kill();
    within("wait", observer.wait()).await.unwrap();
}

/// Ports `environSuite.TestEnvironmentChanges` (invalid change): an
/// invalid value never replaces the valid one and is not announced; the
/// next valid one is.
#[tokio::test(start_paused = true)]
async fn invalid_update_keeps_current_value() {
    let (source, mut events) = source("8080");
    let observer = running_observer(&source, &mut events).await;
    let mut updates = observer.subscribe();

    source.raw.set("not a port".into());
    // The validator has run, and the observer cannot run again before we
    // look: it publishes right after validating, without awaiting.
    events.expect(&["load", "invalid not a port"]).await;
    assert_eq!(*observer.current(), 8080);
    assert!(
        !updates.has_changed().unwrap(),
        "an invalid value announced"
    );

    source.raw.set("9090".into());
    within("an update", updates.changed()).await.unwrap();
    assert_eq!(**updates.borrow_and_update(), 9090);
    assert_eq!(*observer.current(), 9090);
    events.expect(&["load", "valid 9090"]).await;

    observer.kill();
    within("wait", observer.wait()).await.unwrap();
}

/// A loader error after start stops the observer with that error; the
/// last valid value stays current.
#[tokio::test(start_paused = true)]
async fn loader_error_after_start_stops_observer() {
    let (source, mut events) = source("8080");
    let observer = running_observer(&source, &mut events).await;
    source.set_mode(Load::Fail("config unreadable"));
    source.raw.set("9090".into());
    let error = within("the observer to stop", observer.wait())
        .await
        .unwrap_err();
    assert_eq!(io_message(&error), "config unreadable");
    assert_eq!(*observer.current(), 8080);
    events.expect(&["load"]).await;
    events.assert_none();
}

/// Ports `EnvironObserver.Kill`/`Wait`: a killed observer ends Ok and
/// stops watching (no more loads).
#[tokio::test(start_paused = true)]
async fn kill_then_wait_is_ok() {
    let (source, mut events) = source("8080");
    let observer = running_observer(&source, &mut events).await;
    observer.kill();
    within("wait", observer.wait()).await.unwrap();
    source.raw.set("9090".into());
    assert_eq!(source.loads(), 1);
    assert_eq!(*observer.current(), 8080);
    events.assert_none();
}

/// A watcher ending after start stops the observer with
/// `Error::WatcherStopped`.
#[tokio::test(start_paused = true)]
async fn watcher_end_after_start_stops_observer() {
    let (source, mut events) = source("8080");
    let (sender, watcher) = change_queue::<()>();
    sender.send(());
    let observer = within(
        "start",
        ConfigObserver::start(
            watcher,
            source.loader(),
            source.validator(),
            &CancellationToken::new(),
        ),
    )
    .await
    .unwrap();
    events.expect(&["load", "valid 8080"]).await;
    drop(sender);
    let error = within("the observer to stop", observer.wait())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::WatcherStopped), "{error:?}");
    assert_eq!(*observer.current(), 8080);
}

/// Ports `environSuite.TestStop` for the observer: `start` cancelled while
/// waiting returns `Error::Cancelled` and stops its watcher.
#[tokio::test(start_paused = true)]
async fn start_cancelled_stops_watcher() {
    let (source, mut events) = source("nope");
    let (sender, watcher) = change_queue::<()>();
    sender.send(());
    let cancel = CancellationToken::new();
    let starting = tokio::spawn({
        let (source, cancel) = (source.clone(), cancel.clone());
        async move { ConfigObserver::start(watcher, source.loader(), source.validator(), &cancel).await }
    });
    events.expect(&["load", "invalid nope"]).await;
    assert!(!sender.is_closed());
    cancel.cancel();
    let result = within("start", starting).await.unwrap();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(sender.is_closed(), "the watcher was not stopped");
    assert!(!sender.send(()));
}

/// Ports `environSuite.TestErrorWhenEnvironIsInvalid` (here: unreadable):
/// `start` returns the loader's error and stops its watcher.
#[tokio::test(start_paused = true)]
async fn start_returns_loader_error_and_stops_watcher() {
    let (source, _events) = source("8080");
    source.set_mode(Load::Fail("config unreadable"));
    let (sender, watcher) = change_queue::<()>();
    sender.send(());
    let result = within(
        "start",
        ConfigObserver::start(
            watcher,
            source.loader(),
            source.validator(),
            &CancellationToken::new(),
        ),
    )
    .await;
    assert_eq!(io_message(&result.unwrap_err()), "config unreadable");
    assert!(sender.is_closed(), "the watcher was not stopped");
}

/// `start` on a watcher that dies with an error returns that error once,
/// as `WatchWorker` does (its `wait` repeating the same error is not a
/// cleanup failure).
#[tokio::test(start_paused = true)]
async fn start_returns_watcher_error_once() {
    let (source, _events) = source("8080");
    let (sender, watcher) = change_queue::<()>();
    sender.close(Err(Error::other(io::Error::other("watch broken"))));
    let result = within(
        "start",
        ConfigObserver::start(
            watcher,
            source.loader(),
            source.validator(),
            &CancellationToken::new(),
        ),
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.to_string(), "watch broken");
    assert_eq!(io_message(&error), "watch broken");
}

/// A kill while the observer is loading ends it promptly, as a kill of
/// `wait_for_valid` does: a loader that never resolves must not make the
/// observer unstoppable.
#[tokio::test(start_paused = true)]
async fn kill_while_loading_ends_observer() {
    let (source, mut events) = source("8080");
    let observer = running_observer(&source, &mut events).await;
    source.set_mode(Load::Hang);
    source.raw.set("9090".into());
    events.expect(&["load"]).await;
    observer.kill();
    within("the killed observer to end", observer.wait())
        .await
        .unwrap();
    assert_eq!(*observer.current(), 8080);
}

/// A subscriber taken after an update sees only later updates, like a
/// fresh `watch::Sender::subscribe`: it is not told again about the value
/// `current()` already returns.
#[tokio::test(start_paused = true)]
async fn late_subscriber_is_not_told_about_earlier_values() {
    let (source, mut events) = source("8080");
    let observer = running_observer(&source, &mut events).await;
    assert!(!observer.subscribe().has_changed().unwrap());
    source.raw.set("9090".into());
    events.expect(&["load", "valid 9090"]).await;
    assert_eq!(*observer.current(), 9090);
    let late = observer.subscribe();
    assert!(
        !late.has_changed().unwrap(),
        "a new subscriber was told about 9090, which was current before it subscribed"
    );
    observer.kill();
    within("wait", observer.wait()).await.unwrap();
}

/// `start` takes any watcher, a boxed `NotifyWatcher` included.
#[tokio::test(start_paused = true)]
async fn start_accepts_a_boxed_watcher() {
    let (source, mut events) = source("8080");
    let watcher: Box<dyn Watcher<Change = ()>> = Box::new(source.raw.watch());
    let observer = within(
        "start",
        ConfigObserver::start(
            watcher,
            source.loader(),
            source.validator(),
            &CancellationToken::new(),
        ),
    )
    .await
    .unwrap();
    events.expect(&["load", "valid 8080"]).await;
    let mut updates = observer.subscribe();
    source.raw.set("9090".into());
    within("an update", updates.changed()).await.unwrap();
    assert_eq!(*observer.current(), 9090);
    observer.kill();
    within("wait", observer.wait()).await.unwrap();
}
