//! Calls through the process host to the `echo` runtime, next to raw
//! Unix-socket floors between two processes, in one run, with both
//! processes pinned to chosen CPUs.
//!
//! ```text
//! cargo run --release -p steward-host --example call_bench
//! ```
//!
//! Prints one `key=value` line per workload (`lib=raw-uds` for the
//! floors, `lib=steward` for the host):
//!
//! - `call_seq`: one call at a time, p50/p99. Raw: a frame of the size of
//!   steward's `echo` request with a 64-byte argument (same 4-byte length
//!   framing), echoed by a second process over a Unix socket, blocking
//!   I/O. Steward: `echo` with that argument through the host.
//! - `call_pipelined`: raw, 64 frames kept in flight over one socket,
//!   written and read in batches (the best a framed protocol can do here);
//!   steward, 1, 8 and 64 concurrent callers. Calls/s over 2 s.
//! - `spawn_to_started`: `start()` until the `Started` event, median of 10.
//! - `crash_to_started`: `crash` until `Started` again, with a zero restart
//!   delay so that no backoff is counted, median of 10.
//!
//! Where the two processes run decides a round trip on this kind of
//! machine (one CPU: a context switch; two: a cross-CPU wake-up), so the
//! `call_seq` and `call_pipelined` workloads run twice, `placement=same-cpu`
//! (every thread of both processes on the first CPU this process may use)
//! and `placement=cross-cpu` (the caller's process on the first, the
//! echoing one on the second), set with `sched_setaffinity`; each steward
//! line carries its ratio to the raw floor of the same placement
//! (`p50_x_raw`, `p99_x_raw`, `x_raw`). The last two workloads run
//! unpinned.
//!
//! The calling process has one tokio worker, as tokio gives a process
//! confined to one CPU (`--host-workers` for more: two workers pinned to
//! one CPU take work from each other, which costs pipelined calls 30–40 %
//! there).
//!
//! `--placement`, `--workload` and `--lib` run a part only, e.g. under
//! `perf stat` (`-- --help` lists them); a steward line whose floor was
//! not run carries no ratio.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly when its setup fails"
)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use steward_host::{Event, MemoryStorage, ProcessConfig, ProcessHost, RuntimeHost};
use steward_protocol::{Body, CallRequest, Kind, Message, Value, encode_message};
use steward_worker::Backoff;

mod common;
use common::{AS_RUNTIME, echo_binary, micros, millis, percentile};

/// The `echo` argument's size, as CBOR.
const ARG: usize = 64;
const SEQ_CALLS: usize = 20_000;
const PIPELINE_TIME: Duration = Duration::from_secs(2);
/// Frames the raw pipelined floor keeps in flight: steward's top
/// concurrency.
const RAW_DEPTH: usize = 64;

/// Calls through the process host next to raw Unix-socket floors; every
/// part by default.
#[derive(Debug, Parser)]
struct Args {
    /// Only this placement of the call workloads.
    #[arg(long, value_enum)]
    placement: Option<Placement>,
    /// Only this workload.
    #[arg(long, value_enum)]
    workload: Option<Workload>,
    /// Only this side of the call workloads: the raw floor or steward.
    #[arg(long, value_enum)]
    lib: Option<Lib>,
    /// Tokio worker threads of the calling process. Every placement pins
    /// that process to one CPU, and tokio gives a process confined to one
    /// CPU one worker; more share that CPU, taking work from each other.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    host_workers: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    CallSeq,
    CallPipelined,
    /// `spawn_to_started` and `crash_to_started`.
    Start,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Lib {
    RawUds,
    Steward,
}

impl Args {
    fn runs<T: PartialEq>(filter: Option<T>, part: T) -> bool {
        filter.is_none_or(|only| only == part)
    }

    fn workload(&self, workload: Workload) -> bool {
        Self::runs(self.workload, workload)
    }

    fn lib(&self, lib: Lib) -> bool {
        Self::runs(self.lib, lib)
    }
}

/// Where the caller's and the echoing process's threads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Placement {
    SameCpu,
    CrossCpu,
}

impl Placement {
    fn name(self) -> &'static str {
        match self {
            Placement::SameCpu => "same-cpu",
            Placement::CrossCpu => "cross-cpu",
        }
    }

    /// The CPUs of the caller's process and of the echoing one.
    fn cpus(self, cpus: &Cpus) -> (usize, usize) {
        match self {
            Placement::SameCpu => (cpus.first, cpus.first),
            Placement::CrossCpu => (cpus.first, cpus.second),
        }
    }
}

/// The first two CPUs this process may run on, and all of them.
struct Cpus {
    all: CpuSet,
    first: usize,
    second: usize,
}

