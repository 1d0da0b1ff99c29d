//! The [`DesiredState`] conformance suite: one set of behaviour tests that
//! every backend must pass — the embedded [`Store`](crate::Store) and the
//! fleet's etcd backend alike — so the agent above the trait cannot tell
//! them apart.
//!
//! Each case is an `async fn` taking a fresh, empty store; the
//! [`desired_state_conformance!`](crate::desired_state_conformance) macro
//! turns all of them into `#[tokio::test]`s of the calling test crate:
//!
//! ```ignore
//! async fn fresh() -> (Guard, Arc<dyn DesiredState>) { todo!() }
//! steward_store::desired_state_conformance!(fresh);
//! ```
//!
//! The cases hold for a backend whose watchers are fed asynchronously (a
//! network watch), so "nothing else changed" is never asserted by waiting:
//! a *fence* — a write to another runtime, seen by a strings watcher —
//! proves the watchers have caught up, because a backend feeds all the
//! watchers of one store from one ordered stream of changes. This module
//! must never know a backend.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "test cases: a panic is their failure report"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use steward_worker::{QueueWatcher, Watcher, Worker};

use crate::DesiredState;

/// How long a case waits for a change before failing (instead of hanging).
pub const GUARD: Duration = Duration::from_secs(10);

/// The runtime a fence writes to; no case uses it otherwise.
const FENCE: &str = "zz-fence";

/// Generates one `#[tokio::test]` per conformance case, each on a fresh
/// store from `$fresh`: an `async fn() -> (G, Arc<dyn DesiredState>)`
/// whose `G` (a temp dir, a server's key prefix) lives as long as the case.
#[macro_export]
macro_rules! desired_state_conformance {
    ($fresh:path) => {
        $crate::desired_state_conformance!(@cases $fresh;
            a_fresh_store_is_empty,
            set_returns_the_previous_version,
            compare_and_set_checks_the_current_value,
            concurrent_compare_and_sets_have_one_winner,
            create_sets_only_when_absent,
            concurrent_creates_have_one_winner,
            all_versions_are_listed,
            a_watcher_starts_with_an_immediate_change,
            the_first_change_lists_every_runtime_sorted,
            a_set_wakes_the_watcher_and_a_read_sees_it,
            unchanged_values_notify_nobody,
            a_burst_is_reported_whole,
            a_runtime_watcher_ignores_other_runtimes,
            the_strings_watcher_names_the_changed_runtimes,
            killed_watchers_are_dropped_and_writes_go_on,
        );
    };
    (@cases $fresh:path; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_guard, store) = $fresh().await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

/// The next change, failing the case instead of hanging.
pub async fn next<W: Watcher>(watcher: &mut W) -> W::Change {
    tokio::time::timeout(GUARD, watcher.next_change())
        .await
        .expect("no change within the guard timeout")
        .expect("watcher failed")
}

/// Whether a change is pending right now. Meaningful only once the
/// backend has caught up: after a fence.
pub fn has_change<W: Watcher>(watcher: &mut W) -> bool {
    let mut change = pin!(watcher.next_change());
    match change
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => {
            result.expect("watcher failed");
            true
        }
        Poll::Pending => false,
    }
}

/// Writes the fence runtime and takes the strings watcher's changes until
/// it names the fence; returns the runtimes named before it, in order.
/// Once this returns, every watcher of the store has been given every
/// change made before the fence.
pub async fn fence(store: &dyn DesiredState, all: &mut QueueWatcher<Vec<String>>) -> Vec<String> {
    let version = format!("{:?}", std::time::Instant::now());
    store.set_desired_version(FENCE, &version).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = tokio::time::timeout(GUARD, all.next_change())
            .await
            .expect("the fence did not arrive within the guard timeout")
            .expect("watcher failed");
        let mut fenced = false;
        for id in batch {
            if id == FENCE {
                fenced = true;
            } else {
                seen.push(id);
            }
        }
        if fenced {
            return seen;
        }
    }
}

fn owned(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// ---- values ----

pub async fn a_fresh_store_is_empty(store: Arc<dyn DesiredState>) {
    assert_eq!(store.desired_version("echo").await.unwrap(), None);
    assert!(store.desired_versions().await.unwrap().is_empty());
}

pub async fn set_returns_the_previous_version(store: Arc<dyn DesiredState>) {
    assert_eq!(store.set_desired_version("echo", "1").await.unwrap(), None);
    let previous = store.set_desired_version("echo", "2").await.unwrap();
    assert_eq!(previous.as_deref(), Some("1"));
    // The current value again: "previous" is that value, nothing written.
    let previous = store.set_desired_version("echo", "2").await.unwrap();
    assert_eq!(previous.as_deref(), Some("2"));
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("2")
    );
    store.clear_desired_version("echo").await.unwrap();
    store.clear_desired_version("echo").await.unwrap(); // absent: a no-op
    assert_eq!(store.desired_version("echo").await.unwrap(), None);
    assert_eq!(store.set_desired_version("echo", "3").await.unwrap(), None);
}

