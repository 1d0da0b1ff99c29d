//! The watcher contract and the in-memory watchers: initial events,
//! coalescing, ends of stream, object safety.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::time::Duration;

use steward_worker::{
    Error, NotifyWatcher, StringsWatcher, WatchedMap, WatchedValue, Watcher, Worker, change_queue,
};
use tokio::time::timeout;

/// Asserts that no change is pending (paused time: the wait is free).
async fn assert_no_change<W: Watcher + ?Sized>(watcher: &mut W)
where
    W::Change: std::fmt::Debug,
{
    if let Ok(change) = timeout(Duration::from_secs(60), watcher.next_change()).await {
        panic!("expected no change, got {change:?}");
    }
}

/// Both kinds of watcher live behind trait objects.
#[tokio::test(start_paused = true)]
async fn watchers_are_object_safe() {
    let value = WatchedValue::new(0);
    let map: WatchedMap<u8> = WatchedMap::new();
    let mut notify: Box<NotifyWatcher> = Box::new(value.watch());
    let mut strings: Box<StringsWatcher> = Box::new(map.watch());
    notify.next_change().await.unwrap();
    assert!(strings.next_change().await.unwrap().is_empty());
    value.set(1);
    map.insert("k", 1);
    notify.next_change().await.unwrap();
    assert_eq!(strings.next_change().await.unwrap(), ["k"]);
    notify.kill();
    strings.kill();
    assert!(notify.wait().await.is_ok());
    assert!(strings.wait().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn value_watcher_coalesces_a_burst_into_one_change_with_the_final_state() {
    let value = WatchedValue::new(0_u32);
    let mut watcher = value.watch();
    watcher.next_change().await.unwrap(); // initial
    for i in 1..=10_000 {
        value.set(i);
    }
    watcher.next_change().await.unwrap();
    assert_eq!(value.get(), 10_000);
    assert_no_change(&mut watcher).await;
}

#[tokio::test(start_paused = true)]
async fn map_watcher_merges_a_burst_in_first_seen_order_without_duplicates() {
    let map = WatchedMap::new();
    map.insert("existing", 0);
    let mut watcher = map.watch();
    assert_eq!(watcher.next_change().await.unwrap(), ["existing"]);

    for round in 0..2 {
        for i in 0..5_000 {
            map.insert(format!("k{i}"), round);
        }
    }
    let batch = watcher.next_change().await.unwrap();
    let expected: Vec<String> = (0..5_000).map(|i| format!("k{i}")).collect();
    assert_eq!(batch, expected);
    assert_eq!(map.get("k4999"), Some(1));
    assert_no_change(&mut watcher).await;

    // Removing reports the key; removing a missing key reports nothing.
    assert_eq!(map.remove("existing"), Some(0));
    assert_eq!(map.remove("existing"), None);
    assert_eq!(watcher.next_change().await.unwrap(), ["existing"]);
    assert_no_change(&mut watcher).await;
}

#[tokio::test(start_paused = true)]
async fn every_watcher_gets_its_own_initial_event_and_changes() {
    let value = WatchedValue::new("a");
    let mut first = value.watch();
    value.set("b");
    let mut second = value.watch();
    // `first` saw the initial event and the set merged into one.
    first.next_change().await.unwrap();
    assert_no_change(&mut first).await;
    second.next_change().await.unwrap();
    assert_no_change(&mut second).await;
    value.set("c");
    first.next_change().await.unwrap();
    second.next_change().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_killed_watcher_is_dropped_by_its_source_and_others_carry_on() {
    let value = WatchedValue::new(0);
    let mut kept = value.watch();
    let mut killed = value.watch();
    kept.next_change().await.unwrap();
    killed.next_change().await.unwrap();
    killed.kill();
    assert!(killed.wait().await.is_ok());
    assert!(matches!(
        killed.next_change().await,
        Err(Error::WatcherStopped)
    ));
    value.set(1);
    kept.next_change().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_watcher_that_ends_reports_why_after_its_pending_changes() {
    let (sender, mut watcher) = change_queue::<Vec<String>>();
    sender.send(vec!["last".into()]);
    sender.close(Err(Error::msg("store connection lost")));
    assert_eq!(watcher.next_change().await.unwrap(), ["last"]);
    let error = watcher.next_change().await.unwrap_err();
    assert_eq!(error.to_string(), "store connection lost");
    // Asking again is harmless and gives the same answer.
    let again = watcher.next_change().await.unwrap_err();
    assert_eq!(again.to_string(), "store connection lost");
    assert_eq!(
        watcher.wait().await.unwrap_err().to_string(),
        "store connection lost"
    );
}

#[tokio::test(start_paused = true)]
async fn a_change_sent_while_the_consumer_waits_wakes_it() {
    let (sender, mut watcher) = change_queue::<()>();
    let consumer = tokio::spawn(async move {
        watcher.next_change().await.unwrap();
        watcher
    });
    tokio::task::yield_now().await;
    assert!(!consumer.is_finished());
    assert!(sender.send(()));
    let watcher = consumer.await.unwrap();
    watcher.kill();
    assert!(
        !sender.send(()),
        "a killed watcher's source is told to stop"
    );
}
