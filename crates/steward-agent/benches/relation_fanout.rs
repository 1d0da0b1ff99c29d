//! How fast a relation change reaches every related unit, within one
//! agent, next to its baseline in the same run:
//!
//! ```text
//! cargo bench -p steward-agent --bench relation_fanout [-- N...]
//! ```
//!
//! `workload=relation_fanout`: a real agent hosting a `hub` runtime related
//! to N `spoke` runtimes (`hub:db` ↔ `spokeK:store`, N relations), all with
//! shell hooks and an echo process each. An edit of the hub's `gen`
//! setting runs its `config-changed`, which `relation-set`s `gen` in each
//! of its relations, then reports (through a FIFO) that it is about to
//! exit; its changes commit as it exits. Each spoke's
//! `store-relation-changed` reads `gen` with `relation-get` and reports
//! it. Measured: from the hub hook's report to the last spoke's, i.e. the
//! commit, the N watches, N spoke drivers dispatching a hook, and each
//! hook's `relation-get` — with the hooks of the N spokes running at the
//! same time on this machine's cores. N = 1, 10, 100 unless given.
//!
//! The baseline, `exec_sh`, is the floor of one spoke's work: starting
//! `/bin/sh` running the same `relation-get` through the tools (one hook
//! tool call) and writing its FIFO line, measured in the same run;
//! `vs_serial_floor` is the fan-out time over N of those one after the
//! other (below 1 means the spokes ran in parallel). Times are
//! milliseconds; each N is run several times (p50 and max reported).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly when its setup fails"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const STEWARD: &str = env!("CARGO_BIN_EXE_steward");

/// How long one fan-out may take before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(120);

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1, 10, 100]
    } else {
        sizes
    };
    for n in sizes {
        let runs = if n >= 100 { 5 } else { 15 };
        let bench = Fanout::start(n);
        let floor = bench.exec_sh_floor(20);
        let mut times: Vec<Duration> = (1..=runs)
            .map(|generation| bench.fan_out(generation))
            .collect();
        times.sort_unstable();
        let p50 = times[times.len() / 2];
        let max = times[times.len() - 1];
        let serial = floor * u32::try_from(n).unwrap();
        println!(
            "workload=relation_fanout lib=steward units={n} runs={runs} fanout_ms_p50={:.1} fanout_ms_max={:.1} exec_sh_ms_p50={:.2} vs_serial_floor={:.2}",
            ms(p50),
            ms(max),
            ms(floor),
            p50.as_secs_f64() / serial.as_secs_f64()
        );
        bench.report_problems();
        drop(bench);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A running agent with the hub and its N spokes.
struct Fanout {
    dir: tempfile::TempDir,
    n: usize,
    agent: Child,
    hub_done: mpsc::Receiver<(u64, Instant)>,
    spoke_seen: mpsc::Receiver<((String, u64), Instant)>,
}

impl Fanout {
    fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hub_fifo = fifo(dir.path(), "hub");
        let spoke_fifo = fifo(dir.path(), "spokes");
        let hub_hooks = hooks_dir(dir.path(), "hub");
        script(
            &hub_hooks.join("config-changed"),
            &format!(
                "echo \"$STEWARD_AGENT_SOCKET\" > {socket:?}\ngen=$(config-get gen)\nfor id in $(relation-ids db); do relation-set -r \"$id\" gen=\"$gen\"; done\necho \"$gen\" > {hub_fifo:?}",
                socket = dir.path().join("socket")
            ),
        );
        let spoke_hooks = hooks_dir(dir.path(), "spoke");
        script(
            &spoke_hooks.join("store-relation-changed"),
            &format!(
                "gen=$(relation-get gen)\n[ -n \"$gen\" ] || exit 0\necho \"$STEWARD_RUNTIME $gen\" > {spoke_fifo:?}"
            ),
        );
        let config = dir.path().join("steward.toml");
        std::fs::write(&config, config_text(&hub_hooks, &spoke_hooks, n, 0)).unwrap();
        let hub_done = lines(hub_fifo, |line| line.trim().parse().ok());
        let spoke_seen = lines(spoke_fifo, |line| {
            let (runtime, generation) = line.trim().split_once(' ')?;
            Some((runtime.to_owned(), generation.parse().ok()?))
        });
        let agent = Command::new(STEWARD)
            .args(["run", "--listen", "127.0.0.1:0", "--name", "bench"])
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env(
                "STEWARD_LOG",
                std::env::var("STEWARD_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
            .spawn()
            .unwrap();
        let bench = Self {
            dir,
            n,
            agent,
            hub_done,
            spoke_seen,
        };
        // Generation 0 is the hub's first config-changed: every spoke sees
        // it once it joined.
        bench.wait_spokes(0, Instant::now() + PATIENCE);
        bench
    }

    /// One fan-out: the hub's `gen` becomes `generation`; from its hook's
    /// report to the last spoke's.
    fn fan_out(&self, generation: u64) -> Duration {
        let hub_hooks = self.dir.path().join("hub");
        let spoke_hooks = self.dir.path().join("spoke");
        let config = self.dir.path().join("steward.toml");
        let temp = self.dir.path().join(".steward.toml.tmp");
        std::fs::write(
            &temp,
            config_text(&hub_hooks, &spoke_hooks, self.n, generation),
        )
        .unwrap();
        std::fs::rename(&temp, &config).unwrap();
        let deadline = Instant::now() + PATIENCE;
        let hub_at = loop {
            let (seen, at) = self
                .hub_done
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    self.fail(&format!(
                        "the hub's config-changed did not report generation {generation}"
                    ))
                });
            if seen == generation {
                break at;
            }
        };
        let last = self.wait_spokes(generation, deadline);
        last - hub_at
    }

    /// Waits until every spoke reported `generation`; when the last did.
    fn wait_spokes(&self, generation: u64, deadline: Instant) -> Instant {
        let mut seen: BTreeMap<String, Instant> = BTreeMap::new();
        while seen.len() < self.n {
            let ((spoke, got), at) = self
                .spoke_seen
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    self.fail(&format!(
                        "only {} of {} spokes saw generation {generation}",
                        seen.len(),
                        self.n
                    ))
                });
            if got == generation {
                seen.entry(spoke).or_insert(at);
            }
        }
        seen.into_values().max().unwrap()
    }

    /// The p50 of starting `/bin/sh` that makes one hook tool call
    /// through the agent's tools and socket (for a context that does not
    /// exist: the tool connects, asks and is answered, refused) and writes a
    /// line to a FIFO a thread reads: one spoke's work, alone.
    fn exec_sh_floor(&self, runs: usize) -> Duration {
        let fifo_path = fifo(self.dir.path(), "floor");
        let received = lines(fifo_path.clone(), |line| line.trim().parse::<u64>().ok());
        let tools = self.dir.path().join("data").join("tools");
        let socket = std::fs::read_to_string(self.dir.path().join("socket")).unwrap();
        let mut times: Vec<Duration> = (0..runs)
            .map(|run| {
                let started = Instant::now();
                let mut command = Command::new("/bin/sh");
                command
                    .arg("-c")
                    .arg(format!(
                        "relation-get gen >/dev/null 2>&1; echo {run} > {fifo_path:?}"
                    ))
                    .env_clear()
                    .env("PATH", format!("{}:/usr/bin:/bin", tools.display()))
                    .env("STEWARD_CONTEXT_ID", "bench/none:0")
                    .env("STEWARD_AGENT_SOCKET", socket.trim())
                    .stdin(Stdio::null());
                let status = command.status().unwrap();
                assert!(status.success());
                loop {
                    let (got, at) = received.recv_timeout(PATIENCE).expect("the floor's line");
                    if got == run as u64 {
                        break at - started;
                    }
                }
            })
            .collect();
        times.sort_unstable();
        times[times.len() / 2]
    }
}

