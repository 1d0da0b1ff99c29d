//! What the control API costs: an `echo` call through the agent's HTTP API
//! (load generator → axum → aggregate → runtime process), driven from
//! outside by `wrk` in its own process, next to its two floors measured in
//! the same run:
//!
//! - `lib=http-floor`: the agent's own HTTP stack (its server, limits and
//!   body limit, through `steward_agent::api::serve_bare`) with one route
//!   that answers the agent's answer to the same call at once — no
//!   runtime, no JSON⇄CBOR, no agent middleware;
//! - `lib=host-floor`: the same call made straight on a `ProcessHost` in
//!   this process (no HTTP), one caller per connection.
//!
//! `cargo run --release -p steward-agent --example api_bench`
//! (`./scripts/bench-deps` installs `wrk`). Settings, from the environment:
//! `BENCH_SECS` (each wrk run, default 5), `BENCH_CONNS` (default
//! `1,16,64`), `BENCH_WRK_CPUS` (a `taskset -c` list for wrk, e.g. `0`;
//! run the benchmark itself under `taskset -c 1` to keep them apart).
//!
//! This binary is also the echo runtime both paths start (`api_bench
//! example-runtime echo --version 1.0.0`), so nothing else needs building.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly when its setup fails"
)]

// The allocator the `steward` binary ships with (src/main.rs), for the
// agent and both floors alike, so that the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::routing::post;
use bytes::Bytes;
use steward_agent::agent::{self, RunOptions};
use steward_host::{Event, MemoryStorage, ProcessConfig, ProcessHost, RuntimeHost};
use steward_protocol::{Body, CallRequest, Value};
use tokio_util::sync::CancellationToken;

/// The call every path makes.
const REQUEST: &str = r#"{"method":"echo","args":"ping"}"#;
const CALL_PATH: &str = "/v1/runtimes/echo/call";
/// The host floor's calls per case (after a warm-up of 200).
const HOST_CALLS: usize = 20_000;

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

struct Settings {
    secs: u64,
    conns: Vec<usize>,
    wrk_cpus: Option<String>,
}

impl Settings {
    fn from_env() -> Self {
        let secs = std::env::var("BENCH_SECS")
            .ok()
            .map(|s| s.parse().expect("BENCH_SECS: whole seconds"))
            .unwrap_or(5);
        let conns = std::env::var("BENCH_CONNS")
            .unwrap_or_else(|_| "1,16,64".to_owned())
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("BENCH_CONNS: numbers, comma-separated")
            })
            .collect();
        let wrk_cpus = std::env::var("BENCH_WRK_CPUS")
            .ok()
            .filter(|s| !s.is_empty());
        Self {
            secs,
            conns,
            wrk_cpus,
        }
    }
}

/// One case's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

async fn bench() {
    let settings = Settings::from_env();
    let wrk_found = Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("wrk"));
    assert!(
        wrk_found,
        "api_bench needs `wrk` on PATH (the load generator it runs in its own process): run ./scripts/bench-deps"
    );

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
    let script = dir.path().join("post.lua");
    std::fs::write(&script, wrk_script()).expect("write the wrk script");

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
    let agent_url = format!("http://{}{CALL_PATH}", agent.addr);
    let http = reqwest::Client::new();
    wait_serving(&http, &agent_url).await;

    // The floor answers exactly what the agent answers to this call.
    let answer = http
        .post(&agent_url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(REQUEST)
        .send()
        .await
        .expect("the agent answers");
    assert!(
        answer.status().is_success(),
        "the echo call failed: {answer:?}"
    );
    let answer = answer.bytes().await.expect("the agent's answer");
    let (floor_url, floor_stop) = http_floor(answer.clone()).await;
    let floor_answer = http
        .post(&floor_url)
        .body(REQUEST)
        .send()
        .await
        .expect("the floor answers")
        .bytes()
        .await
        .expect("the floor's answer");
    assert_eq!(
        floor_answer, answer,
        "the floor must answer what the agent does"
    );
    println!(
        "# answer {:?}; wrk {}s per case, cpus {}",
        String::from_utf8_lossy(&answer),
        settings.secs,
        settings.wrk_cpus.as_deref().unwrap_or("any")
    );

    let mut results: HashMap<(&str, usize), Figures> = HashMap::new();
    for &conns in &settings.conns {
        let host = host_floor(&direct, conns).await;
        print_line("host-floor", conns, host);
        results.insert(("host-floor", conns), host);
        for (lib, url) in [("http-floor", &floor_url), ("agent", &agent_url)] {
            let figures = run_wrk(&settings, &script, url, conns);
            print_line(lib, conns, figures);
            results.insert((lib, conns), figures);
        }
    }
    if let (Some(agent), Some(http), Some(host)) = (
        results.get(&("agent", 1)),
        results.get(&("http-floor", 1)),
        results.get(&("host-floor", 1)),
    ) {
        let floor = http.p50_us + host.p50_us;
        let x = agent.p50_us / floor;
        println!(
            "workload=api_call_target target=seq_p50 conns=1 agent_p50_us={:.1} floor_sum_p50_us={floor:.1} x={x:.3} limit=1.15 met={}",
            agent.p50_us,
            if x <= 1.15 { "yes" } else { "no" }
        );
    }
    for &conns in &settings.conns {
        if let (Some(agent), Some(http), Some(host)) = (
            results.get(&("agent", conns)),
            results.get(&("http-floor", conns)),
            results.get(&("host-floor", conns)),
        ) {
            let floor = http.rps.min(host.rps);
            let x = agent.rps / floor;
            println!(
                "workload=api_call_target target=rps conns={conns} agent_rps={:.0} min_floor_rps={floor:.0} x={x:.3} x_http={:.3} x_host={:.3} limit=0.7 met={}",
                agent.rps,
                agent.rps / http.rps,
                agent.rps / host.rps,
                if x >= 0.7 { "yes" } else { "no" }
            );
        }
    }
    floor_stop.cancel();
    direct.stop().await;
    agent.shutdown().await.expect("clean shutdown");
}