pub async fn compare_and_set_checks_the_current_value(store: Arc<dyn DesiredState>) {
    let cas = |expected: Option<&'static str>, version: &'static str| {
        let store = store.clone();
        async move {
            store
                .compare_and_set_desired_version("echo", expected, version)
                .await
                .unwrap()
        }
    };
    // Absent: only `None` matches.
    assert!(!cas(Some("1"), "2").await);
    assert_eq!(store.desired_version("echo").await.unwrap(), None);
    assert!(cas(None, "1").await);
    // Present: `None` and a wrong value mismatch, the right one matches.
    assert!(!cas(None, "9").await);
    assert!(!cas(Some("0"), "9").await);
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("1")
    );
    assert!(cas(Some("1"), "2").await);
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("2")
    );
    // Expected and new equal to the current value: true, nothing changes.
    assert!(cas(Some("2"), "2").await);
    // A cleared runtime is absent again.
    store.clear_desired_version("echo").await.unwrap();
    assert!(!cas(Some("2"), "3").await);
    assert!(cas(None, "3").await);
}

pub async fn concurrent_compare_and_sets_have_one_winner(store: Arc<dyn DesiredState>) {
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .compare_and_set_desired_version("echo", None, &format!("v{i}"))
                    .await
                    .unwrap()
                    .then_some(i)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for attempt in attempts {
        winners.extend(attempt.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(
        store.desired_version("echo").await.unwrap(),
        Some(format!("v{}", winners[0]))
    );
}

pub async fn create_sets_only_when_absent(store: Arc<dyn DesiredState>) {
    assert_eq!(
        store.create_desired_version("echo", "1").await.unwrap(),
        None
    );
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("1")
    );
    // Present: left alone, and the existing value is returned.
    let existing = store.create_desired_version("echo", "2").await.unwrap();
    assert_eq!(existing.as_deref(), Some("1"));
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("1")
    );
    let existing = store.create_desired_version("echo", "1").await.unwrap();
    assert_eq!(existing.as_deref(), Some("1"));
    store.clear_desired_version("echo").await.unwrap();
    assert_eq!(
        store.create_desired_version("echo", "3").await.unwrap(),
        None
    );
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("3")
    );
}

pub async fn concurrent_creates_have_one_winner(store: Arc<dyn DesiredState>) {
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let version = format!("v{i}");
                let existing = store
                    .create_desired_version("echo", &version)
                    .await
                    .unwrap();
                (version, existing)
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut saw = BTreeSet::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            (version, None) => created.push(version),
            (_, Some(existing)) => {
                saw.insert(existing);
            }
        }
    }
    assert_eq!(created.len(), 1, "created: {created:?}");
    // Every loser saw the winner's version, and it is what is stored.
    assert!(
        saw.iter().all(|existing| *existing == created[0]),
        "{saw:?}"
    );
    assert_eq!(
        store.desired_version("echo").await.unwrap(),
        Some(created[0].clone())
    );
}

pub async fn all_versions_are_listed(store: Arc<dyn DesiredState>) {
    store.set_desired_version("kv", "2.0.0").await.unwrap();
    store.set_desired_version("echo", "1.0.0").await.unwrap();
    store.set_desired_version("gone", "3.0.0").await.unwrap();
    store
        .create_desired_version("seeded", "0.1.0")
        .await
        .unwrap();
    store.clear_desired_version("gone").await.unwrap();
    assert_eq!(
        store.desired_versions().await.unwrap(),
        owned(&[("echo", "1.0.0"), ("kv", "2.0.0"), ("seeded", "0.1.0")])
    );
    assert_eq!(store.desired_version("gone").await.unwrap(), None);
}

// ---- watchers ----

pub async fn a_watcher_starts_with_an_immediate_change(store: Arc<dyn DesiredState>) {
    let mut one = store.watch_desired_version("echo");
    next(&mut one).await;
    let mut all = store.watch_desired_versions();
    assert_eq!(next(&mut all).await, Vec::<String>::new());
    assert!(fence(&*store, &mut all).await.is_empty());
    assert!(!has_change(&mut one));
}

pub async fn the_first_change_lists_every_runtime_sorted(store: Arc<dyn DesiredState>) {
    for runtime in ["kv", "echo", "faulty"] {
        store.set_desired_version(runtime, "1").await.unwrap();
    }
    let mut all = store.watch_desired_versions();
    assert_eq!(next(&mut all).await, ["echo", "faulty", "kv"]);
    assert!(fence(&*store, &mut all).await.is_empty());
}

