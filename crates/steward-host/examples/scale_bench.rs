//! Many runtimes in one host process: 1, 10, 100 and 500 `echo` processes,
//! each behind its own [`ProcessHost`], as an agent hosts them.
//!
//! ```text
//! cargo run --release -p steward-host --example scale_bench
//! ```
//!
//! One `workload=scale lib=steward runtimes=N` line per count with
//!
//! - `start_all_ms`: from starting every host at once until the last
//!   `Started` (`start_ms_per_runtime` divides it by N);
//! - `host_rss_kb_per_runtime`: the growth of this process's `VmRSS`
//!   (`/proc/self/status`) over its RSS before the hosts were made, per
//!   runtime — what an agent pays per runtime;
//! - `child_rss_kb` and `child_pss_kb`: the runtimes' own mean `VmRSS`
//!   and proportional set size (`/proc/PID/smaps_rollup`, which shares
//!   the pages the processes share among them);
//! - `call_p50_us`/`call_p99_us`: one `echo` call at a time, round-robin
//!   over all N runtimes with all of them up (each call finds a process
//!   that sat idle through N - 1 others' calls);
//! - `call_one_p50_us`: the same calls all to one of them, with all up:
//!   what N costs the host itself, apart from the idle processes' cold
//!   caches;
//! - `stop_all_ms`: stopping every host at once until all returned;
//! - `*_x_1`: each figure as a ratio to the same figure at N = 1 of the
//!   same run. Linear growth of a per-runtime figure is a ratio of about 1;
//!   of a total (`start_all_ms`, `stop_all_ms`), about N.
//!
//! Each count runs in a fresh process (this program, started again with
//! `--count N`), so that memory the allocator kept from a smaller count
//! does not hide a larger count's growth.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly when its setup fails"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_host::{Event, MemoryStorage, ProcessConfig, ProcessHost, RuntimeHost};
use steward_protocol::{Body, CallRequest, Value};

mod common;
use common::{AS_RUNTIME, echo_binary, micros, millis, percentile};

const COUNTS: [usize; 4] = [1, 10, 100, 500];
const CALLS: usize = 5_000;

fn main() {
    common::serve_if_runtime();
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, count] = args.as_slice()
        && flag == "--count"
    {
        measure_one(count.parse().expect("--count N"));
        return;
    }
    let mut first: Option<Scale> = None;
    for count in COUNTS {
        let output = std::process::Command::new(echo_binary())
            .args(["--count", &count.to_string()])
            .stderr(std::process::Stdio::null())
            .output()
            .expect("run one count");
        assert!(output.status.success(), "count {count} failed: {output:?}");
        let stdout = String::from_utf8(output.stdout).expect("UTF-8");
        let scale = Scale::parse(count, stdout.lines().last().expect("a result line"));
        println!("{}", scale.line(first.as_ref()));
        first.get_or_insert(scale);
    }
}

/// One count's measurement, printed for the parent to parse.
fn measure_one(count: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime
        .block_on(runtime.spawn(async move {
            let scale = run(&echo_binary(), count).await;
            println!("{}", scale.raw());
        }))
        .expect("bench task");
}

/// What one count measured.
struct Scale {
    count: usize,
    start_all: Duration,
    host_rss_kb_per_runtime: f64,
    child_rss_kb: f64,
    child_pss_kb: f64,
    call_p50: Duration,
    call_p99: Duration,
    call_one_p50: Duration,
    stop_all: Duration,
}

impl Scale {
    fn start_per_runtime(&self) -> f64 {
        millis(self.start_all) / self.count as f64
    }