fn print_line(lib: &str, conns: usize, f: Figures) {
    println!(
        "workload=api_call lib={lib} conns={conns} rps={:.0} p50_us={:.1} p99_us={:.1} errors={}",
        f.rps, f.p50_us, f.p99_us, f.errors
    );
}

/// The POST, and a `done()` that prints what this benchmark reads (wrk's
/// latencies are in microseconds).
fn wrk_script() -> String {
    format!(
        r#"wrk.method = "POST"
wrk.body = '{REQUEST}'
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wrk_result requests=%d duration_us=%d errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#
    )
}

fn run_wrk(settings: &Settings, script: &Path, url: &str, conns: usize) -> Figures {
    let threads = conns.min(2);
    let mut command = match &settings.wrk_cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus, "wrk"]);
            c
        }
        None => Command::new("wrk"),
    };
    command
        .arg(format!("-t{threads}"))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{}s", settings.secs))
        .args(["--timeout", "5s", "-s"])
        .arg(script)
        .arg(url);
    let out = command.output().expect("wrk runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with("wrk_result "))
        .unwrap_or_else(|| panic!("wrk printed no result line: {stdout}"));
    let kv: HashMap<&str, f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k, v.parse().expect("a number")))
        .collect();
    Figures {
        rps: kv["requests"] / (kv["duration_us"] / 1e6),
        p50_us: kv["p50_us"],
        p99_us: kv["p99_us"],
        errors: kv["errors"] as u64,
    }
}

/// Floor (a): the agent's HTTP stack with a handler that answers at once.
async fn http_floor(answer: Bytes) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the floor");
    let url = format!("http://{}{CALL_PATH}", listener.local_addr().expect("addr"));
    let routes = Router::new().route(
        CALL_PATH,
        post(move |_body: Bytes| {
            let answer = answer.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], answer) }
        }),
    );
    let stop = CancellationToken::new();
    tokio::spawn(steward_agent::api::serve_bare(
        listener,
        routes,
        stop.clone(),
    ));
    (url, stop)
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

/// Floor (b): `conns` callers, each making one call at a time straight
/// on the `ProcessHost`.
async fn host_floor(host: &Arc<ProcessHost>, conns: usize) -> Figures {
    let call = |host: Arc<ProcessHost>| async move {
        host.call(Body::RuntimeCallRequest(CallRequest {
            method: "echo".into(),
            args: Value::encode("ping").expect("encode"),
        }))
        .await
        .is_ok()
    };
    for _ in 0..200 {
        call(host.clone()).await;
    }
    let per_task = HOST_CALLS / conns;
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_task);
                let mut failed = 0;
                for _ in 0..per_task {
                    let one = Instant::now();
                    if !call(host.clone()).await {
                        failed += 1;
                    }
                    times.push(one.elapsed());
                }
                (times, failed)
            })
        })
        .collect();
    let mut times = Vec::with_capacity(HOST_CALLS);
    let mut errors = 0;
    for task in tasks {
        let (mut some, lost) = task.await.expect("task");
        times.append(&mut some);
        errors += lost;
    }
    let total = started.elapsed();
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Figures {
        rps: times.len() as f64 / total.as_secs_f64(),
        p50_us: us(times[times.len() / 2]),
        p99_us: us(times[times.len() * 99 / 100]),
        errors,
    }
}