impl Fanout {
    /// Gives up, with the agent's last log lines.
    fn fail(&self, what: &str) -> ! {
        let log = std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let config: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("config") || line.contains("file change"))
            .collect();
        panic!(
            "{what}; the agent's log lines about its config:\n{}\nits last log lines:\n{}",
            config.join("\n"),
            tail.join("\n")
        )
    }

    /// Prints the agent's warnings and errors (a failed hook, retried
    /// later, would show as an outlier) to stderr.
    fn report_problems(&self) {
        let log = std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
        let problems: Vec<&str> = log
            .lines()
            .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
            .collect();
        if !problems.is_empty() {
            eprintln!(
                "units={}: the agent logged {} warnings or errors, first:",
                self.n,
                problems.len()
            );
            for line in problems.iter().take(10) {
                eprintln!("  {line}");
            }
        }
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
    }
}

fn config_text(hub: &Path, spoke: &Path, n: usize, generation: u64) -> String {
    let runtime = |id: &str, hooks: &Path, settings: &str| {
        format!(
            "[[runtime]]\nid = \"{id}\"\nactive = \"1.0.0\"\nhooks = {hooks:?}\n[runtime.settings]\n{settings}\n[[runtime.version]]\nversion = \"1.0.0\"\ncommand = {STEWARD:?}\nargs = [\"example-runtime\", \"echo\", \"--version\", \"1.0.0\"]\n\n",
            hooks = hooks.display().to_string()
        )
    };
    let mut text = runtime("hub", hub, &format!("gen = {generation}"));
    for k in 0..n {
        text.push_str(&runtime(&format!("spoke{k}"), spoke, ""));
    }
    for k in 0..n {
        text.push_str(&format!(
            "[[relation]]\nendpoints = [\"hub:db\", \"spoke{k}:store\"]\n"
        ));
    }
    text
}

fn hooks_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
    dir
}

fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn fifo(root: &Path, name: &str) -> PathBuf {
    let path = root.join(format!("{name}.fifo"));
    let made = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    path
}

/// Reads `fifo`'s lines on a thread, sending every line `parse` accepts,
/// with when it was read. The FIFO is opened for reading and writing, so
/// it never reaches end-of-file between writers: with an ordinary
/// read-only open, a writer that opens it just as the reader sees the
/// previous writer's end-of-file would lose its line (or fail with a
/// broken pipe).
fn lines<T: Send + 'static>(
    fifo: PathBuf,
    parse: impl Fn(&str) -> Option<T> + Send + 'static,
) -> mpsc::Receiver<(T, Instant)> {
    use std::io::BufRead;
    let (sender, receiver) = mpsc::channel();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(file).lines() {
            let Ok(line) = line else { return };
            let at = Instant::now();
            if let Some(value) = parse(&line)
                && sender.send((value, at)).is_err()
            {
                return;
            }
        }
    });
    receiver
}
