//! Runner workloads W1–W4 of `shared/bench/RUNNER.md`, for side-by-side
//! comparison with the Go peers (suture, juju/worker).
//!
//! ```text
//! cargo run --release -p steward-worker --example runner_bench -- --workload spawn
//! cargo run --release -p steward-worker --example runner_bench            # all four
//! cargo run --release -p steward-worker --example runner_bench -- --runs 3 # all four, 3 times
//! ```
//!
//! Each workload prints exactly one line, `workload=<name> lib=steward
//! key=value ...`, in the format `shared/bench/median.py` merges. Without
//! `--workload` every workload runs in a fresh child process, so one
//! workload's heap never inflates the next one's memory figures.
//!
//! The runtime is tokio's default multi-threaded one (one worker thread per
//! core), as an agent would use; the Go peers run with GOMAXPROCS = cores.
//! `BENCH_THREADS=N` overrides the number of worker threads, to see how much
//! of a figure is cross-thread hand-off.
//!
//! Workers are started with [`Runner::start_simple`], the API for a worker
//! that is a body (one task per id). `--api spawned` starts them as
//! `start_worker` + [`SimpleWorker::spawn`] instead (a body task beside
//! the supervisor task) and prints `lib=steward-spawned`, to show what
//! the one-task path saves.
//!
//! A fifth line, `workload=unpark lib=std`, is the floor under W3's p99:
//! what one wake of a parked thread (a futex wake) costs the waker here.
//! On a VM whose idle vCPU must be woken, its p99 is of the order of W3's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly when its setup fails"
)]

use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use steward_worker::{Backoff, Error, Run, Runner, SimpleWorker, Worker};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Runner workloads W1-W4 (shared/bench/RUNNER.md)")]
struct Args {
    /// Run one workload in this process; without it, run all four, each in
    /// a fresh child process.
    #[arg(long, value_enum)]
    workload: Option<Workload>,
    /// How many times to run the workload(s).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// How workers are started.
    #[arg(long, value_enum, default_value_t = Api::Simple)]
    api: Api,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Api {
    /// `Runner::start_simple`: the body runs on the id's supervisor task.
    Simple,
    /// `Runner::start_worker` with `SimpleWorker::spawn`: a task each.
    Spawned,
}

impl Api {
    fn lib(self) -> &'static str {
        match self {
            Api::Simple => "steward",
            Api::Spawned => "steward-spawned",
        }
    }

