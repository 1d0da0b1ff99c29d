//! What hooks cost, each next to its baseline in the same run:
//!
//! ```text
//! cargo bench -p steward-agent --bench hook_bench [-- RUNS]
//! ```
//!
//! - `exec_true`: starting `/bin/true` as a child process and waiting for
//!   it (the floor of any process a hook starts).
//! - `hook_tool`: one hook tool call as a hook makes it — the real
//!   `steward` binary started through its `config-get` link, connecting to
//!   a hook tool server, answered, exiting — started the same way.
//!   Target: p50 ≤ 3 × `exec_true`'s.
//! - `hook_dispatch`: from an event that makes a hook due (an operator's
//!   `resolve --retry`, an HTTP request to a running agent) to the hook's
//!   process running (its first command writes to a FIFO the bench reads),
//!   through the agent's driver, the store's fsync of the pending step,
//!   the leader and the shell.
//!
//! Each line is `workload=… key=value…`; times are microseconds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly when its setup fails"
)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_hooks::test_util::MemoryBackend;
use steward_hooks::tool::{ServerOptions, ToolServer, create_tools_dir};
use steward_hooks::{HookContext, HookInfo, HookKind, UnitInfo};

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(200);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let exec_true = time_runs(runs, || {
        let status = Command::new("/bin/true")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    });
    report("exec_true", "std", &exec_true, None);
    let tool = tokio.block_on(hook_tool(runs));
    report("hook_tool", "steward", &tool, Some(&exec_true));
    let dispatch = tokio.block_on(hook_dispatch(runs.min(100)));
    report("hook_dispatch", "steward", &dispatch, None);
}

/// `runs` timings of `work`, sorted, after a few warm-up runs.
fn time_runs(runs: usize, mut work: impl FnMut()) -> Vec<Duration> {
    for _ in 0..5 {
        work();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .collect();
    times.sort_unstable();
    times
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(workload: &str, lib: &str, sorted: &[Duration], baseline: Option<&[Duration]>) {
    let p50 = percentile(sorted, 0.5);
    let mut line = format!(
        "workload={workload} lib={lib} runs={} p50_us={:.0} p99_us={:.0}",
        sorted.len(),
        micros(p50),
        micros(percentile(sorted, 0.99))
    );
    if let Some(baseline) = baseline {
        let ratio = p50.as_secs_f64() / percentile(baseline, 0.5).as_secs_f64();
        line.push_str(&format!(" p50_vs_exec_true={ratio:.2}"));
    }
    println!("{line}");
}

/// `config-get port` through a tools directory link to the `steward`
/// binary, against a tool server with one registered context.
async fn hook_tool(runs: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools");
    create_tools_dir(&tools, Path::new(STEWARD)).unwrap();
    let server = ToolServer::builtin(ServerOptions::default()).await.unwrap();
    let unit = UnitInfo {
        runtime: "web".to_owned(),
        unit: "web/bench".to_owned(),
        version: "1.0.0".to_owned(),
    };
    let mut settings = serde_json::Map::new();
    settings.insert("port".to_owned(), 8080.into());
    let context = HookContext::new(
        unit,
        HookInfo::unit(HookKind::ConfigChanged),
        None,
        Arc::new(MemoryBackend::new()),
    )
    .unwrap()
    .with_settings(settings);
    let registration = server.register(context);
    let env = registration.env();
    let tool = tools.join("config-get");
    let cwd = dir.path().to_path_buf();
    let times = tokio::task::spawn_blocking(move || {
        time_runs(runs, || {
            let output = Command::new(&tool)
                .arg("port")
                .env_clear()
                .envs(env.iter().map(|(name, value)| (name, value)))
                .current_dir(&cwd)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            assert_eq!(output.stdout, b"8080\n");
        })
    })
    .await
    .unwrap();
    drop(registration.finish().await);
    server.close().await.unwrap();
    times
}

/// A real agent whose `config-changed` hook writes to a FIFO and fails
/// (`on-hook-failure = "block"`), so that every `resolve --retry` runs it
/// again: from the request to the hook's first command.
async fn hook_dispatch(runs: usize) -> Vec<Duration> {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let fifo = dir.path().join("started");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let hook = hooks.join("config-changed");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho started > {:?}\nexit 1\n",
            fifo.display().to_string()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("steward.toml");
    std::fs::write(
        &config,
        format!(
            "[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\"\nhooks = {hooks:?}\non-hook-failure = \"block\"\n\n[[runtime.version]]\nversion = \"1.0.0\"\ncommand = {STEWARD:?}\nargs = [\"example-runtime\", \"echo\", \"--version\", \"1.0.0\"]\n",
            hooks = hooks.display().to_string()
        ),
    )
    .unwrap();
    let port = free_port();
    let mut agent = Command::new(STEWARD)
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--name",
            "bench",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("STEWARD_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Each hook run opens the FIFO for writing; a reader thread opens it
    // for reading (which waits for a writer) and notes when the hook wrote.
    let (started_tx, started_rx) = std::sync::mpsc::channel::<Instant>();
    let fifo_path = fifo.clone();
    std::thread::spawn(move || {
        loop {
            let mut text = String::new();
            let Ok(mut file) = std::fs::File::open(&fifo_path) else {
                return;
            };
            if file.read_to_string(&mut text).is_err() || text.is_empty() {
                continue;
            }
            if started_tx.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    let started_rx = Arc::new(std::sync::Mutex::new(started_rx));
    let next_start = move || {
        let rx = started_rx.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                rx.lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30))
                    .expect("the hook ran")
            })
            .await
            .unwrap()
        }
    };
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/runtimes/echo/resolve");
    // The agent start's own config-changed run comes first.
    next_start().await;
    let mut times = Vec::with_capacity(runs);
    while times.len() < runs {
        let sent = Instant::now();
        let answer = http.post(&url).body("{}").send().await.unwrap();
        if !answer.status().is_success() {
            // The last run has not failed yet (nothing is in error): again.
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        let ran = next_start().await;
        times.push(ran - sent);
    }
    let _ = agent.kill();
    let _ = agent.wait();
    times.sort_unstable();
    times
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