impl Cpus {
    fn of_this_process() -> Self {
        let all = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
        let mut allowed = (0..CpuSet::count()).filter(|&cpu| all.is_set(cpu).unwrap_or(false));
        let first = allowed.next().expect("at least one CPU");
        let second = allowed
            .next()
            .expect("the cross-CPU placement needs two CPUs this process may use (see taskset)");
        Self { all, first, second }
    }
}

fn one_cpu(cpu: usize) -> CpuSet {
    let mut set = CpuSet::new();
    set.set(cpu).expect("CPU number in range");
    set
}

/// Sets the affinity of every thread of process `pid` (0: this one).
/// Threads started later inherit their creator's.
fn pin_process(pid: u32, set: &CpuSet) {
    let tasks = if pid == 0 {
        "/proc/self/task".to_owned()
    } else {
        format!("/proc/{pid}/task")
    };
    for task in std::fs::read_dir(&tasks).expect("list the threads") {
        let tid: i32 = task
            .expect("thread entry")
            .file_name()
            .to_string_lossy()
            .parse()
            .expect("thread id");
        // A thread may have ended since the listing.
        let _ = sched_setaffinity(Pid::from_raw(tid), set);
    }
}

fn main() {
    common::serve_if_runtime();
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, path, cpu] = args.as_slice()
        && flag == "--raw-peer"
    {
        raw_peer(path, cpu.parse().expect("CPU number"));
        return;
    }
    let args = Args::parse();
    let cpus = Cpus::of_this_process();
    let frame = frame_bytes();
    // Built before the pinning below, so sized here as if it came after.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.host_workers))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let echo = echo_binary();
    for placement in [Placement::SameCpu, Placement::CrossCpu] {
        if !Args::runs(args.placement, placement) {
            continue;
        }
        let (host_cpu, peer_cpu) = placement.cpus(&cpus);
        // The tokio workers exist already: pin them with the main thread.
        pin_process(0, &one_cpu(host_cpu));
        let place = placement.name();
        if args.workload(Workload::CallSeq) {
            let raw = args.lib(Lib::RawUds).then(|| raw_pingpong(frame, peer_cpu));
            if let Some(raw) = raw {
                println!(
                    "workload=call_seq lib=raw-uds placement={place} frame_bytes={frame} calls={SEQ_CALLS} p50_us={:.2} p99_us={:.2}",
                    micros(raw.0),
                    micros(raw.1)
                );
            }
            if args.lib(Lib::Steward) {
                let steward = runtime
                    .block_on(runtime.spawn(call_seq(echo.clone(), peer_cpu)))
                    .expect("bench task");
                let ratios = raw.map_or_else(String::new, |raw| {
                    format!(
                        " p50_x_raw={:.2} p99_x_raw={:.2}",
                        steward.0.as_secs_f64() / raw.0.as_secs_f64(),
                        steward.1.as_secs_f64() / raw.1.as_secs_f64(),
                    )
                });
                println!(
                    "workload=call_seq lib=steward placement={place} frame_bytes={frame} calls={SEQ_CALLS} p50_us={:.2} p99_us={:.2}{ratios}",
                    micros(steward.0),
                    micros(steward.1),
                );
            }
        }
        if args.workload(Workload::CallPipelined) {
            let raw_rate = args
                .lib(Lib::RawUds)
                .then(|| raw_pipelined(frame, peer_cpu));
            if let Some(raw_rate) = raw_rate {
                println!(
                    "workload=call_pipelined lib=raw-uds placement={place} frame_bytes={frame} in_flight={RAW_DEPTH} calls_per_sec={raw_rate:.0}"
                );
            }
            if args.lib(Lib::Steward) {
                for concurrency in [1, 8, 64] {
                    let rate = runtime
                        .block_on(runtime.spawn(call_pipelined(
                            echo.clone(),
                            concurrency,
                            peer_cpu,
                        )))
                        .expect("bench task");
                    let ratio = raw_rate
                        .map_or_else(String::new, |raw| format!(" x_raw={:.2}", rate / raw));
                    println!(
                        "workload=call_pipelined lib=steward placement={place} frame_bytes={frame} concurrency={concurrency} calls_per_sec={rate:.0}{ratio}"
                    );
                }
            }
        }
    }
    if args.workload(Workload::Start) {
        pin_process(0, &cpus.all);
        runtime
            .block_on(runtime.spawn(async move {
                println!("{}", spawn_to_started(&echo).await);
                println!("{}", crash_to_started(&echo).await);
            }))
            .expect("bench task");
    }
}

/// The size of steward's `echo` request frame, length prefix included:
/// what the raw floors send.
fn frame_bytes() -> usize {
    let message = Message {
        id: 1000,
        kind: Kind::Request,
        body: echo_request(),
    };
    4 + encode_message(&message).expect("encode").len()
}

