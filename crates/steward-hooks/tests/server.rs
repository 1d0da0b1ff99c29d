//! The hook tool server over a real socket in a temp dir: juju's server
//! table (with its `remote` test command), context registration and
//! finishing, per-context serialisation, framing limits, stalled clients
//! and shutdown.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use steward_hooks::tool::{
    self, CommandError, CommandSpec, Commands, Flag, Invocation, ServerOptions, ToolAnswer,
    ToolOutput, ToolRequest, ToolServer,
};
use steward_worker::BoxFuture;
use tokio::sync::{Semaphore, mpsc};

/// What the test commands of one context share with the test.
#[derive(Debug)]
struct Probe {
    /// Commands of this context running right now, and the most ever.
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// `--slow` commands wait for a permit.
    gate: Semaphore,
    /// `--slow` commands say here that they started, and log their steps.
    entered: mpsc::UnboundedSender<String>,
    events: Mutex<Vec<String>>,
}

#[derive(Debug)]
struct TestContext {
    name: String,
    probe: Arc<Probe>,
    /// Commands run against this context (returned by `finish`).
    ran: usize,
}

/// juju's fixture: `remote` with `--value` and `--slow`.
struct TestCommands;

const REMOTE: CommandSpec = CommandSpec {
    name: "remote",
    args: "",
    purpose: "a test command",
    doc: "",
    flags: &[
        Flag {
            names: &["value"],
            value: Some("VALUE"),
            default: "",
            help: "write VALUE to ./local; \"error\" fails",
        },
        Flag {
            names: &["slow"],
            value: None,
            default: "",
            help: "wait for the test's permit",
        },
    ],
};

impl Commands for TestCommands {
    type Context = TestContext;

    fn context_label(&self, context: &TestContext) -> String {
        format!("test/0:{}", context.name)
    }

    fn contains(&self, command: &str) -> bool {
        command == "remote"
    }

    fn run<'a>(
        &'a self,
        context: &'a mut TestContext,
        invocation: &'a mut Invocation,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            context.ran += 1;
            let args = REMOTE.parse(invocation.args())?;
            tool::check_empty(args.positional())?;
            let value = args.value("value").unwrap_or_default().to_string();
            if value == "error" {
                return Err(CommandError::failed("blam"));
            }
            if args.bool("slow") {
                let probe = &context.probe;
                let now = probe.running.fetch_add(1, Ordering::SeqCst) + 1;
                probe.max_running.fetch_max(now, Ordering::SeqCst);
                let label = format!("{}:{value}", context.name);
                probe.events.lock().unwrap().push(format!("start {label}"));
                let _ = probe.entered.send(label.clone());
                probe.gate.acquire().await.unwrap().forget();
                probe.events.lock().unwrap().push(format!("end {label}"));
                probe.running.fetch_sub(1, Ordering::SeqCst);
                return Ok(());
            }
            invocation.stdout.push_str("eye of newt\n");
            invocation.stderr.push_str("toe of frog\n");
            std::fs::write(invocation.abs_path("local"), value).map_err(CommandError::failed)
        })
    }
}

struct Fixture {
    server: ToolServer<TestCommands>,
    parent: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        Self::with_options(ServerOptions::default()).await
    }

    async fn with_options(mut options: ServerOptions) -> Self {
        let parent = tempfile::tempdir().unwrap();
        options.parent_dir = Some(parent.path().to_path_buf());
        let server = ToolServer::bind(TestCommands, options).await.unwrap();
        Self {
            server,
            parent,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.server.socket_path().to_path_buf()
    }

    fn request(&self, context_id: &str, command: &str, args: &[&str]) -> ToolRequest {
        ToolRequest {
            context_id: context_id.into(),
            dir: self.dir.path().to_str().unwrap().into(),
            command: command.into(),
            args: args.iter().map(|arg| arg.to_string()).collect(),
        }
    }
}

fn context(name: &str) -> (TestContext, Arc<Probe>, mpsc::UnboundedReceiver<String>) {
    let (entered, entries) = mpsc::unbounded_channel();
    let probe = Arc::new(Probe {
        running: AtomicUsize::new(0),
        max_running: AtomicUsize::new(0),
        gate: Semaphore::new(0),
        entered,
        events: Mutex::new(Vec::new()),
    });
    let context = TestContext {
        name: name.into(),
        probe: probe.clone(),
        ran: 0,
    };
    (context, probe, entries)
}

