//! `FileWatcher` on a real temporary directory, with real writes, renames
//! and the write-temp-then-rename save that editors do. These tests use
//! real time (the OS delivers the events); every wait is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use steward_worker::{Error, FileWatcher, Watcher, Worker};
use tokio::time::timeout;

const DEBOUNCE: Duration = Duration::from_millis(100);
/// Long enough for any event of this machine to arrive.
const PATIENCE: Duration = Duration::from_secs(10);
/// Batch mode holds events up to twice the debounce; four times that with
/// nothing arriving means nothing more is coming for what we did.
const QUIET: Duration = Duration::from_millis(800);

async fn next<W: Watcher>(watcher: &mut W) -> W::Change {
    timeout(PATIENCE, watcher.next_change())
        .await
        .expect("a change within the patience window")
        .expect("the watcher is still running")
}

async fn assert_quiet<W: Watcher>(watcher: &mut W)
where
    W::Change: std::fmt::Debug,
{
    if let Ok(change) = timeout(QUIET, watcher.next_change()).await {
        panic!("expected no more changes, got {change:?}");
    }
}

/// What an editor does on save: write a temporary file, then rename it
/// over the original, atomically.
fn atomic_save(path: &Path, contents: &str) {
    let temp = path.with_extension("toml.swp");
    fs::write(&temp, contents).unwrap();
    fs::rename(&temp, path).unwrap();
}

#[tokio::test]
async fn file_watcher_sends_the_initial_event_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    fs::write(&file, "a = 1").unwrap();
    let mut watcher = FileWatcher::builder(&file)
        .debounce(DEBOUNCE)
        .watch_strings()
        .await
        .unwrap();
    assert_eq!(next(&mut watcher).await, ["agent.toml"]);
    assert_quiet(&mut watcher).await;
    watcher.kill();
    assert!(watcher.wait().await.is_ok());
}

#[tokio::test]
async fn atomic_rename_save_is_exactly_one_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    fs::write(&file, "a = 1").unwrap();
    // A neighbour that must not trigger the file's watcher.
    let mut watcher = FileWatcher::builder(&file)
        .debounce(DEBOUNCE)
        .watch_strings()
        .await
        .unwrap();
    assert_eq!(next(&mut watcher).await, ["agent.toml"]);

    atomic_save(&file, "a = 2");
    assert_eq!(next(&mut watcher).await, ["agent.toml"]);
    assert_quiet(&mut watcher).await;
    assert_eq!(fs::read_to_string(&file).unwrap(), "a = 2");

    // The watch survives the inode being replaced: a second save is seen.
    atomic_save(&file, "a = 3");
    assert_eq!(next(&mut watcher).await, ["agent.toml"]);
    assert_quiet(&mut watcher).await;
    watcher.kill();
    assert!(watcher.wait().await.is_ok());
}

#[tokio::test]
async fn notify_watcher_on_a_file_ignores_its_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    fs::write(&file, "a = 1").unwrap();
    let mut watcher = FileWatcher::builder(&file)
        .debounce(DEBOUNCE)
        .watch_notify()
        .await
        .unwrap();
    next(&mut watcher).await; // initial

    fs::write(dir.path().join("other.toml"), "x").unwrap();
    assert_quiet(&mut watcher).await;

    fs::write(&file, "a = 2").unwrap();
    next(&mut watcher).await;
    assert_quiet(&mut watcher).await;
}

#[tokio::test]
async fn a_file_that_appears_later_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("late.toml");
    let mut watcher = FileWatcher::builder(&file)
        .debounce(DEBOUNCE)
        .watch_strings()
        .await
        .unwrap();
    // Initially: nothing there, but still one event.
    assert_eq!(next(&mut watcher).await, Vec::<String>::new());

    fs::write(&file, "here").unwrap();
    assert_eq!(next(&mut watcher).await, ["late.toml"]);
    fs::remove_file(&file).unwrap();
    assert_eq!(next(&mut watcher).await, ["late.toml"]);
}