/// The floors' far end: echoes whole length-prefixed frames until EOF,
/// as many as each read brought, with one write.
fn raw_peer(path: &str, cpu: usize) {
    pin_process(0, &one_cpu(cpu));
    let mut stream = UnixStream::connect(path).expect("connect to the bench");
    let mut buffer = vec![0u8; 1 << 16];
    let mut have = 0;
    loop {
        match stream.read(&mut buffer[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        let mut whole = 0;
        while have - whole >= 4 {
            let length = u32::from_be_bytes(buffer[whole..whole + 4].try_into().expect("4 bytes"));
            let end = whole + 4 + length as usize;
            if end > have {
                break;
            }
            whole = end;
        }
        if stream.write_all(&buffer[..whole]).is_err() {
            return;
        }
        buffer.copy_within(whole..have, 0);
        have -= whole;
    }
}

/// A raw peer on `cpu`, connected.
fn raw_connection(cpu: usize) -> (UnixStream, Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raw.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let peer = Command::new(std::env::current_exe().expect("own path"))
        .arg("--raw-peer")
        .arg(&path)
        .arg(cpu.to_string())
        .spawn()
        .expect("spawn the raw peer");
    let (stream, _) = listener.accept().expect("accept the raw peer");
    (stream, peer, dir)
}

/// One frame of `frame` bytes, length prefix included.
fn raw_frame(frame: usize) -> Vec<u8> {
    let mut bytes = vec![0x61u8; frame];
    bytes[..4].copy_from_slice(&((frame - 4) as u32).to_be_bytes());
    bytes
}

/// Round trips one at a time: (p50, p99).
fn raw_pingpong(frame: usize, peer_cpu: usize) -> (Duration, Duration) {
    let (mut stream, mut peer, _dir) = raw_connection(peer_cpu);
    let request = raw_frame(frame);
    let mut answer = vec![0u8; frame];
    let mut times = Vec::with_capacity(SEQ_CALLS);
    for i in 0..SEQ_CALLS + 1000 {
        let t0 = Instant::now();
        stream.write_all(&request).expect("write");
        stream.read_exact(&mut answer).expect("read");
        if i >= 1000 {
            times.push(t0.elapsed());
        }
    }
    drop(stream);
    let _ = peer.wait();
    times.sort_unstable();
    (percentile(&times, 0.50), percentile(&times, 0.99))
}

/// [`RAW_DEPTH`] frames in flight: every answer read is replaced by a new
/// request, all those of one read in one write. Calls/s.
fn raw_pipelined(frame: usize, peer_cpu: usize) -> f64 {
    let (mut stream, mut peer, _dir) = raw_connection(peer_cpu);
    let requests = raw_frame(frame).repeat(RAW_DEPTH);
    let mut answers = vec![0u8; requests.len()];
    let mut partial = 0;
    let mut calls = 0u64;
    stream.write_all(&requests).expect("write");
    let t0 = Instant::now();
    while t0.elapsed() < PIPELINE_TIME {
        let n = stream.read(&mut answers[partial..]).expect("read");
        assert!(n > 0, "the raw peer hung up");
        let whole = (partial + n) / frame;
        partial = (partial + n) % frame;
        answers.copy_within(whole * frame..whole * frame + partial, 0);
        calls += whole as u64;
        stream.write_all(&requests[..whole * frame]).expect("write");
    }
    let elapsed = t0.elapsed();
    drop(stream);
    let _ = peer.wait();
    calls as f64 / elapsed.as_secs_f64()
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
        let mut cbor = vec![0x58, (ARG - 2) as u8];
        cbor.extend(std::iter::repeat_n(0x61, ARG - 2));
        cbor
    })
    .expect("valid CBOR");
    Body::RuntimeCallRequest(CallRequest {
        method: "echo".into(),
        args,
    })
}

/// A started host whose echo process runs on `cpu` only.
async fn pinned_host(echo: &PathBuf, cpu: usize) -> ProcessHost {
    let host = host(echo, Duration::from_millis(100));
    started(&host).await;
    let pid = host.process().expect("a serving process").pid;
    pin_process(pid, &one_cpu(cpu));
    host
}

/// Steward's calls one at a time: (p50, p99).
async fn call_seq(echo: PathBuf, peer_cpu: usize) -> (Duration, Duration) {
    let host = pinned_host(&echo, peer_cpu).await;
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
    (percentile(&times, 0.50), percentile(&times, 0.99))
}

/// `concurrency` callers for [`PIPELINE_TIME`]: calls/s.
async fn call_pipelined(echo: PathBuf, concurrency: usize, peer_cpu: usize) -> f64 {
    let host = pinned_host(&echo, peer_cpu).await;
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
    calls.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
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
