//! Integration tests of the store on real redb files: persistence across
//! reopen, compare-and-set, host storage, watchers, locking, open errors,
//! and durability of acknowledged writes across a SIGKILL of the writer.
//!
//! No test sleeps: "no change" is asserted by polling the watcher once
//! (a write notifies before it returns), and timeouts only guard against a
//! hang turning into a stuck test run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::process::Stdio;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use steward_store::{Error, Store};
use steward_worker::{Watcher, Worker};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};

const GUARD: Duration = Duration::from_secs(10);

async fn fresh() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.redb")).await.unwrap();
    (dir, store)
}

/// The next change, failing the test instead of hanging.
async fn next<W: Watcher>(watcher: &mut W) -> W::Change {
    tokio::time::timeout(GUARD, watcher.next_change())
        .await
        .expect("no change within the guard timeout")
        .expect("watcher failed")
}

/// Whether a change is pending right now. Writes notify before they
/// return, so after a write's `await` this is deterministic.
fn has_change<W: Watcher>(watcher: &mut W) -> bool {
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

// ---- persistence and semantics ----

#[tokio::test]
async fn a_fresh_store_is_empty() {
    let (_dir, store) = fresh().await;
    assert_eq!(store.desired_version("echo").await.unwrap(), None);
    assert!(store.desired_versions().await.unwrap().is_empty());
    assert_eq!(store.storage_get("echo", "k").await.unwrap(), None);
    assert!(store.storage_list("echo", "").await.unwrap().is_empty());
}

#[tokio::test]
async fn values_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.path(), path);
        store.set_desired_version("echo", "1.0.0").await.unwrap();
        store.set_desired_version("kv", "2.0.0").await.unwrap();
        store.set_desired_version("gone", "3.0.0").await.unwrap();
        store.clear_desired_version("gone").await.unwrap();
        store
            .storage_set("kv", "data/a", b"alpha".to_vec())
            .await
            .unwrap();
        store.storage_set("kv", "tmp", b"x".to_vec()).await.unwrap();
        store.storage_delete("kv", "tmp").await.unwrap();
    }
    let store = Store::open(&path).await.unwrap();
    let expected = BTreeMap::from([
        ("echo".to_string(), "1.0.0".to_string()),
        ("kv".to_string(), "2.0.0".to_string()),
    ]);
    assert_eq!(store.desired_versions().await.unwrap(), expected);
    assert_eq!(
        store.desired_version("kv").await.unwrap().as_deref(),
        Some("2.0.0")
    );
    assert_eq!(store.desired_version("gone").await.unwrap(), None);
    assert_eq!(
        store.storage_get("kv", "data/a").await.unwrap().as_deref(),
        Some(&b"alpha"[..])
    );
    assert_eq!(store.storage_get("kv", "tmp").await.unwrap(), None);
}

#[tokio::test]
async fn set_returns_the_previous_version() {
    let (_dir, store) = fresh().await;
    assert_eq!(store.set_desired_version("echo", "1").await.unwrap(), None);
    assert_eq!(
        store
            .set_desired_version("echo", "2")
            .await
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        store
            .set_desired_version("echo", "2")
            .await
            .unwrap()
            .as_deref(),
        Some("2")
    );
    store.clear_desired_version("echo").await.unwrap();
    store.clear_desired_version("echo").await.unwrap(); // absent: a no-op
    assert_eq!(store.set_desired_version("echo", "3").await.unwrap(), None);
}

