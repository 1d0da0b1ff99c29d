//! What the control API costs: an `echo` call through the agent's HTTP API
//! (client → axum → aggregate → runtime process) next to the same call
//! made straight on a `ProcessHost` in this process, measured in one run.
//!
//! `cargo run --release -p steward-agent --example api_bench`
//!
//! This binary is also the echo runtime both paths start (`api_bench
//! example-runtime echo --version 1.0.0`), so nothing else needs building.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly when its setup fails"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_agent::agent::{self, RunOptions};
use steward_host::{Event, MemoryStorage, ProcessConfig, ProcessHost, RuntimeHost};
use steward_protocol::{Body, CallRequest, Value};

const SEQUENTIAL: usize = 5_000;
const PIPELINED: usize = 20_000;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("example-runtime") {
        // `example-runtime echo --version V`: the program name clap sees
        // is "echo", the rest its arguments.
        return steward_runtime_echo::main_from(args[2..].iter().cloned());
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(bench());
    std::process::ExitCode::SUCCESS
}

async fn bench() {
    let exe = std::env::current_exe().expect("own path");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("steward.toml");
    std::fs::write(
        &config,
        format!(
            "[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\"\n[[runtime.version]]\nversion = \"1.0.0\"\ncommand = {:?}\nargs = [\"example-runtime\", \"echo\", \"--version\", \"1.0.0\"]\n",
            exe.display().to_string()
        ),
    )
    .expect("write config");

    let direct = direct_host(&exe).await;
    let agent = agent::start(RunOptions {
        config: Some(config),
        data_dir: Some(dir.path().join("data")),
        listen: "127.0.0.1:0".parse().expect("addr"),
        token_file: None,
        max_request_bytes: agent::DEFAULT_MAX_REQUEST_BYTES,
        name: Some("bench".to_owned()),
        http_timeout: agent::DEFAULT_HTTP_TIMEOUT,
        fleet: None,
    })
    .await
    .expect("agent starts");
    let url = format!("http://{}/v1/runtimes/echo/call", agent.addr);
    let http = reqwest::Client::new();
    wait_serving(&http, &url).await;

    println!(
        "{:<34} {:>10} {:>10} {:>12}",
        "path", "p50 µs", "p99 µs", "calls/s"
    );
    let direct_call = {
        let direct = direct.clone();
        move || {
            let direct = direct.clone();
            async move {
                direct
                    .call(Body::RuntimeCallRequest(CallRequest {
                        method: "echo".into(),
                        args: Value::encode("ping").expect("encode"),
                    }))
                    .await
                    .is_ok()
            }
        }
    };
    let api_call = {
        let http = http.clone();
        let url = url.clone();
        move || {
            let http = http.clone();
            let url = url.clone();
            async move {
                http.post(&url)
                    .body(r#"{"method":"echo","args":"ping"}"#)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success())
            }
        }
    };
    report(
        "direct ProcessHost, sequential",
        sequential(direct_call.clone()).await,
    );
    report(
        "agent HTTP API, sequential",
        sequential(api_call.clone()).await,
    );
    for concurrency in [16, 64] {
        report(
            &format!("direct ProcessHost, {concurrency} in flight"),
            pipelined(direct_call.clone(), concurrency).await,
        );
        report(
            &format!("agent HTTP API, {concurrency} in flight"),
            pipelined(api_call.clone(), concurrency).await,
        );
    }
    direct.stop().await;
    agent.shutdown().await.expect("clean shutdown");
}

async fn direct_host(exe: &Path) -> Arc<ProcessHost> {
    let host = Arc::new(ProcessHost::new(
        ProcessConfig::new("echo", "1.0.0", exe).args([
            "example-runtime",
            "echo",
            "--version",
            "1.0.0",
        ]),
        Arc::new(MemoryStorage::new()),
    ));
    let mut events = host.watch_events();
    host.start().expect("start");
    loop {
        match events.recv().await.expect("events") {
            Event::Started { .. } => return host,
            Event::FailedToStart { error, .. } => panic!("echo failed to start: {error}"),
            _ => {}
        }
    }
}

async fn wait_serving(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let answer = http.post(url).body(r#"{"method":"version"}"#).send().await;
        if answer.is_ok_and(|response| response.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the agent's echo runtime did not start within 30 s");
}

struct Figures {
    p50: Duration,
    p99: Duration,
    per_second: f64,
    failed: usize,
}

fn report(name: &str, figures: Figures) {
    println!(
        "{name:<34} {:>10.1} {:>10.1} {:>12.0}{}",
        figures.p50.as_secs_f64() * 1e6,
        figures.p99.as_secs_f64() * 1e6,
        figures.per_second,
        if figures.failed > 0 {
            format!("  ({} FAILED)", figures.failed)
        } else {
            String::new()
        }
    );
}

async fn sequential<F, Fut>(call: F) -> Figures
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..200 {
        call().await;
    }
    let mut times = Vec::with_capacity(SEQUENTIAL);
    let mut failed = 0;
    let started = Instant::now();
    for _ in 0..SEQUENTIAL {
        let one = Instant::now();
        if !call().await {
            failed += 1;
        }
        times.push(one.elapsed());
    }
    let total = started.elapsed();
    times.sort();
    Figures {
        p50: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
        per_second: SEQUENTIAL as f64 / total.as_secs_f64(),
        failed,
    }
}

async fn pipelined<F, Fut>(call: F, concurrency: usize) -> Figures
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let per_task = PIPELINED / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_task);
                let mut failed = 0;
                for _ in 0..per_task {
                    let one = Instant::now();
                    if !call().await {
                        failed += 1;
                    }
                    times.push(one.elapsed());
                }
                (times, failed)
            })
        })
        .collect();
    let mut times = Vec::with_capacity(PIPELINED);
    let mut failed = 0;
    for task in tasks {
        let (mut some, lost) = task.await.expect("task");
        times.append(&mut some);
        failed += lost;
    }
    let total = started.elapsed();
    times.sort();
    Figures {
        p50: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
        per_second: times.len() as f64 / total.as_secs_f64(),
        failed,
    }
}