pub async fn a_set_wakes_the_watcher_and_a_read_sees_it(store: Arc<dyn DesiredState>) {
    let mut watcher = store.watch_desired_version("echo");
    next(&mut watcher).await;

    let writer = store.clone();
    let write = tokio::spawn(async move { writer.set_desired_version("echo", "1").await });
    next(&mut watcher).await;
    // A change is given only once it is committed: the value is readable
    // now, even though the writer's future may not have resolved yet.
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("1")
    );
    write.await.unwrap().unwrap();

    store.clear_desired_version("echo").await.unwrap();
    next(&mut watcher).await;
    assert_eq!(store.desired_version("echo").await.unwrap(), None);

    store.create_desired_version("echo", "2").await.unwrap();
    next(&mut watcher).await;
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("2")
    );
}

pub async fn unchanged_values_notify_nobody(store: Arc<dyn DesiredState>) {
    store.set_desired_version("echo", "1").await.unwrap();
    let mut one = store.watch_desired_version("echo");
    let mut all = store.watch_desired_versions();
    next(&mut one).await;
    assert_eq!(next(&mut all).await, ["echo"]);

    store.set_desired_version("echo", "1").await.unwrap();
    let cas = store
        .compare_and_set_desired_version("echo", Some("0"), "2")
        .await;
    assert!(!cas.unwrap());
    let cas = store
        .compare_and_set_desired_version("echo", Some("1"), "1")
        .await;
    assert!(cas.unwrap());
    let cas = store
        .compare_and_set_desired_version("echo", None, "3")
        .await;
    assert!(!cas.unwrap());
    let created = store.create_desired_version("echo", "4").await.unwrap();
    assert_eq!(created.as_deref(), Some("1"));
    store.clear_desired_version("absent").await.unwrap();

    assert_eq!(fence(&*store, &mut all).await, Vec::<String>::new());
    assert!(!has_change(&mut one));
}

pub async fn a_burst_is_reported_whole(store: Arc<dyn DesiredState>) {
    let mut one = store.watch_desired_version("echo");
    let mut all = store.watch_desired_versions();
    next(&mut one).await;
    next(&mut all).await;
    for i in 0..20 {
        let version = i.to_string();
        store.set_desired_version("echo", &version).await.unwrap();
    }
    store.set_desired_version("kv", "1").await.unwrap();
    store.set_desired_version("echo", "last").await.unwrap();

    let named: BTreeSet<String> = fence(&*store, &mut all).await.into_iter().collect();
    assert_eq!(named, BTreeSet::from(["echo".to_owned(), "kv".to_owned()]));
    // However the burst was split, the watcher has a change to take, and
    // what it reads then is the last value.
    assert!(has_change(&mut one));
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("last")
    );
}

pub async fn a_runtime_watcher_ignores_other_runtimes(store: Arc<dyn DesiredState>) {
    let mut echo = store.watch_desired_version("echo");
    let mut ech = store.watch_desired_version("ech");
    let mut all = store.watch_desired_versions();
    next(&mut echo).await;
    next(&mut ech).await;
    next(&mut all).await;
    store.set_desired_version("kv", "1").await.unwrap();
    store.set_desired_version("echo2", "1").await.unwrap();
    store.set_desired_version("echo/x", "1").await.unwrap();
    fence(&*store, &mut all).await;
    assert!(!has_change(&mut echo));
    assert!(!has_change(&mut ech));
    store.set_desired_version("echo", "1").await.unwrap();
    fence(&*store, &mut all).await;
    assert!(has_change(&mut echo));
    assert!(!has_change(&mut ech));
}

pub async fn the_strings_watcher_names_the_changed_runtimes(store: Arc<dyn DesiredState>) {
    store.set_desired_version("kv", "1").await.unwrap();
    store.set_desired_version("echo", "1").await.unwrap();
    let mut all = store.watch_desired_versions();
    assert_eq!(next(&mut all).await, ["echo", "kv"]);

    store.set_desired_version("kv", "2").await.unwrap();
    assert_eq!(fence(&*store, &mut all).await, ["kv"]);
    store.set_desired_version("faulty", "1").await.unwrap();
    store.clear_desired_version("echo").await.unwrap();
    let cas = store
        .compare_and_set_desired_version("kv", Some("2"), "3")
        .await;
    assert!(cas.unwrap());
    store.create_desired_version("new", "1").await.unwrap();
    assert_eq!(
        fence(&*store, &mut all).await,
        ["faulty", "echo", "kv", "new"]
    );
}

pub async fn killed_watchers_are_dropped_and_writes_go_on(store: Arc<dyn DesiredState>) {
    let killed = store.watch_desired_version("echo");
    let killed_all = store.watch_desired_versions();
    let mut live = store.watch_desired_version("echo");
    let mut all = store.watch_desired_versions();
    next(&mut live).await;
    next(&mut all).await;
    killed.kill();
    killed_all.kill();
    tokio::time::timeout(GUARD, killed.wait())
        .await
        .unwrap()
        .unwrap();
    store.set_desired_version("echo", "1").await.unwrap();
    fence(&*store, &mut all).await;
    assert!(has_change(&mut live));
    drop((killed, killed_all));
    store.set_desired_version("echo", "2").await.unwrap();
    fence(&*store, &mut all).await;
    assert!(has_change(&mut live));
}