#[tokio::test]
async fn compare_and_set_checks_the_current_value() {
    let (_dir, store) = fresh().await;
    // Absent: only `None` matches.
    assert!(
        !store
            .compare_and_set_desired_version("echo", Some("1"), "2")
            .await
            .unwrap()
    );
    assert_eq!(store.desired_version("echo").await.unwrap(), None);
    assert!(
        store
            .compare_and_set_desired_version("echo", None, "1")
            .await
            .unwrap()
    );
    // Present: `None` and a wrong value mismatch, the right one matches.
    assert!(
        !store
            .compare_and_set_desired_version("echo", None, "9")
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_set_desired_version("echo", Some("0"), "9")
            .await
            .unwrap()
    );
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("1")
    );
    assert!(
        store
            .compare_and_set_desired_version("echo", Some("1"), "2")
            .await
            .unwrap()
    );
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compare_and_sets_have_one_winner() {
    let (_dir, store) = fresh().await;
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

#[tokio::test]
async fn storage_namespaces_are_isolated() {
    let (_dir, store) = fresh().await;
    store
        .storage_set("a", "key", b"in a".to_vec())
        .await
        .unwrap();
    store
        .storage_set("ab", "key", b"in ab".to_vec())
        .await
        .unwrap();
    store.storage_set("ab", "k2", b"".to_vec()).await.unwrap();
    store
        .storage_set("b", "key", b"in b".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.storage_get("a", "key").await.unwrap().as_deref(),
        Some(&b"in a"[..])
    );
    assert_eq!(store.storage_get("a", "k2").await.unwrap(), None);
    assert_eq!(store.storage_list("a", "").await.unwrap(), ["key"]);
    assert_eq!(store.storage_list("ab", "").await.unwrap(), ["k2", "key"]);
    store.storage_delete("a", "key").await.unwrap();
    assert_eq!(
        store.storage_get("ab", "key").await.unwrap().as_deref(),
        Some(&b"in ab"[..])
    );
    assert!(store.storage_list("a", "").await.unwrap().is_empty());
}

#[tokio::test]
async fn storage_list_is_sorted_and_filtered_by_prefix() {
    let (_dir, store) = fresh().await;
    for key in ["sess/2", "cfg", "sess/10", "sess/1", "sess", "sesx", "a"] {
        store.storage_set("kv", key, vec![1]).await.unwrap();
    }
    assert_eq!(
        store.storage_list("kv", "sess/").await.unwrap(),
        ["sess/1", "sess/10", "sess/2"]
    );
    assert_eq!(
        store.storage_list("kv", "ses").await.unwrap(),
        ["sess", "sess/1", "sess/10", "sess/2", "sesx"]
    );
    assert_eq!(
        store.storage_list("kv", "").await.unwrap(),
        ["a", "cfg", "sess", "sess/1", "sess/10", "sess/2", "sesx"]
    );
    assert!(store.storage_list("kv", "z").await.unwrap().is_empty());
}

#[tokio::test]
async fn storage_delete_of_a_missing_key_is_ok_and_values_round_trip() {
    let (_dir, store) = fresh().await;
    store.storage_delete("kv", "missing").await.unwrap();
    store.storage_delete("nobody", "missing").await.unwrap();

    store.storage_set("kv", "empty", Vec::new()).await.unwrap();
    assert_eq!(
        store.storage_get("kv", "empty").await.unwrap(),
        Some(Vec::new())
    );
    let binary: Vec<u8> = (0..=255).collect();
    store
        .storage_set("kv", "bin", binary.clone())
        .await
        .unwrap();
    assert_eq!(store.storage_get("kv", "bin").await.unwrap(), Some(binary));
    store
        .storage_set("kv", "bin", b"new".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.storage_get("kv", "bin").await.unwrap().as_deref(),
        Some(&b"new"[..])
    );
}

// ---- watchers ----

#[tokio::test]
async fn a_watcher_starts_with_an_immediate_change() {
    let (_dir, store) = fresh().await;
    let mut one = store.watch_desired_version("echo");
    assert!(has_change(&mut one));
    assert!(!has_change(&mut one));
    let mut all = store.watch_desired_versions();
    assert_eq!(next(&mut all).await, Vec::<String>::new());
    assert!(!has_change(&mut all));
}

#[tokio::test]
async fn a_set_wakes_the_watcher_and_a_read_sees_it() {
    let (_dir, store) = fresh().await;
    let mut watcher = store.watch_desired_version("echo");
    next(&mut watcher).await;

    let writer = store.clone();
    let write = tokio::spawn(async move { writer.set_desired_version("echo", "1").await });
    next(&mut watcher).await;
    // Notified after the commit: the value is visible now, even though the
    // writer's future may not have resolved yet.
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("1")
    );
    write.await.unwrap().unwrap();

    store.clear_desired_version("echo").await.unwrap();
    next(&mut watcher).await;
    assert_eq!(store.desired_version("echo").await.unwrap(), None);
}