    /// The figures as numbers only, for [`Scale::parse`].
    fn raw(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {}",
            self.start_all.as_nanos(),
            self.host_rss_kb_per_runtime,
            self.child_rss_kb,
            self.child_pss_kb,
            self.call_p50.as_nanos(),
            self.call_p99.as_nanos(),
            self.call_one_p50.as_nanos(),
            self.stop_all.as_nanos(),
        )
    }

    fn parse(count: usize, raw: &str) -> Self {
        let numbers: Vec<f64> = raw
            .split(' ')
            .map(|n| n.parse().expect("a number"))
            .collect();
        let [
            start,
            host_rss,
            child_rss,
            child_pss,
            p50,
            p99,
            one_p50,
            stop,
        ] = numbers[..]
        else {
            panic!("not a result line: {raw}");
        };
        let nanos = |n: f64| Duration::from_nanos(n as u64);
        Self {
            count,
            start_all: nanos(start),
            host_rss_kb_per_runtime: host_rss,
            child_rss_kb: child_rss,
            child_pss_kb: child_pss,
            call_p50: nanos(p50),
            call_p99: nanos(p99),
            call_one_p50: nanos(one_p50),
            stop_all: nanos(stop),
        }
    }

    fn line(&self, first: Option<&Scale>) -> String {
        let ratios = first.map_or_else(String::new, |first| {
            format!(
                " start_all_x_1={:.1} start_per_runtime_x_1={:.2} host_rss_per_runtime_x_1={:.2} \
                 child_pss_x_1={:.2} call_p50_x_1={:.2} call_one_p50_x_1={:.2} stop_all_x_1={:.1}",
                self.start_all.as_secs_f64() / first.start_all.as_secs_f64(),
                self.start_per_runtime() / first.start_per_runtime(),
                self.host_rss_kb_per_runtime / first.host_rss_kb_per_runtime,
                self.child_pss_kb / first.child_pss_kb,
                self.call_p50.as_secs_f64() / first.call_p50.as_secs_f64(),
                self.call_one_p50.as_secs_f64() / first.call_one_p50.as_secs_f64(),
                self.stop_all.as_secs_f64() / first.stop_all.as_secs_f64(),
            )
        });
        format!(
            "workload=scale lib=steward runtimes={} start_all_ms={:.1} start_ms_per_runtime={:.2} \
             host_rss_kb_per_runtime={:.0} child_rss_kb={:.0} child_pss_kb={:.0} call_p50_us={:.1} \
             call_p99_us={:.1} call_one_p50_us={:.1} stop_all_ms={:.1}{ratios}",
            self.count,
            millis(self.start_all),
            self.start_per_runtime(),
            self.host_rss_kb_per_runtime,
            self.child_rss_kb,
            self.child_pss_kb,
            micros(self.call_p50),
            micros(self.call_p99),
            micros(self.call_one_p50),
            millis(self.stop_all),
        )
    }
}

/// A `kB` field of a `/proc` status-like file, e.g. `VmRSS` or `Pss`.
fn proc_kb(path: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches(" kB").trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in {path}"))
}

async fn run(echo: &std::path::Path, count: usize) -> Scale {
    let rss_before = proc_kb("/proc/self/status", "VmRSS");
    let storage = Arc::new(MemoryStorage::new());
    let hosts: Vec<ProcessHost> = (0..count)
        .map(|i| {
            let config = ProcessConfig::new(format!("echo-{i}"), "1.0.0", echo).args([
                AS_RUNTIME,
                "--version",
                "1.0.0",
            ]);
            ProcessHost::new(config, storage.clone())
        })
        .collect();
    let mut events: Vec<_> = hosts.iter().map(RuntimeHost::watch_events).collect();
    let t0 = Instant::now();
    for host in &hosts {
        host.start().expect("start");
    }
    for (host, events) in hosts.iter().zip(&mut events) {
        loop {
            match tokio::time::timeout(Duration::from_secs(120), events.recv()).await {
                Ok(Ok(Event::Started { .. })) => break,
                Ok(Ok(Event::FailedToStart { error, .. })) => {
                    panic!("{} failed to start: {error}", host.id())
                }
                Ok(Ok(_)) => {}
                other => panic!("{}: no Started event: {other:?}", host.id()),
            }
        }
    }
    let start_all = t0.elapsed();

    let request = Body::RuntimeCallRequest(CallRequest {
        method: "echo".into(),
        args: Value::encode(&"a 64-byte-ish argument for the echo runtime, as in call_bench")
            .expect("args"),
    });
    let mut times = Vec::with_capacity(CALLS);
    for i in 0..CALLS + count.max(100) {
        let host = &hosts[i % count];
        let t = Instant::now();
        host.call(request.clone()).await.expect("echo call");
        // Each runtime's first call is not counted: a cold process.
        if i >= count.max(100) {
            times.push(t.elapsed());
        }
    }
    times.sort_unstable();
    let mut one = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 100 {
        let t = Instant::now();
        hosts[0].call(request.clone()).await.expect("echo call");
        if i >= 100 {
            one.push(t.elapsed());
        }
    }
    one.sort_unstable();

    let rss_after = proc_kb("/proc/self/status", "VmRSS");
    let pids: Vec<u32> = hosts
        .iter()
        .map(|host| host.process().expect("serving").pid)
        .collect();
    let child_rss: u64 = pids
        .iter()
        .map(|pid| proc_kb(&format!("/proc/{pid}/status"), "VmRSS"))
        .sum();
    let child_pss: u64 = pids
        .iter()
        .map(|pid| proc_kb(&format!("/proc/{pid}/smaps_rollup"), "Pss"))
        .sum();

    let t0 = Instant::now();
    let stops: Vec<_> = hosts
        .iter()
        .map(|host| {
            let host = host.clone();
            tokio::spawn(async move { host.stop().await })
        })
        .collect();
    for stop in stops {
        stop.await.expect("stop");
    }
    let stop_all = t0.elapsed();

    Scale {
        count,
        start_all,
        host_rss_kb_per_runtime: rss_after.saturating_sub(rss_before) as f64 / count as f64,
        child_rss_kb: child_rss as f64 / count as f64,
        child_pss_kb: child_pss as f64 / count as f64,
        call_p50: percentile(&times, 0.50),
        call_p99: percentile(&times, 0.99),
        call_one_p50: percentile(&one, 0.50),
        stop_all,
    }
}