/// One request over a new connection, from a blocking thread as a hook
/// tool would.
async fn call(socket: impl AsRef<Path>, request: ToolRequest) -> ToolAnswer {
    let socket = socket.as_ref().to_path_buf();
    tokio::task::spawn_blocking(move || tool::call(&socket, &request))
        .await
        .unwrap()
        .unwrap()
}

fn refused(error: &str) -> ToolAnswer {
    ToolAnswer::Refused {
        error: error.into(),
    }
}

fn output(code: i32, stdout: &str, stderr: &str) -> ToolAnswer {
    ToolAnswer::Output(ToolOutput {
        code,
        stdout: stdout.into(),
        stderr: stderr.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_runs_in_the_request_dir() {
    let fixture = Fixture::new().await;
    let (ctx, _, _) = context("install");
    let registration = fixture.server.register(ctx);
    let id = registration.id().to_string();
    assert!(id.starts_with("test/0:install:"), "{id}");
    id.rsplit(':').next().unwrap().parse::<u64>().unwrap();

    let answer = call(
        &fixture.socket(),
        fixture.request(&id, "remote", &["--value", "something"]),
    )
    .await;
    assert_eq!(answer, output(0, "eye of newt\n", "toe of frog\n"));
    assert_eq!(
        std::fs::read_to_string(fixture.dir.path().join("local")).unwrap(),
        "something"
    );
    assert_eq!(registration.finish().await.ran, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_in_juju_order() {
    let fixture = Fixture::new().await;
    let (ctx, _, _) = context("start");
    let registration = fixture.server.register(ctx);
    let id = registration.id().to_string();
    let socket = fixture.socket();
    let mut bad_dir = fixture.request(&id, "remote", &[]);
    bad_dir.dir = "foo/bar".into();
    let mut empty_dir = fixture.request(&id, "remote", &[]);
    empty_dir.dir = String::new();
    let mut everything_wrong = fixture.request("whatever", "", &[]);
    everything_wrong.dir = "rel".into();
    let mut wrong_dir_and_context = fixture.request("whatever", "witchcraft", &[]);
    wrong_dir_and_context.dir = "rel".into();

    let cases = [
        // BadCommandName
        (
            fixture.request(&id, "", &[]),
            "bad request: command not specified",
        ),
        (
            fixture.request(&id, "witchcraft", &[]),
            "bad request: unknown command \"witchcraft\"",
        ),
        // BadDir
        (bad_dir, "bad request: dir \"foo/bar\" is not absolute"),
        (empty_dir, "bad request: dir \"\" is not absolute"),
        // BadContextId
        (
            fixture.request("whatever", "remote", &[]),
            "bad request: unknown context \"whatever\"",
        ),
        // The order of the checks.
        (everything_wrong, "bad request: command not specified"),
        (
            wrong_dir_and_context,
            "bad request: dir \"rel\" is not absolute",
        ),
        (
            fixture.request("whatever", "witchcraft", &[]),
            "bad request: unknown context \"whatever\"",
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(
            call(&socket, request.clone()).await,
            refused(expected),
            "{request:?}"
        );
    }
    // None of it reached the context.
    assert_eq!(registration.finish().await.ran, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_and_run_errors_are_exit_codes() {
    let fixture = Fixture::new().await;
    let (ctx, _, _) = context("install");
    let registration = fixture.server.register(ctx);
    let socket = fixture.socket();
    // ParseError
    assert_eq!(
        call(
            &socket,
            fixture.request(registration.id(), "remote", &["--cheese"])
        )
        .await,
        output(2, "", "error: flag provided but not defined: --cheese\n")
    );
    // BrokenCommand
    assert_eq!(
        call(
            &socket,
            fixture.request(registration.id(), "remote", &["--value", "error"])
        )
        .await,
        output(1, "", "error: blam\n")
    );
    // Help
    let ToolAnswer::Output(help) = call(
        &socket,
        fixture.request(registration.id(), "remote", &["--help"]),
    )
    .await
    else {
        panic!("help refused");
    };
    assert_eq!(help.code, 0);
    assert!(
        help.stdout.starts_with("Usage: remote [options]"),
        "{}",
        help.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_or_dropped_context_is_refused() {
    let fixture = Fixture::new().await;
    let socket = fixture.socket();
    let (ctx, _, _) = context("install");
    let finished = fixture.server.register(ctx);
    let finished_id = finished.id().to_string();
    assert_eq!(
        call(&socket, fixture.request(&finished_id, "remote", &[])).await,
        output(0, "eye of newt\n", "toe of frog\n")
    );
    let back = finished.finish().await;
    assert_eq!((back.name.as_str(), back.ran), ("install", 1));
    assert_eq!(
        call(&socket, fixture.request(&finished_id, "remote", &[])).await,
        refused(&format!("bad request: unknown context {finished_id:?}"))
    );

    let (ctx, _, _) = context("install");
    let dropped = fixture.server.register(ctx);
    let dropped_id = dropped.id().to_string();
    assert_ne!(dropped_id, finished_id, "ids are not reused");
    drop(dropped);
    assert_eq!(
        call(&socket, fixture.request(&dropped_id, "remote", &[])).await,
        refused(&format!("bad request: unknown context {dropped_id:?}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_of_one_context_run_one_at_a_time() {
    let fixture = Fixture::new().await;
    let socket = fixture.socket();
    let (ctx, probe, mut entered) = context("a");
    let registration = fixture.server.register(ctx);
    let id = registration.id().to_string();

    // juju's Locks test, with a gate instead of a sleep: four slow calls
    // at once; each must finish before the next starts.
    let calls: Vec<_> = (0..4)
        .map(|n| {
            let request = fixture.request(&id, "remote", &["--slow", "--value", &n.to_string()]);
            let socket = socket.clone();
            tokio::spawn(async move { call(&socket, request).await })
        })
        .collect();
    for _ in 0..4 {
        let first = entered.recv().await.unwrap();
        // While one runs, the others wait: let a B request through the
        // server meanwhile, then check nobody else started.
        let (other, _, _) = context("b");
        let other = fixture.server.register(other);
        assert_eq!(
            call(&socket, fixture.request(other.id(), "remote", &[])).await,
            output(0, "eye of newt\n", "toe of frog\n")
        );
        assert!(
            entered.try_recv().is_err(),
            "a second command started while {first} ran"
        );
        probe.gate.add_permits(1);
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), output(0, "", ""));
    }
    assert_eq!(probe.max_running.load(Ordering::SeqCst), 1);
    let events = probe.events.lock().unwrap().clone();
    for pair in events.chunks(2) {
        let started = pair[0].strip_prefix("start ").unwrap();
        assert_eq!(pair[1], format!("end {started}"), "{events:?}");
    }
    assert_eq!(registration.finish().await.ran, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_contexts_run_concurrently() {
    let fixture = Fixture::new().await;
    let socket = fixture.socket();
    let (a, probe_a, mut entered_a) = context("a");
    let (b, probe_b, mut entered_b) = context("b");
    let (a, b) = (fixture.server.register(a), fixture.server.register(b));
    let slow_a = tokio::spawn(call(
        socket.clone(),
        fixture.request(a.id(), "remote", &["--slow"]),
    ));
    entered_a.recv().await.unwrap();
    // A is held inside its command; B must still get in (juju serialised
    // every command of the server: this would hang there).
    let slow_b = tokio::spawn(call(
        socket.clone(),
        fixture.request(b.id(), "remote", &["--slow"]),
    ));
    tokio::time::timeout(Duration::from_secs(30), entered_b.recv())
        .await
        .expect("context b's command did not start while a's ran")
        .unwrap();
    probe_b.gate.add_permits(1);
    assert_eq!(slow_b.await.unwrap(), output(0, "", ""));
    probe_a.gate.add_permits(1);
    assert_eq!(slow_a.await.unwrap(), output(0, "", ""));
}

fn send_frame(stream: &mut UnixStream, payload: &[u8]) {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    stream.write_all(&frame).unwrap();
}

fn read_frame(stream: &mut UnixStream) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).ok()?;
    let mut payload = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut payload).ok()?;
    Some(payload)
}

fn answer_of(payload: &[u8]) -> ToolAnswer {
    serde_json::from_slice(payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_several_requests() {
    let fixture = Fixture::new().await;
    let (ctx, _, _) = context("install");
    let registration = fixture.server.register(ctx);
    let socket = fixture.socket();
    let requests = [
        fixture.request(registration.id(), "remote", &["--value", "one"]),
        fixture.request("nobody", "remote", &[]),
        fixture.request(registration.id(), "remote", &["--value", "two"]),
    ];
    let answers = tokio::task::spawn_blocking(move || {
        let mut stream = UnixStream::connect(socket).unwrap();
        let mut answers = Vec::new();
        for request in &requests {
            send_frame(&mut stream, &serde_json::to_vec(request).unwrap());
            answers.push(answer_of(&read_frame(&mut stream).unwrap()));
        }
        // A malformed request is refused and the connection stays usable.
        send_frame(&mut stream, b"{not json");
        answers.push(answer_of(&read_frame(&mut stream).unwrap()));
        send_frame(&mut stream, &serde_json::to_vec(&requests[2]).unwrap());
        answers.push(answer_of(&read_frame(&mut stream).unwrap()));
        answers
    })
    .await
    .unwrap();
    let ok = output(0, "eye of newt\n", "toe of frog\n");
    assert_eq!(answers[0], ok);
    assert_eq!(
        answers[1],
        refused("bad request: unknown context \"nobody\"")
    );
    assert_eq!(answers[2], ok);
    let ToolAnswer::Refused { error } = &answers[3] else {
        panic!("malformed request answered {:?}", answers[3]);
    };
    assert!(
        error.starts_with("bad request: malformed request: "),
        "{error}"
    );
    assert_eq!(answers[4], ok);
    assert_eq!(registration.finish().await.ran, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_refused_and_the_connection_closed() {
    let fixture = Fixture::new().await;
    let socket = fixture.socket();
    let (answer, closed) = tokio::task::spawn_blocking(move || {
        let mut stream = UnixStream::connect(socket).unwrap();
        // Only the length: the server must not wait for 2 MiB.
        stream
            .write_all(&(2u32 * 1024 * 1024).to_be_bytes())
            .unwrap();
        let answer = answer_of(&read_frame(&mut stream).unwrap());
        let closed = stream.read(&mut [0u8; 1]).map(|n| n == 0).unwrap_or(true);
        (answer, closed)
    })
    .await
    .unwrap();
    assert_eq!(
        answer,
        refused("bad request: request frame of 2097152 bytes exceeds the limit of 1048576 bytes")
    );
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_blocks_nobody() {
    let fixture = Fixture::new().await;
    let (ctx, _, _) = context("install");
    let registration = fixture.server.register(ctx);
    let socket = fixture.socket();
    let request = fixture.request(registration.id(), "remote", &["--value", "x"]);
    let (answer, still_waiting) = tokio::task::spawn_blocking(move || {
        // Half a frame, then nothing.
        let mut staller = UnixStream::connect(&socket).unwrap();
        staller.write_all(&[0, 0]).unwrap();
        let answer = tool::call(&socket, &request).unwrap();
        // The staller's connection is still open (its request is merely
        // incomplete): the good client did not wait for it to time out.
        staller.set_nonblocking(true).unwrap();
        let still_waiting = matches!(
            staller.read(&mut [0u8; 1]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock
        );
        (answer, still_waiting)
    })
    .await
    .unwrap();
    assert_eq!(answer, output(0, "eye of newt\n", "toe of frog\n"));
    assert!(still_waiting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_times_out() {
    let timeout = Duration::from_millis(300);
    let fixture = Fixture::with_options(ServerOptions {
        request_timeout: timeout,
        ..ServerOptions::default()
    })
    .await;
    let socket = fixture.socket();
    let (read, elapsed) = tokio::task::spawn_blocking(move || {
        let mut staller = UnixStream::connect(&socket).unwrap();
        let started = Instant::now();
        staller.write_all(&[0, 0, 0, 10, b'{']).unwrap();
        // A bound so that a server that never times out fails the test.
        staller
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let read = staller.read(&mut [0u8; 1]).map_err(|e| e.kind());
        (read, started.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(read, Ok(0), "the server closes the stalled connection");
    assert!(elapsed >= timeout, "closed after {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_private_and_gone_after_close() {
    let fixture = Fixture::new().await;
    let socket = fixture.socket();
    let dir = socket.parent().unwrap().to_path_buf();
    assert_eq!(socket.file_name().unwrap(), tool::SOCKET_NAME);
    assert!(dir.starts_with(fixture.parent.path()));
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(socket.exists());

    let (ctx, _, _) = context("install");
    let registration = fixture.server.register(ctx);
    let env = registration.env();
    let names: Vec<_> = env.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "STEWARD_CONTEXT_ID",
            "JUJU_CONTEXT_ID",
            "STEWARD_AGENT_SOCKET",
            "JUJU_AGENT_SOCKET"
        ]
    );
    assert_eq!(env[0].1, registration.id());
    assert_eq!(env[2].1, socket.display().to_string());

    fixture.server.close().await.unwrap();
    assert!(!socket.exists(), "socket file left behind");
    assert!(!dir.exists(), "socket directory left behind");
    let refused = UnixStream::connect(&socket).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::NotFound);
    drop(registration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_server_removes_its_directory_too() {
    let fixture = Fixture::new().await;
    let dir = fixture.socket().parent().unwrap().to_path_buf();
    drop(fixture.server);
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_a_command_in_progress() {
    let fixture = Fixture::new().await;
    let socket = fixture.socket();
    let (ctx, probe, mut entered) = context("install");
    let registration = fixture.server.register(ctx);
    let slow = tokio::spawn(call(
        socket.clone(),
        fixture.request(registration.id(), "remote", &["--slow"]),
    ));
    entered.recv().await.unwrap();
    let close = tokio::spawn(fixture.server.close());
    // Closing stopped the listener, but the running command goes on.
    tokio::time::timeout(Duration::from_secs(30), async {
        while socket.exists() && UnixStream::connect(&socket).is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the server kept accepting connections after close");
    assert!(!close.is_finished(), "close did not wait for the command");
    probe.gate.add_permits(1);
    assert_eq!(slow.await.unwrap(), output(0, "", ""));
    close.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_gives_up_on_a_hung_command() {
    let fixture = Fixture::with_options(ServerOptions {
        shutdown_timeout: Duration::from_millis(200),
        ..ServerOptions::default()
    })
    .await;
    let socket = fixture.socket();
    let (ctx, _probe, mut entered) = context("install");
    let registration = fixture.server.register(ctx);
    let request = fixture.request(registration.id(), "remote", &["--slow"]);
    let hung = tokio::task::spawn_blocking(move || tool::call(&socket, &request));
    entered.recv().await.unwrap();
    // Never released: close must still return, and the client learns the
    // connection was lost.
    tokio::time::timeout(Duration::from_secs(30), fixture.server.close())
        .await
        .expect("close hung")
        .unwrap();
    let error = hung.await.unwrap().unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("lost the connection to the agent at "),
        "{error}"
    );
    drop(registration);
}

/// Logs written to memory, for a test's subscriber.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hooks pass secrets to each other through tool arguments (`relation-set
/// password=…`): the server logs which command ran, never its arguments,
/// at any level. (Single-threaded, so the server's tasks log to this
/// test's subscriber.)
#[tokio::test]
async fn tool_arguments_are_never_logged() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let fixture = Fixture::new().await;
    let (ctx, _, _) = context("install");
    let registration = fixture.server.register(ctx);
    let id = registration.id().to_string();
    let answer = call(
        &fixture.socket(),
        fixture.request(&id, "remote", &["--value", "hunter2"]),
    )
    .await;
    assert_eq!(answer, output(0, "eye of newt\n", "toe of frog\n"));
    registration.finish().await;
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(logged.contains("running hook tool"), "{logged}");
    assert!(
        !logged.contains("hunter2"),
        "an argument was logged:\n{logged}"
    );
}