#[tokio::test]
async fn unchanged_values_notify_nobody() {
    let (_dir, store) = fresh().await;
    store.set_desired_version("echo", "1").await.unwrap();
    let mut one = store.watch_desired_version("echo");
    let mut all = store.watch_desired_versions();
    next(&mut one).await;
    assert_eq!(next(&mut all).await, ["echo"]);

    store.set_desired_version("echo", "1").await.unwrap();
    assert!(
        !store
            .compare_and_set_desired_version("echo", Some("0"), "2")
            .await
            .unwrap()
    );
    assert!(
        store
            .compare_and_set_desired_version("echo", Some("1"), "1")
            .await
            .unwrap()
    );
    store.clear_desired_version("absent").await.unwrap();
    store.storage_set("echo", "k", vec![1]).await.unwrap();
    assert!(!has_change(&mut one));
    assert!(!has_change(&mut all));
}

#[tokio::test]
async fn many_sets_coalesce_into_one_change() {
    let (_dir, store) = fresh().await;
    let mut one = store.watch_desired_version("echo");
    let mut all = store.watch_desired_versions();
    next(&mut one).await;
    next(&mut all).await;
    for i in 0..20 {
        store
            .set_desired_version("echo", &i.to_string())
            .await
            .unwrap();
    }
    store.set_desired_version("kv", "1").await.unwrap();
    store.set_desired_version("echo", "last").await.unwrap();
    assert!(has_change(&mut one));
    assert!(!has_change(&mut one));
    assert_eq!(next(&mut all).await, ["echo", "kv"]);
    assert!(!has_change(&mut all));
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("last")
    );
}

#[tokio::test]
async fn a_runtime_watcher_ignores_other_runtimes() {
    let (_dir, store) = fresh().await;
    let mut echo = store.watch_desired_version("echo");
    let mut ech = store.watch_desired_version("ech");
    next(&mut echo).await;
    next(&mut ech).await;
    store.set_desired_version("kv", "1").await.unwrap();
    store.set_desired_version("echo2", "1").await.unwrap();
    assert!(!has_change(&mut echo));
    assert!(!has_change(&mut ech));
    store.set_desired_version("echo", "1").await.unwrap();
    assert!(has_change(&mut echo));
    assert!(!has_change(&mut ech));
}

#[tokio::test]
async fn the_strings_watcher_names_the_changed_runtimes() {
    let (_dir, store) = fresh().await;
    store.set_desired_version("kv", "1").await.unwrap();
    store.set_desired_version("echo", "1").await.unwrap();
    let mut all = store.watch_desired_versions();
    assert_eq!(next(&mut all).await, ["echo", "kv"]); // sorted snapshot

    store.set_desired_version("kv", "2").await.unwrap();
    assert_eq!(next(&mut all).await, ["kv"]);
    store.set_desired_version("faulty", "1").await.unwrap();
    store.clear_desired_version("echo").await.unwrap();
    assert!(
        store
            .compare_and_set_desired_version("kv", Some("2"), "3")
            .await
            .unwrap()
    );
    assert_eq!(next(&mut all).await, ["faulty", "echo", "kv"]);
    assert!(!has_change(&mut all));
}

#[tokio::test]
async fn killed_watchers_are_dropped_and_writes_go_on() {
    let (_dir, store) = fresh().await;
    let killed = store.watch_desired_version("echo");
    let killed_all = store.watch_desired_versions();
    let mut live = store.watch_desired_version("echo");
    next(&mut live).await;
    killed.kill();
    killed_all.kill();
    killed.wait().await.unwrap();
    store.set_desired_version("echo", "1").await.unwrap();
    assert!(has_change(&mut live));
    drop((killed, killed_all));
    store.set_desired_version("echo", "2").await.unwrap();
    assert!(has_change(&mut live));
}

