//! Calls through the process host to the `echo` runtime, next to a raw
//! Unix-socket ping-pong between two processes, in one run.
//!
//! ```text
//! cargo run --release -p steward-host --example call_bench
//! ```
//!
//! Prints one `key=value` line per workload (`lib=raw-uds` for the
//! baseline, `lib=steward` for the host):
//!
//! - `raw_pingpong`: a 64-byte frame (same 4-byte length framing) echoed by
//!   a second process over a Unix socket, blocking I/O: round trip p50/p99.
//! - `call_seq`: one caller, `echo` with a 64-byte argument: p50/p99.
//! - `call_pipelined`: 1, 8 and 64 concurrent callers for 2 s: calls/s.
//! - `spawn_to_started`: `start()` until the `Started` event, median of 10.
//! - `crash_to_started`: `crash` until `Started` again, with a zero restart
//!   delay so that no backoff is counted, median of 10.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly when its setup fails"
)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use steward_host::{Event, MemoryStorage, ProcessConfig, ProcessHost, RuntimeHost};
use steward_protocol::{Body, CallRequest, Value};
use steward_worker::Backoff;

mod common;
use common::{AS_RUNTIME, echo_binary, micros, millis, percentile};

const FRAME: usize = 64;
const SEQ_CALLS: usize = 20_000;
const PIPELINE_TIME: Duration = Duration::from_secs(2);

fn main() {
    common::serve_if_runtime();
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, path] = args.as_slice()
        && flag == "--raw-peer"
    {
        raw_peer(path);
        return;
    }
    println!("{}", raw_pingpong());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime
        .block_on(runtime.spawn(async {
            let echo = echo_binary();
            println!("{}", call_seq(&echo).await);
            for concurrency in [1, 8, 64] {
                println!("{}", call_pipelined(&echo, concurrency).await);
            }
            println!("{}", spawn_to_started(&echo).await);
            println!("{}", crash_to_started(&echo).await);
        }))
        .expect("bench task");
}

/// The baseline's far end: echoes length-prefixed frames until EOF.
fn raw_peer(path: &str) {
    let mut stream = UnixStream::connect(path).expect("connect to the bench");
    let mut frame = [0u8; 4 + FRAME];
    while stream.read_exact(&mut frame).is_ok() {
        if stream.write_all(&frame).is_err() {
            break;
        }
    }
}

fn raw_pingpong() -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raw.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let mut peer = Command::new(std::env::current_exe().expect("own path"))
        .arg("--raw-peer")
        .arg(&path)
        .spawn()
        .expect("spawn the raw peer");
    let (mut stream, _) = listener.accept().expect("accept the raw peer");
    let mut frame = [0u8; 4 + FRAME];
    frame[..4].copy_from_slice(&(FRAME as u32).to_be_bytes());
    let mut answer = [0u8; 4 + FRAME];
    let mut times = Vec::with_capacity(SEQ_CALLS);
    for i in 0..SEQ_CALLS + 1000 {
        let t0 = Instant::now();
        stream.write_all(&frame).expect("write");
        stream.read_exact(&mut answer).expect("read");
        if i >= 1000 {
            times.push(t0.elapsed());
        }
    }
    drop(stream);
    let _ = peer.wait();
    times.sort_unstable();
    format!(
        "workload=call_seq lib=raw-uds frame_bytes={FRAME} calls={SEQ_CALLS} p50_us={:.2} p99_us={:.2}",
        micros(percentile(&times, 0.50)),
        micros(percentile(&times, 0.99))
    )
}

fn host(echo: &PathBuf, restart_delay: Duration) -> ProcessHost {
    let mut config =
        ProcessConfig::new("echo", "1.0.0", echo).args([AS_RUNTIME, "--version", "1.0.0"]);
    config.backoff = Backoff::constant(restart_delay);
    ProcessHost::new(config, Arc::new(MemoryStorage::new()))
}

async fn started(host: &ProcessHost) {
    let mut events = host.watch_events();
    host.start().expect("start");
    wait_started(&mut events).await;
}

async fn wait_started(events: &mut tokio::sync::broadcast::Receiver<Event>) {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Ok(Event::Started { .. })) => return,
            Ok(Ok(Event::FailedToStart { error, .. })) => panic!("echo failed to start: {error}"),
            Ok(Ok(_)) => {}
            other => panic!("no Started event: {other:?}"),
        }
    }
}

fn echo_request() -> Body {
    let args = Value::from_cbor({
        // A 64-byte CBOR byte string: 0x58 0x3e + 62 bytes.
        let mut cbor = vec![0x58, (FRAME - 2) as u8];
        cbor.extend(std::iter::repeat_n(0x61, FRAME - 2));
        cbor
    })
    .expect("valid CBOR");
    Body::RuntimeCallRequest(CallRequest {
        method: "echo".into(),
        args,
    })
}

async fn call_seq(echo: &PathBuf) -> String {
    let host = host(echo, Duration::from_millis(100));
    started(&host).await;
    let request = echo_request();
    let mut times = Vec::with_capacity(SEQ_CALLS);
    for i in 0..SEQ_CALLS + 1000 {
        let t0 = Instant::now();
        host.call(request.clone()).await.expect("echo call");
        if i >= 1000 {
            times.push(t0.elapsed());
        }
    }
    host.stop().await;
    times.sort_unstable();
    format!(
        "workload=call_seq lib=steward frame_bytes={FRAME} calls={SEQ_CALLS} p50_us={:.2} p99_us={:.2}",
        micros(percentile(&times, 0.50)),
        micros(percentile(&times, 0.99))
    )
}

async fn call_pipelined(echo: &PathBuf, concurrency: usize) -> String {
    let host = host(echo, Duration::from_millis(100));
    started(&host).await;
    let calls = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let callers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (host, calls, done) = (host.clone(), calls.clone(), done.clone());
            tokio::spawn(async move {
                let request = echo_request();
                while !done.load(Ordering::Relaxed) {
                    host.call(request.clone()).await.expect("echo call");
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(PIPELINE_TIME).await;
    done.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.expect("caller");
    }
    let elapsed = t0.elapsed();
    host.stop().await;
    let calls = calls.load(Ordering::Relaxed);
    format!(
        "workload=call_pipelined lib=steward concurrency={concurrency} duration_s={:.2} calls={calls} calls_per_sec={:.0}",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64()
    )
}

async fn spawn_to_started(echo: &PathBuf) -> String {
    let mut times = Vec::new();
    for _ in 0..10 {
        let host = host(echo, Duration::from_millis(100));
        let t0 = Instant::now();
        started(&host).await;
        times.push(t0.elapsed());
        host.stop().await;
    }
    times.sort_unstable();
    format!(
        "workload=spawn_to_started lib=steward runs=10 median_ms={:.2}",
        millis(percentile(&times, 0.5))
    )
}

async fn crash_to_started(echo: &PathBuf) -> String {
    let host = host(echo, Duration::ZERO);
    started(&host).await;
    let mut times = Vec::new();
    let crash = Body::RuntimeCallRequest(CallRequest {
        method: "crash".into(),
        args: Value::null(),
    });
    for _ in 0..10 {
        let mut events = host.watch_events();
        let t0 = Instant::now();
        // The call fails: the process exits instead of answering.
        let _ = host.call(crash.clone()).await;
        wait_started(&mut events).await;
        times.push(t0.elapsed());
    }
    host.stop().await;
    times.sort_unstable();
    format!(
        "workload=crash_to_started lib=steward runs=10 restart_delay_ms=0 median_ms={:.2}",
        millis(percentile(&times, 0.5))
    )
}