#[tokio::test]
async fn directory_watcher_reports_relative_names_in_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("b.toml"), "").unwrap();
    fs::write(dir.path().join("a.toml"), "").unwrap();
    let mut watcher = FileWatcher::builder(dir.path())
        .debounce(DEBOUNCE)
        .watch_strings()
        .await
        .unwrap();
    assert_eq!(next(&mut watcher).await, ["a.toml", "b.toml"]);

    // An atomic save inside the directory: one batch naming the target;
    // the temporary may be named too (the debouncer may fold its creation
    // into the rename).
    atomic_save(&dir.path().join("a.toml"), "x = 1");
    let batch = next(&mut watcher).await;
    assert!(batch.contains(&"a.toml".to_owned()), "{batch:?}");
    assert!(
        batch
            .iter()
            .all(|name| name == "a.toml" || name == "a.toml.swp"),
        "{batch:?}"
    );
    assert_quiet(&mut watcher).await;

    fs::rename(dir.path().join("b.toml"), dir.path().join("c.toml")).unwrap();
    let mut batch = next(&mut watcher).await;
    batch.sort();
    assert_eq!(batch, ["b.toml", "c.toml"]);
}

#[tokio::test]
async fn recursive_directory_watcher_sees_nested_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("conf.d")).unwrap();
    fs::write(dir.path().join("conf.d/one.toml"), "").unwrap();
    let mut watcher = FileWatcher::builder(dir.path())
        .debounce(DEBOUNCE)
        .recursive(true)
        .watch_strings()
        .await
        .unwrap();
    assert_eq!(next(&mut watcher).await, ["conf.d", "conf.d/one.toml"]);

    fs::write(dir.path().join("conf.d/two.toml"), "").unwrap();
    let batch = next(&mut watcher).await;
    // The OS may also report the directory whose entries changed.
    assert!(batch.contains(&"conf.d/two.toml".to_string()), "{batch:?}");
    assert!(
        batch.iter().all(|path| path.starts_with("conf.d")),
        "{batch:?}"
    );
}

#[tokio::test]
async fn killed_watcher_stops_cleanly_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut watcher = FileWatcher::builder(dir.path())
        .debounce(DEBOUNCE)
        .watch_notify()
        .await
        .unwrap();
    next(&mut watcher).await;
    watcher.kill();
    watcher.kill();
    assert!(watcher.wait().await.is_ok());
    fs::write(dir.path().join("after.toml"), "").unwrap();
    assert!(matches!(
        timeout(PATIENCE, watcher.next_change()).await.unwrap(),
        Err(Error::WatcherStopped)
    ));
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/agent.toml");
    let error = FileWatcher::builder(&missing)
        .watch_notify()
        .await
        .err()
        .unwrap();
    let message = error.to_string();
    assert!(message.contains("cannot watch"), "{message}");
    assert!(message.contains("no/such/dir/agent.toml"), "{message}");
    assert!(message.contains("directory is not accessible"), "{message}");
}

/// Reading the watched file is not a change (inotify reports every open):
/// a config observer that reads on each change must not wake itself up.
/// An in-place overwrite still is exactly one change.
#[tokio::test]
async fn reading_the_file_is_not_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    fs::write(&file, "a = 1").unwrap();
    let mut watcher = FileWatcher::builder(&file)
        .debounce(DEBOUNCE)
        .watch_strings()
        .await
        .unwrap();
    assert_eq!(next(&mut watcher).await, ["agent.toml"]);

    for _ in 0..3 {
        assert_eq!(fs::read_to_string(&file).unwrap(), "a = 1");
    }
    assert_quiet(&mut watcher).await;

    fs::write(&file, "a = 2").unwrap();
    assert_eq!(next(&mut watcher).await, ["agent.toml"]);
    assert_quiet(&mut watcher).await;
    watcher.kill();
    assert!(watcher.wait().await.is_ok());
}