#[tokio::test]
async fn watchers_end_cleanly_when_the_store_is_dropped() {
    let (_dir, store) = fresh().await;
    let mut watcher = store.watch_desired_version("echo");
    next(&mut watcher).await;
    drop(store);
    let end = tokio::time::timeout(GUARD, watcher.next_change())
        .await
        .unwrap();
    assert!(matches!(end, Err(steward_worker::Error::WatcherStopped)));
}

// ---- open errors ----

#[tokio::test]
async fn a_second_open_of_the_same_file_is_locked() {
    let (dir, store) = fresh().await;
    let path = dir.path().join("state.redb");
    let error = Store::open(&path).await.unwrap_err();
    assert!(
        matches!(&error, Error::Locked { path: p } if *p == path),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("already open"), "{message}");

    drop(store);
    Store::open(&path)
        .await
        .expect("the lock is released on drop");
}

#[tokio::test]
async fn a_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let path = missing.join("state.redb");
    let error = Store::open(&path).await.unwrap_err();
    match &error {
        Error::NoDirectory { path: p, directory } => {
            assert_eq!(*p, path);
            assert_eq!(*directory, missing);
        }
        other => panic!("expected NoDirectory, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(!missing.exists(), "the store must not create directories");
}

#[tokio::test]
async fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    let error = Store::open(&path).await.unwrap_err();
    assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("move it aside"), "{message}");
}

// ---- durability across SIGKILL ----

/// Set (to the database path) only in the child process of
/// [`acknowledged_writes_survive_sigkill`].
const CHILD_DB: &str = "STEWARD_STORE_CHILD_DB";
const CHILD_TEST: &str = "sigkill_child_writer";
const ACKS_BEFORE_KILL: usize = 200;

/// The child half of [`acknowledged_writes_survive_sigkill`]: writes
/// forever (bounded, in case the parent vanished), printing one `ACK` line
/// per acknowledged write. Passes at once when not run as that child.
#[tokio::test]
#[ignore = "the child process of acknowledged_writes_survive_sigkill"]
async fn sigkill_child_writer() {
    use std::io::Write;

    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let store = Store::open(PathBuf::from(path)).await.unwrap();
    for i in 0..100_000u64 {
        let line = if i % 2 == 0 {
            let runtime = format!("rt-{}", (i / 2) % 4);
            store
                .set_desired_version(&runtime, &i.to_string())
                .await
                .unwrap();
            format!("ACK desired {runtime} {i}")
        } else {
            let key = format!("k-{i:06}");
            store
                .storage_set("child", &key, i.to_le_bytes().to_vec())
                .await
                .unwrap();
            format!("ACK storage {key} {i}")
        };
        // A write error (the parent is gone) ends the child.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored"])
        .env(CHILD_DB, &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut desired: BTreeMap<String, u64> = BTreeMap::new();
    let mut stored: Vec<(String, u64)> = Vec::new();
    let mut acks = 0;
    tokio::time::timeout(GUARD, async {
        while acks < ACKS_BEFORE_KILL {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the child ended before being killed");
            // The test harness may print on the same line; find the ACK.
            let Some(start) = line.find("ACK ") else {
                continue;
            };
            let fields: Vec<&str> = line[start..].split(' ').collect();
            let [_, kind, name, number] = fields[..] else {
                panic!("bad ack line {line:?}");
            };
            let number: u64 = number.parse().unwrap();
            match kind {
                "desired" => {
                    desired.insert(name.to_owned(), number);
                }
                "storage" => stored.push((name.to_owned(), number)),
                _ => panic!("bad ack line {line:?}"),
            }
            acks += 1;
        }
    })
    .await
    .expect("the child did not acknowledge enough writes in time");

    // SIGKILL, mid-write most likely, and reap it (which also releases its
    // file lock).
    child.kill().await.unwrap();

    let store = Store::open(&path).await.unwrap();
    assert_eq!(desired.len(), 4);
    for (runtime, acked) in &desired {
        let version = store.desired_version(runtime).await.unwrap();
        let version: u64 = version
            .unwrap_or_else(|| panic!("{runtime}: acknowledged {acked}, found nothing"))
            .parse()
            .unwrap();
        // The child may have committed later writes it had not printed yet.
        assert!(
            version >= *acked,
            "{runtime}: acknowledged {acked}, found {version}"
        );
        assert_eq!(format!("rt-{}", (version / 2) % 4), *runtime);
    }
    for (key, acked) in &stored {
        assert_eq!(
            store.storage_get("child", key).await.unwrap(),
            Some(acked.to_le_bytes().to_vec()),
            "{key}"
        );
    }
    let listed = store.storage_list("child", "k-").await.unwrap();
    assert!(listed.len() >= stored.len());
}

#[tokio::test]
async fn a_damaged_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let store = Store::open(&path).await.unwrap();
        for i in 0..50 {
            let key = format!("k{i}");
            store.storage_set("kv", &key, vec![7; 500]).await.unwrap();
        }
    }
    // Damage everything after the header, as a bad disk or a stray write
    // would: the integrity check on open finds it.
    let mut bytes = std::fs::read(&path).unwrap();
    for byte in &mut bytes[8192..] {
        *byte ^= 0xff;
    }
    std::fs::write(&path, bytes).unwrap();
    let error = Store::open(&path).await.unwrap_err();
    assert!(matches!(error, Error::Corrupted { .. }), "{error:?}");
}