    /// Starts a worker under `id` whose every (re)start runs `make_body()`.
    fn start<F, R>(self, runner: &Runner, id: impl Into<Arc<str>>, mut make_body: F)
    where
        F: FnMut() -> R + Send + 'static,
        R: Run,
    {
        match self {
            Api::Simple => runner.start_simple(id, make_body),
            Api::Spawned => runner.start_worker(id, move || {
                let body = make_body();
                async move { Ok(SimpleWorker::spawn(body)) }
            }),
        }
        .expect("start worker");
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Workload {
    Spawn,
    Churn,
    Stop,
    Fatal,
    /// The floor under W3's tail: waking a parked thread.
    Unpark,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let api = args.api;
    let Some(workload) = args.workload else {
        return run_children(args.runs, api);
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Ok(n) = std::env::var("BENCH_THREADS") {
        builder.worker_threads(n.parse().expect("BENCH_THREADS must be a positive integer"));
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    for _ in 0..args.runs {
        if matches!(workload, Workload::Unpark) {
            println!("{}", unpark_floor(1000));
            continue;
        }
        // The driver runs as a task on the runtime, like the code of an
        // agent (and like the Go harness's main goroutine), not on the
        // thread that blocks on the runtime.
        let line = runtime
            .block_on(runtime.spawn(async move {
                match workload {
                    Workload::Spawn => spawn(api, 10_000).await,
                    Workload::Churn => churn(api, 100, Duration::from_secs(2)).await,
                    Workload::Stop => stop_latency(api, 100, 1000).await,
                    Workload::Fatal => fatal(api, 1000, 20).await,
                    Workload::Unpark => unreachable!("measured outside the runtime"),
                }
            }))
            .expect("workload task");
        println!("{line}");
    }
    ExitCode::SUCCESS
}

/// How `value` is spelled on the command line (clap's derived name).
fn arg_name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .expect("no variant is skipped")
        .get_name()
        .to_owned()
}

fn run_children(runs: usize, api: Api) -> ExitCode {
    let exe = std::env::current_exe().expect("own executable path");
    for _ in 0..runs {
        for &workload in Workload::value_variants() {
            let status = Command::new(&exe)
                .args(["--workload", &arg_name(workload), "--api", &arg_name(api)])
                .status()
                .expect("run a workload in a child process");
            if !status.success() {
                eprintln!("workload {} failed: {status}", arg_name(workload));
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The body of a worker that signals on entry, waits to be stopped, and
/// signals on exit.
fn idle_body(
    on_entry: impl FnOnce() + Send + 'static,
    on_exit: impl FnOnce() + Send + 'static,
) -> impl Run {
    move |stop: CancellationToken| async move {
        on_entry();
        stop.cancelled().await;
        on_exit();
        Ok(())
    }
}

/// Counts arrivals and wakes one waiter when `target` is reached.
struct Countdown {
    count: AtomicUsize,
    target: usize,
    reached: Notify,
}

impl Countdown {
    fn new(target: usize) -> Arc<Self> {
        Arc::new(Self {
            count: AtomicUsize::new(0),
            target,
            reached: Notify::new(),
        })
    }

    fn arrive(&self) {
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.target {
            self.reached.notify_one();
        }
    }

    async fn wait(&self) {
        self.reached.notified().await;
    }
}

/// W1: start n idle workers into a running runner, then shut it down.
async fn spawn(api: Api, n: usize) -> String {
    let runner = Runner::new();
    let rss_base = proc_status_kb("VmRSS");
    let entered = Countdown::new(n);
    let t0 = Instant::now();
    for i in 0..n {
        let entered = entered.clone();
        api.start(&runner, format!("w{i}"), move || {
            let entered = entered.clone();
            idle_body(move || entered.arrive(), || {})
        });
    }
    entered.wait().await;
    let spawn_time = t0.elapsed();
    let rss_all = proc_status_kb("VmRSS");
    let hwm = proc_status_kb("VmHWM");

    let t1 = Instant::now();
    runner.kill();
    runner.wait().await.expect("clean shutdown");
    let stop_time = t1.elapsed();
    format!(
        "workload=spawn lib={} n={n} spawn_ns_per_worker={:.1} shutdown_ns_per_worker={:.1} \
         peak_rss_kb={hwm} rss_base_kb={rss_base} rss_all_kb={rss_all} rss_bytes_per_worker={:.1}",
        api.lib(),
        spawn_time.as_nanos() as f64 / n as f64,
        stop_time.as_nanos() as f64 / n as f64,
        (rss_all - rss_base) as f64 * 1024.0 / n as f64,
    )
}

/// W2: n workers that fail with a non-fatal error as soon as they start,
/// restarted with no delay.
async fn churn(api: Api, n: usize, duration: Duration) -> String {
    let runner = Runner::builder()
        .backoff(Backoff::constant(Duration::ZERO))
        .build();
    let entries = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    for i in 0..n {
        let entries = entries.clone();
        api.start(&runner, format!("c{i}"), move || {
            let entries = entries.clone();
            move |_stop| async move {
                entries.fetch_add(1, Ordering::Relaxed);
                Err(Error::msg("churn: non-fatal error"))
            }
        });
    }
    tokio::time::sleep(duration).await;
    let total = entries.load(Ordering::Relaxed);
    let elapsed = t0.elapsed();
    runner.kill();
    runner.wait().await.expect("clean shutdown");
    let restarts = total - n as u64;
    format!(
        "workload=churn lib={} workers={n} restart_delay_ns=0 duration_s={:.3} restarts={restarts} \
         restarts_per_sec={:.1}",
        api.lib(),
        elapsed.as_secs_f64(),
        restarts as f64 / elapsed.as_secs_f64(),
    )
}

/// W3: with `idle` workers running, start, stop and remove a fresh worker
/// `iters` times; time until the runner reports it gone and until its body
/// returned.
async fn stop_latency(api: Api, idle: usize, iters: usize) -> String {
    let runner = Runner::new();
    let entered = Countdown::new(idle);
    for i in 0..idle {
        let entered = entered.clone();
        api.start(&runner, format!("idle{i}"), move || {
            let entered = entered.clone();
            idle_body(move || entered.arrive(), || {})
        });
    }
    entered.wait().await;

    let (entered_tx, mut entered_rx) = mpsc::unbounded_channel();
    let (exited_tx, mut exited_rx) = mpsc::unbounded_channel();
    let mut stop_times = Vec::with_capacity(iters);
    let mut exit_times = Vec::with_capacity(iters);
    for i in 0..iters {
        let id = format!("x{i}");
        let (entered_tx, exited_tx) = (entered_tx.clone(), exited_tx.clone());
        api.start(&runner, id.as_str(), move || {
            let (entered_tx, exited_tx) = (entered_tx.clone(), exited_tx.clone());
            idle_body(
                move || {
                    let _ = entered_tx.send(());
                },
                move || {
                    let _ = exited_tx.send(Instant::now());
                },
            )
        });
        entered_rx.recv().await.expect("worker entered");
        let t0 = Instant::now();
        runner.stop_and_remove(&id).await.expect("clean stop");
        let t1 = Instant::now();
        let exited_at = exited_rx.recv().await.expect("worker exited");
        stop_times.push(t1 - t0);
        exit_times.push(exited_at - t0);
    }
    runner.kill();
    runner.wait().await.expect("clean shutdown");
    stop_times.sort_unstable();
    exit_times.sort_unstable();
    format!(
        "workload=stop lib={} idle={idle} iters={iters} stop_median_us={:.2} stop_p99_us={:.2} \
         exit_median_us={:.2} exit_p99_us={:.2}",
        api.lib(),
        micros(median(&stop_times)),
        micros(percentile(&stop_times, 0.99)),
        micros(median(&exit_times)),
        micros(percentile(&exit_times, 0.99)),
    )
}

/// W4: `idle` workers plus one that returns a fatal error once all run;
/// time from that return until the runner's `wait()` returns.
async fn fatal(api: Api, idle: usize, reps: usize) -> String {
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        // `TerminateAgent` is fatal under the default rules.
        let runner = Runner::new();
        let entered = Countdown::new(idle + 1);
        let exits = Arc::new(AtomicUsize::new(0));
        for i in 0..idle {
            let (entered, exits) = (entered.clone(), exits.clone());
            api.start(&runner, format!("idle{i}"), move || {
                let (entered, exits) = (entered.clone(), exits.clone());
                idle_body(
                    move || entered.arrive(),
                    move || {
                        exits.fetch_add(1, Ordering::AcqRel);
                    },
                )
            });
        }
        let release = Arc::new(Notify::new());
        let fatal_at = Arc::new(Mutex::new(None));
        {
            let (entered, release, fatal_at) = (entered.clone(), release.clone(), fatal_at.clone());
            api.start(&runner, "fatal", move || {
                let (entered, release, fatal_at) =
                    (entered.clone(), release.clone(), fatal_at.clone());
                move |stop: CancellationToken| async move {
                    entered.arrive();
                    tokio::select! {
                        () = release.notified() => {}
                        () = stop.cancelled() => return Ok(()),
                    }
                    *fatal_at.lock().unwrap() = Some(Instant::now());
                    Err(Error::TerminateAgent)
                }
            });
        }
        entered.wait().await;
        tokio::time::sleep(Duration::from_millis(20)).await; // let the runner settle
        release.notify_one();
        let result = runner.wait().await;
        let done = Instant::now();
        assert!(
            matches!(result, Err(Error::TerminateAgent)),
            "unexpected runner result: {result:?}"
        );
        let exited = exits.load(Ordering::Acquire);
        assert_eq!(
            exited, idle,
            "only {exited}/{idle} idle workers exited before wait returned"
        );
        let fatal_at = fatal_at.lock().unwrap().expect("fatal worker ran");
        times.push(done - fatal_at);
    }
    times.sort_unstable();
    format!(
        "workload=fatal lib={} idle={idle} reps={reps} fatal_to_wait_median_us={:.2}",
        api.lib(),
        micros(median(&times))
    )
}

/// The floor under a runner's tail latency: what waking a parked thread
/// costs the thread that wakes it (`Thread::unpark`, a futex wake), the
/// system call tokio makes when a woken task goes to its run queue and
/// another worker is asleep. The parked thread is given time to really
/// sleep (its CPU idle) before each wake, as tokio's idle workers are.
fn unpark_floor(iters: usize) -> String {
    let (woken_tx, woken_rx) = std::sync::mpsc::channel::<()>();
    let sleeper = std::thread::spawn(move || {
        for _ in 0..iters {
            std::thread::park();
            woken_tx.send(()).unwrap();
        }
    });
    let mut costs = Vec::with_capacity(iters);
    for _ in 0..iters {
        std::thread::sleep(Duration::from_micros(300));
        let t0 = Instant::now();
        sleeper.thread().unpark();
        costs.push(t0.elapsed());
        woken_rx.recv().unwrap();
    }
    sleeper.join().unwrap();
    costs.sort_unstable();
    format!(
        "workload=unpark lib=std iters={iters} unpark_median_us={:.2} unpark_p99_us={:.2}",
        micros(median(&costs)),
        micros(percentile(&costs, 0.99)),
    )
}

/// A "VmXXX:  N kB" field of /proc/self/status.
fn proc_status_kb(field: &str) -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(-1)
}

/// Same definition as the Go peers: the value at rank round(p·n), 1-based.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64 + 0.5) as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
