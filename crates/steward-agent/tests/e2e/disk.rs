//! End-to-end tests of the agent's data on disk: the data dir and the
//! store are private, and a full disk degrades the agent (writes refused
//! with 507, `/healthz` says why) without stopping calls, until space
//! returns and the store is reopened by itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{Agent, DEADLINE, Options, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_and_the_store_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("new/data");
    let agent = Agent::start(Options::demo(&data)).await;
    agent.wait_running(&["echo", "kv"]).await;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("steward.redb")), 0o600);
}

/// A small tmpfs, unmounted when dropped; `None` where mounting is not
/// allowed.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn mount(bytes: usize) -> Option<Self> {
        let dir = TempDir::new().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a file; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_degrades_the_agent_until_space_returns() {
    let Some(disk) = SmallDisk::mount(16 << 20) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    let mut agent = Agent::demo(&disk.path().join("data")).await;
    let api = &agent.api;
    api.call_ok("kv", "put", json!({"key": "kept", "value": "before"}))
        .await;
    let filler = disk.fill();

    // kv's writes fail (its host storage answers an error), and then the
    // store refuses every write.
    let big = "x".repeat(200_000);
    let mut refused = false;
    for i in 0..100 {
        if api
            .call("kv", "put", json!({"key": format!("k{i}"), "value": big}))
            .await
            .is_err()
        {
            refused = true;
            break;
        }
    }
    assert!(refused, "writes to a full disk must fail");
    let (status, body) = api.set_version("echo", "2.0.0").await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    let (status, health) = api.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["store"]["reason"].is_string(), "{health}");
    // Calls go on, and so do reads of what runs.
    assert_eq!(api.call_ok("echo", "echo", json!("still")).await, "still");
    assert_eq!(api.detail("echo").await["active_version"], "1.0.0");
    let status_line = agent.cli(&["status"]).await;
    assert!(
        status_line.stderr.contains("store refuses writes"),
        "{status_line:?}"
    );

    // Space returns: the agent reopens its store by itself.
    std::fs::remove_file(&filler).unwrap();
    eventually("the store to work again", DEADLINE, || async {
        let (_, health) = api.get("/healthz").await;
        (health["status"] == "ok").then_some(())
    })
    .await;
    let (status, body) = api.set_version("echo", "2.0.0").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        api.call_ok("kv", "get", json!({"key": "kept"})).await,
        Value::from("before")
    );
    agent
        .stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(40))
        .await;
}