/// A new database file is private (0600): it holds every runtime's data.
#[tokio::test]
async fn a_new_store_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = Store::open(&path).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    drop(store);
}

/// A small tmpfs, unmounted when dropped; `None` where mounting is not
/// allowed (the test then says so and passes vacuously).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: usize) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(Self { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills the disk with a file; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// A full disk makes the store refuse writes (redb then refuses every
/// later write, even once space is back); reopening it once space is back
/// brings it back with what was committed before.
#[tokio::test]
async fn a_store_on_a_full_disk_recovers_when_it_is_reopened() {
    let Some(disk) = SmallDisk::mount(8 << 20) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    let store = Store::open(disk.path().join("store.redb")).await.unwrap();
    store.set_desired_version("echo", "1.0.0").await.unwrap();
    assert_eq!(store.health(), steward_store::StoreHealth::Ok);
    let filler = disk.fill();
    let value = vec![7u8; 256 * 1024];
    let mut failed = None;
    for i in 0..200 {
        if let Err(error) = store
            .storage_set("kv", &format!("k{i}"), value.clone())
            .await
        {
            failed = Some(error);
            break;
        }
    }
    let error = failed.expect("writes fail on a full disk");
    // Whatever the first failure was, the store now says it is unusable.
    let later = store.set_desired_version("echo", "2.0.0").await;
    assert!(
        matches!(later, Err(Error::Unusable { .. })),
        "{error}; then {later:?}"
    );
    let steward_store::StoreHealth::Unusable { reason, .. } = store.health() else {
        panic!("health should say unusable");
    };
    assert!(!reason.is_empty());
    // Space back, but redb's refusal sticks until the database is reopened.
    std::fs::remove_file(&filler).unwrap();
    let still = store.set_desired_version("echo", "2.0.0").await;
    assert!(matches!(still, Err(Error::Unusable { .. })), "{still:?}");
    store.reopen().await.unwrap();
    assert_eq!(store.health(), steward_store::StoreHealth::Ok);
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("1.0.0")
    );
    store.set_desired_version("echo", "2.0.0").await.unwrap();
    assert_eq!(
        store.desired_version("echo").await.unwrap().as_deref(),
        Some("2.0.0")
    );
}
