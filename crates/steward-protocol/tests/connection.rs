//! `Connection` over real sockets: calls both ways, many in flight, the
//! concurrency bound, the handshake gate, closing and hanging up, deadlines,
//! hostile bytes from a raw peer, big values, write batching, and isolation
//! between connections.
//!
//! Connections run over the halves of `unix_socket::split`, as the host's
//! and the runtimes' do, except those of `flush_a_burst`, which wrap
//! tokio's own halves (so the generic `AsyncRead`/`AsyncWrite` path is
//! covered too).
//!
//! Every wait that could hang is bounded by [`within`]; nothing sleeps
//! hoping for something to have happened.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::future::join_all;
use steward_protocol::{
    Body, CallRequest, CallResponse, Connection, Error, ErrorBody, Handler, Kind, Limits, Message,
    NoRequests, PROTOCOL_VERSION, Peer, RuntimeInfoRequest, RuntimeInfoResponse, State, StorageKey,
    StorageValue, Value, decode_message, encode_message, unix_socket,
};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{Barrier, Notify, Semaphore};
use tokio::time::timeout;

/// The most any single wait in these tests may take before it counts as a
/// hang.
const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

// ---------------------------------------------------------------- helpers

fn int(i: u64) -> Value {
    Value::encode(&i).unwrap()
}

fn call_request(method: &str, args: Value) -> Body {
    Body::RuntimeCallRequest(CallRequest {
        method: method.to_owned(),
        args,
    })
}

/// A CBOR byte string (major type 2) of `len` patterned bytes, with a
/// 4-byte length header (`0x5a`).
fn byte_string(len: usize) -> Value {
    let mut cbor = Vec::with_capacity(len + 5);
    cbor.push(0x5a);
    cbor.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
    cbor.extend((0..len).map(|i| u8::try_from((i * 31 + i / 251) % 251).unwrap()));
    Value::from_cbor(cbor).unwrap()
}

/// CBOR `[tag, args]`: what [`echo`] answers, so that a caller can tell
/// which side served it and that its own arguments came back.
fn tagged(tag: &str, args: &Value) -> Value {
    assert!(tag.len() < 24);
    let mut cbor = vec![0x82, 0x60 + u8::try_from(tag.len()).unwrap()];
    cbor.extend_from_slice(tag.as_bytes());
    cbor.extend_from_slice(args.as_cbor());
    Value::from_cbor(cbor).unwrap()
}

/// The standard answers: a call is echoed as `[tag, args]`, the handshake
/// requests are served, anything else is refused.
fn echo(tag: &str, request: Body) -> Body {
    match request {
        Body::RuntimeCallRequest(call) => Body::RuntimeCallResponse(CallResponse {
            result: tagged(tag, &call.args),
        }),
        Body::RuntimeInfoRequest(_) => Body::RuntimeInfoResponse(RuntimeInfoResponse {
            protocol_version: PROTOCOL_VERSION,
            runtime_version: format!("{tag}-1.0"),
            features: vec![],
        }),
        Body::RuntimePing => Body::Empty,
        Body::HostStorageGet(key) => Body::HostStorageGetResponse(StorageValue {
            value: Some(tagged(tag, &Value::encode(&key.key).unwrap())),
        }),
        other => Body::Error(ErrorBody::new(
            "test",
            ErrorBody::CODE_UNSUPPORTED,
            format!("unexpected {}", other.name()),
        )),
    }
}

/// Unwraps a call's result, which must be `RuntimeCallResponse`.
fn result_of(response: Result<Body, Error>) -> Value {
    match response {
        Ok(Body::RuntimeCallResponse(CallResponse { result })) => result,
        other => panic!("expected a RuntimeCallResponse, got {other:?}"),
    }
}

/// Asserts a call failed because the connection closed; returns why.
fn closed_reason(response: Result<Body, Error>) -> String {
    match response {
        Err(Error::ConnectionClosed { reason }) => reason.to_string(),
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
}

struct Echo(&'static str);

impl Handler for Echo {
    async fn handle(&self, request: Body, _peer: &Peer) -> Body {
        echo(self.0, request)
    }
}

type BoxBody = Pin<Box<dyn Future<Output = Body> + Send>>;

/// A handler written as a closure, for tests that need to hold requests.
struct FnHandler<F>(F);

impl<F> Handler for FnHandler<F>
where
    F: Fn(Body, Peer) -> BoxBody + Send + Sync + 'static,
{
    fn handle(&self, request: Body, peer: &Peer) -> impl Future<Output = Body> + Send {
        (self.0)(request, peer.clone())
    }
}

fn handler<F, Fut>(f: F) -> FnHandler<impl Fn(Body, Peer) -> BoxBody + Send + Sync + 'static>
where
    F: Fn(Body, Peer) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Body> + Send + 'static,
{
    FnHandler(move |request, peer| Box::pin(f(request, peer)) as BoxBody)
}

/// Two connections over the two ends of a Unix socket pair.
fn pair(
    a: impl Handler,
    a_limits: Limits,
    b: impl Handler,
    b_limits: Limits,
) -> (Connection, Connection) {
    let (a_socket, b_socket) = UnixStream::pair().unwrap();
    let (a_read, a_write) = unix_socket::split(a_socket).unwrap();
    let (b_read, b_write) = unix_socket::split(b_socket).unwrap();
    (
        Connection::start(a_read, a_write, a, a_limits),
        Connection::start(b_read, b_write, b, b_limits),
    )
}

/// Both sides echo, both ready.
fn echo_pair() -> (Connection, Connection) {
    let (a, b) = pair(Echo("A"), Limits::default(), Echo("B"), Limits::default());
    a.mark_ready();
    b.mark_ready();
    (a, b)
}

/// A connection whose other end is a bare socket the test drives by hand.
fn raw_peer(handler: impl Handler, limits: Limits) -> (Connection, UnixStream) {
    let (socket, raw) = UnixStream::pair().unwrap();
    let (read, write) = unix_socket::split(socket).unwrap();
    (Connection::start(read, write, handler, limits), raw)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

async fn write_message(raw: &mut UnixStream, message: &Message) {
    let payload = encode_message(message).unwrap();
    raw.write_all(&frame(&payload)).await.unwrap();
}

async fn read_message(raw: &mut UnixStream) -> Message {
    let mut length = [0; 4];
    raw.read_exact(&mut length).await.unwrap();
    let mut payload = vec![0; usize::try_from(u32::from_be_bytes(length)).unwrap()];
    raw.read_exact(&mut payload).await.unwrap();
    decode_message(&payload, &Limits::default()).unwrap()
}

/// Reads until the other side shuts its writing down; panics on data.
async fn expect_eof(raw: &mut UnixStream) {
    let mut byte = [0; 1];
    match within("the connection to hang up its socket", raw.read(&mut byte)).await {
        Ok(0) => {}
        // A reset also means the other side is gone.
        Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("expected end of stream, got {other:?}"),
    }
}

/// Polls each of `calls` once, in order, from one task, and asserts that
/// none of them finished: each has sent (or queued) its request and waits.
/// Unconstrained, so that tokio's budget cannot make a poll return early.
async fn poll_each_once<F: Future + Unpin>(calls: &mut [F]) {
    tokio::task::unconstrained(poll_fn(|cx| {
        for call in calls.iter_mut() {
            assert!(Pin::new(&mut *call).poll(cx).is_pending());
        }
        Poll::Ready(())
    }))
    .await;
}

/// Spawns `a.call(request)` and returns its handle.
fn spawn_call(
    connection: &Connection,
    request: Body,
) -> tokio::task::JoinHandle<Result<Body, Error>> {
    let connection = connection.clone();
    tokio::spawn(async move { connection.call(request).await })
}

// ------------------------------------------------------------------ tests

/// 1. Each side calls the other on the same socket pair, many times at once
///    (both sides number their requests from 1, so ids collide across the
///    two directions), and each gets the other side's answer to its own
///    arguments.
#[tokio::test(flavor = "multi_thread")]
async fn calls_go_both_ways() {
    let (a, b) = echo_pair();

    let answer = within("A calls B", a.call(call_request("m", int(7)))).await;
    assert_eq!(result_of(answer), tagged("B", &int(7)));
    let answer = within("B calls A", b.call(call_request("m", int(8)))).await;
    assert_eq!(result_of(answer), tagged("A", &int(8)));

    let a_calls = (0..50).map(|i| spawn_call(&a, call_request("m", int(i))));
    let b_calls = (0..50).map(|i| spawn_call(&b, call_request("m", int(1000 + i))));
    let a_calls: Vec<_> = a_calls.collect();
    let b_calls: Vec<_> = b_calls.collect();
    let (a_answers, b_answers) = within("calls both ways at once", async {
        tokio::join!(join_all(a_calls), join_all(b_calls))
    })
    .await;
    for (i, answer) in (0..).zip(a_answers) {
        assert_eq!(result_of(answer.unwrap()), tagged("B", &int(i)));
    }
    for (i, answer) in (0..).zip(b_answers) {
        assert_eq!(result_of(answer.unwrap()), tagged("A", &int(1000 + i)));
    }
    assert_eq!(a.state(), State::Ready);
    assert_eq!(b.state(), State::Ready);
}

/// 2. 1000 calls are in flight at once (B holds every request until all
///    1000 have arrived), then the answers come back in whatever order and
///    each caller gets exactly its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_calls_in_flight_each_get_their_own_answer() {
    const CALLS: u64 = 1000;
    let barrier = Arc::new(Barrier::new(usize::try_from(CALLS).unwrap()));
    let limits = Limits {
        max_concurrent_requests: 1000,
        ..Limits::default()
    };
    let held = handler(move |request, _| {
        let barrier = barrier.clone();
        async move {
            // Only passes once all 1000 requests are being served at once.
            if matches!(&request, Body::RuntimeCallRequest(call) if call.method == "held") {
                barrier.wait().await;
            }
            echo("B", request)
        }
    });
    let (a, b) = pair(NoRequests, Limits::default(), held, limits);
    b.mark_ready();

    let calls: Vec<_> = (0..CALLS)
        .map(|i| spawn_call(&a, call_request("held", int(i * 7919))))
        .collect();
    let answers = within("1000 calls held until all arrive", join_all(calls)).await;
    for (i, answer) in (0..CALLS).zip(answers) {
        assert_eq!(result_of(answer.unwrap()), tagged("B", &int(i * 7919)));
    }
    // The connection is still fine afterwards.
    let answer = within("a call after", a.call(call_request("m", int(1)))).await;
    assert_eq!(result_of(answer), tagged("B", &int(1)));
}

/// 3. With `max_concurrent_requests = 4`, 50 calls reach B but no more than
///    4 of its handlers ever run at once (and 4 do), and all 50 succeed.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_handlers_are_bounded() {
    const BOUND: usize = 4;
    const CALLS: u64 = 50;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(Semaphore::new(0));
    let release = Arc::new(Semaphore::new(0));
    let held = {
        let (running, most) = (running.clone(), most.clone());
        let (arrived, release) = (arrived.clone(), release.clone());
        handler(move |request, _| {
            let (running, most) = (running.clone(), most.clone());
            let (arrived, release) = (arrived.clone(), release.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                arrived.add_permits(1);
                release.acquire().await.unwrap().forget();
                running.fetch_sub(1, Ordering::SeqCst);
                echo("B", request)
            }
        })
    };
    let limits = Limits {
        max_concurrent_requests: BOUND,
        ..Limits::default()
    };
    let (a, b) = pair(NoRequests, Limits::default(), held, limits);
    b.mark_ready();

    let calls: Vec<_> = (0..CALLS)
        .map(|i| spawn_call(&a, call_request("m", int(i))))
        .collect();
    // The first 4 are served at once and held.
    within(
        "4 handlers running",
        arrived.acquire_many(u32::try_from(BOUND).unwrap()),
    )
    .await
    .unwrap()
    .forget();
    assert_eq!(running.load(Ordering::SeqCst), BOUND);
    // Let them all go, one permit per call.
    release.add_permits(usize::try_from(CALLS).unwrap());
    let answers = within("all 50 calls", join_all(calls)).await;
    for (i, answer) in (0..CALLS).zip(answers) {
        assert_eq!(result_of(answer.unwrap()), tagged("B", &int(i)));
    }
    assert_eq!(most.load(Ordering::SeqCst), BOUND, "most handlers at once");
    assert_eq!(running.load(Ordering::SeqCst), 0);
}

/// 4. Before the handshake B refuses application calls with a `protocol`
///    not-ready error but serves pings; after `mark_ready` it serves calls.
#[tokio::test(flavor = "multi_thread")]
async fn calls_wait_for_the_handshake() {
    let (a, b) = pair(NoRequests, Limits::default(), Echo("B"), Limits::default());
    assert_eq!(b.state(), State::Handshaking);

    let expect_not_ready = |answer: Result<Body, Error>| match answer {
        Err(Error::Remote(error)) => {
            assert_eq!(error.module, "protocol");
            assert_eq!(error.code, ErrorBody::CODE_NOT_READY);
            assert!(error.message.contains("RuntimeCallRequest"), "{error}");
        }
        other => panic!("expected a not-ready refusal, got {other:?}"),
    };
    expect_not_ready(within("early call", a.call(call_request("m", int(1)))).await);
    assert_eq!(
        within("ping", a.call(Body::RuntimePing)).await.unwrap(),
        Body::Empty
    );
    // A ping is no handshake: still refused.
    expect_not_ready(within("call after ping", a.call(call_request("m", int(2)))).await);
    assert_eq!(b.state(), State::Handshaking);

    b.mark_ready();
    assert_eq!(b.state(), State::Ready);
    let answer = within("call when ready", a.call(call_request("m", int(3)))).await;
    assert_eq!(result_of(answer), tagged("B", &int(3)));
}

/// 4b. `RuntimeInfoRequest` is served before the handshake, and the
///     `RuntimeInfoResponse` makes both sides ready by itself.
#[tokio::test(flavor = "multi_thread")]
async fn the_handshake_answer_makes_both_sides_ready() {
    let (a, b) = pair(NoRequests, Limits::default(), Echo("B"), Limits::default());
    let info = Body::RuntimeInfoRequest(RuntimeInfoRequest {
        runtime_id: "b".into(),
        protocol_version: PROTOCOL_VERSION,
        expected_version: "B-1.0".into(),
    });
    match within("info", a.call(info)).await {
        Ok(Body::RuntimeInfoResponse(info)) => {
            assert_eq!(info.protocol_version, PROTOCOL_VERSION);
            assert_eq!(info.runtime_version, "B-1.0");
        }
        other => panic!("expected RuntimeInfoResponse, got {other:?}"),
    }
    assert_eq!(b.state(), State::Ready, "the side that answered");
    assert_eq!(a.state(), State::Ready, "the side that got the answer");
    let answer = within(
        "call after the handshake",
        a.call(call_request("m", int(4))),
    )
    .await;
    assert_eq!(result_of(answer), tagged("B", &int(4)));
}

/// 5. `close` fails every pending call at once with the reason, later calls
///    fail without being sent, and the other side sees the hang-up.
#[tokio::test(flavor = "multi_thread")]
async fn close_fails_every_pending_call() {
    const PENDING: u64 = 20;
    let arrived = Arc::new(Semaphore::new(0));
    let never = {
        let arrived = arrived.clone();
        handler(move |_, _| {
            arrived.add_permits(1);
            std::future::pending()
        })
    };
    let (a, b) = pair(NoRequests, Limits::default(), never, Limits::default());
    b.mark_ready();
    let calls: Vec<_> = (0..PENDING)
        .map(|i| spawn_call(&a, call_request("m", int(i))))
        .collect();
    // Every call reached B, so every one is pending on A.
    within(
        "all calls reach B",
        arrived.acquire_many(u32::try_from(PENDING).unwrap()),
    )
    .await
    .unwrap()
    .forget();

    a.close("bye");
    assert_eq!(a.state(), State::Closed("bye".into()));
    for answer in within("pending calls fail", join_all(calls)).await {
        assert_eq!(closed_reason(answer.unwrap()), "bye");
    }
    let later = within("a later call", a.call(call_request("m", int(0)))).await;
    assert_eq!(closed_reason(later), "bye");
    assert_eq!(&*within("closed()", a.closed()).await, "bye");
    // Idempotent: the first reason stays.
    a.close("again");
    assert_eq!(a.state(), State::Closed("bye".into()));

    let b_reason = within("B notices", b.closed()).await;
    assert!(b_reason.contains("hung up"), "{b_reason}");
}

/// 6. When B goes away (every handle dropped) A's pending calls fail and A
///    closes with a reason.
#[tokio::test(flavor = "multi_thread")]
async fn the_peer_hanging_up_fails_pending_calls() {
    const PENDING: u64 = 10;
    let arrived = Arc::new(Semaphore::new(0));
    let never = {
        let arrived = arrived.clone();
        handler(move |_, _| {
            arrived.add_permits(1);
            std::future::pending()
        })
    };
    let (a, b) = pair(NoRequests, Limits::default(), never, Limits::default());
    b.mark_ready();
    let calls: Vec<_> = (0..PENDING)
        .map(|i| spawn_call(&a, call_request("m", int(i))))
        .collect();
    within(
        "all calls reach B",
        arrived.acquire_many(u32::try_from(PENDING).unwrap()),
    )
    .await
    .unwrap()
    .forget();

    drop(b);
    let reason = within("A notices", a.closed()).await;
    assert!(reason.contains("hung up"), "{reason}");
    for answer in within("pending calls fail", join_all(calls)).await {
        assert_eq!(closed_reason(answer.unwrap()), *reason);
    }
    assert_eq!(a.state(), State::Closed(reason.clone()));
    let later = within("a later call", a.call(Body::RuntimePing)).await;
    assert_eq!(closed_reason(later), *reason);
}

/// 6b. A peer that dies with our request unread resets the socket: that is
///     a hang-up too, not a bad frame (it used to be reported as `bad
///     frame: Connection reset by peer`, and logged as a warning).
#[tokio::test]
async fn a_reset_is_a_hang_up() {
    let (a, raw) = raw_peer(NoRequests, Limits::default());
    a.mark_ready();
    let call = spawn_call(&a, call_request("m", int(1)));
    // The request reaches the raw side's receive queue, unread; closing
    // the socket with unread data is what makes Linux reset it.
    within("the request arrives", raw.readable()).await.unwrap();
    drop(raw);
    let reason = within("A notices", a.closed()).await;
    assert_eq!(&*reason, "the other side hung up");
    assert_eq!(
        closed_reason(within("the call", call).await.unwrap()),
        *reason
    );
}

/// 7. A call abandoned by its deadline is forgotten: its late answer is
///    dropped without harm and later calls are matched to their own
///    answers. (In-memory pipe and paused time: the deadline is virtual.)
#[tokio::test(start_paused = true)]
async fn a_call_past_its_deadline_is_forgotten() {
    let release = Arc::new(Notify::new());
    let arrived = Arc::new(Semaphore::new(0));
    let answered = Arc::new(Semaphore::new(0));
    let b_handler = {
        let (release, arrived, answered) = (release.clone(), arrived.clone(), answered.clone());
        handler(move |request, _| {
            let (release, arrived, answered) = (release.clone(), arrived.clone(), answered.clone());
            async move {
                if matches!(&request, Body::RuntimeCallRequest(call) if call.method == "slow") {
                    arrived.add_permits(1);
                    release.notified().await;
                    answered.add_permits(1);
                }
                echo("B", request)
            }
        })
    };
    let (a_end, b_end) = tokio::io::duplex(64 * 1024);
    let (a_read, a_write) = tokio::io::split(a_end);
    let (b_read, b_write) = tokio::io::split(b_end);
    let a = Connection::start(a_read, a_write, NoRequests, Limits::default());
    let b = Connection::start(b_read, b_write, b_handler, Limits::default());
    b.mark_ready();

    let late = timeout(
        Duration::from_millis(100),
        a.call(call_request("slow", int(1))),
    )
    .await;
    assert!(late.is_err(), "the slow call should miss its deadline");
    within("the slow call reached B", arrived.acquire())
        .await
        .unwrap()
        .forget();

    // B answers the abandoned call now.
    release.notify_one();
    within("B answers late", answered.acquire())
        .await
        .unwrap()
        .forget();
    for i in 2..10 {
        let answer = within("a later call", a.call(call_request("fast", int(i)))).await;
        assert_eq!(result_of(answer), tagged("B", &int(i)));
    }
    assert_eq!(a.state(), State::Handshaking, "A is not closed");
    assert_eq!(b.state(), State::Ready);
}

/// 8. Junk in a frame closes the connection with a reason naming a bad,
///    malformed frame; the pending call fails; A hangs up its socket.
#[tokio::test(flavor = "multi_thread")]
async fn garbage_bytes_close_the_connection() {
    // Pseudo-random bytes (fixed seed), CBOR that is not a message, and a
    // message with trailing bytes.
    let mut random = Vec::with_capacity(64);
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        random.push(x.to_le_bytes()[0]);
    }
    random[0] = 0xff; // a break where a message should start
    let not_a_message = Value::encode("hello").unwrap().as_cbor().to_vec();
    let mut trailing = encode_message(&Message {
        id: 1,
        kind: Kind::Response,
        body: Body::Empty,
    })
    .unwrap()
    .to_vec();
    trailing.push(0x00);

    for junk in [random, not_a_message, trailing] {
        let (a, mut raw) = raw_peer(NoRequests, Limits::default());
        let pending = spawn_call(&a, call_request("m", int(1)));
        let request = within("the request", read_message(&mut raw)).await;
        assert_eq!(request.kind, Kind::Request);

        raw.write_all(&frame(&junk)).await.unwrap();
        let reason = within("A closes", a.closed()).await;
        assert!(reason.contains("bad frame"), "{junk:02x?}: {reason}");
        assert!(reason.contains("malformed"), "{junk:02x?}: {reason}");
        assert_eq!(
            closed_reason(within("pending call", pending).await.unwrap()),
            *reason
        );
        expect_eof(&mut raw).await;
    }
}

/// 9. A frame of exactly `max_frame_bytes` is accepted; a peer announcing a
///    bigger one gets the connection closed with a reason about the frame.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_frame_closes_the_connection() {
    let limits = Limits {
        max_frame_bytes: 1024,
        ..Limits::default()
    };
    let (a, mut raw) = raw_peer(NoRequests, limits);

    // At the limit: fine.
    let first = spawn_call(&a, call_request("m", int(1)));
    let request = within("first request", read_message(&mut raw)).await;
    let response = |padding: usize| Message {
        id: request.id,
        kind: Kind::Response,
        body: Body::RuntimeCallResponse(CallResponse {
            result: Value::from_cbor({
                // Major type 2 with a 2-byte length: the size grows 1:1.
                let mut cbor = vec![0x59];
                cbor.extend_from_slice(&u16::try_from(padding).unwrap().to_be_bytes());
                cbor.resize(3 + padding, 0xab);
                cbor
            })
            .unwrap(),
        }),
    };
    let base = encode_message(&response(900)).unwrap().len();
    let exact = response(900 + 1024 - base);
    assert_eq!(encode_message(&exact).unwrap().len(), 1024);
    write_message(&mut raw, &exact).await;
    let answer = within("first answer", first).await.unwrap();
    assert_eq!(answer.unwrap(), exact.body);

    // Over it: closed.
    let second = spawn_call(&a, call_request("m", int(2)));
    within("second request", read_message(&mut raw)).await;
    let mut oversized = 2048_u32.to_be_bytes().to_vec();
    oversized.resize(4 + 2048, 0x00);
    raw.write_all(&oversized).await.unwrap();
    let reason = within("A closes", a.closed()).await;
    assert!(reason.contains("frame"), "{reason}");
    assert!(
        reason.contains("too big") || reason.contains("exceeds"),
        "{reason}"
    );
    assert_eq!(
        closed_reason(within("pending call", second).await.unwrap()),
        *reason
    );
    expect_eof(&mut raw).await;
}

/// 10. A frame cut short by the peer hanging up closes the connection (no
///     waiting for the rest forever).
#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_frame_closes_the_connection() {
    let (a, mut raw) = raw_peer(NoRequests, Limits::default());
    let pending = spawn_call(&a, call_request("m", int(1)));
    within("the request", read_message(&mut raw)).await;

    let mut truncated = 100_u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[0x83; 10]);
    raw.write_all(&truncated).await.unwrap();
    drop(raw);

    let reason = within("A closes", a.closed()).await;
    assert!(
        reason.contains("bad frame") || reason.contains("hung up"),
        "{reason}"
    );
    assert_eq!(
        closed_reason(within("pending call", pending).await.unwrap()),
        *reason
    );
}

/// 11. A 2 MiB argument crosses the socket and comes back intact.
#[tokio::test(flavor = "multi_thread")]
async fn a_two_mebibyte_value_round_trips() {
    let (a, b) = echo_pair();
    let big = byte_string(2 * 1024 * 1024);
    assert_eq!(big.as_cbor().len(), 2 * 1024 * 1024 + 5);

    let answer = within("2 MiB call", a.call(call_request("big", big.clone()))).await;
    let result = result_of(answer);
    assert_eq!(result, tagged("B", &big));
    assert_eq!(&result.as_cbor()[3..], big.as_cbor());

    // Both ways at once.
    let (from_a, from_b) = within("2 MiB both ways", async {
        tokio::join!(
            a.call(call_request("big", big.clone())),
            b.call(call_request("big", big.clone()))
        )
    })
    .await;
    assert_eq!(result_of(from_a), tagged("B", &big));
    assert_eq!(result_of(from_b), tagged("A", &big));
}

/// A writer that holds every write until its gate opens, and counts
/// flushes that got through.
struct GatedWriter<W> {
    inner: W,
    gate: Arc<Gate>,
    flushes: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Gate {
    open: AtomicBool,
    waiting: Mutex<Option<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waiting.lock().unwrap().take() {
            waker.wake();
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for GatedWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.gate.open.load(Ordering::SeqCst) {
            *this.gate.waiting.lock().unwrap() = Some(cx.waker().clone());
            if !this.gate.open.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        if result.is_ready() {
            this.flushes.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// 12. Frames queued while the writer is busy go out together: 50 requests
///     queued behind a stalled socket cost at most 2 flushes, not 50.
#[tokio::test(flavor = "multi_thread")]
async fn queued_frames_are_written_in_batches() {
    let flushes = flush_a_burst(50).await.requests;
    assert!(
        (1..=2).contains(&flushes),
        "50 requests took {flushes} flushes"
    );
}

/// How many flushes each side of [`flush_a_burst`] made.
struct BurstFlushes {
    /// A's, sending the requests.
    requests: usize,
    /// B's, answering them.
    answers: usize,
}

/// Sends `calls` requests from A to an echoing B, all queued behind A's
/// closed gate so that they leave in one write, checks every answer, and
/// counts both sides' flushes.
async fn flush_a_burst(calls: u64) -> BurstFlushes {
    let a_gate = Arc::new(Gate::default());
    let a_flushes = Arc::new(AtomicUsize::new(0));
    let b_gate = Arc::new(Gate::default());
    b_gate.open();
    let b_flushes = Arc::new(AtomicUsize::new(0));
    let (a_socket, b_socket) = UnixStream::pair().unwrap();
    let (a_read, a_write) = a_socket.into_split();
    let (b_read, b_write) = b_socket.into_split();
    let a_write = GatedWriter {
        inner: a_write,
        gate: a_gate.clone(),
        flushes: a_flushes.clone(),
    };
    let b_write = GatedWriter {
        inner: b_write,
        gate: b_gate,
        flushes: b_flushes.clone(),
    };
    let a = Connection::start(a_read, a_write, NoRequests, Limits::default());
    let b = Connection::start(b_read, b_write, Echo("B"), Limits::default());
    b.mark_ready();

    let mut pending: Vec<_> = (0..calls)
        .map(|i| Box::pin(a.call(call_request("m", int(i)))))
        .collect();
    // One poll each queues every request (the queue has room for all).
    poll_each_once(&mut pending).await;
    a_gate.open();
    let answers = within("a burst of calls", join_all(pending)).await;
    for (i, answer) in (0..calls).zip(answers) {
        assert_eq!(result_of(answer), tagged("B", &int(i)));
    }
    BurstFlushes {
        requests: a_flushes.load(Ordering::SeqCst),
        answers: b_flushes.load(Ordering::SeqCst),
    }
}

/// 12b. The answering side batches too: 50 requests that arrive in one
///      write are answered with a couple of flushes (the first answer at
///      once, the rest together), not one flush per answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_requests_is_answered_in_batches() {
    let flushes = flush_a_burst(50).await.answers;
    assert!(
        (1..=4).contains(&flushes),
        "50 answers took {flushes} flushes"
    );
}

/// 12c. A batch of answers is capped: 200 requests read together are
///      not answered with one write at the end (which would queue every
///      answer first), but in batches of at most 64.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_burst_is_answered_in_capped_batches() {
    let flushes = flush_a_burst(200).await.answers;
    // 1 at once, then ⌈199 / 64⌉ = 4 batches; a read split in two adds
    // a few.
    assert!(
        (5..=10).contains(&flushes),
        "200 answers took {flushes} flushes"
    );
}

/// A connection whose writes are counted (one flush per write pass), and
/// whose other end is a bare socket the test drives by hand.
fn counted_raw_peer() -> (Connection, UnixStream, Arc<AtomicUsize>) {
    let (socket, raw) = UnixStream::pair().unwrap();
    let (read, write) = unix_socket::split(socket).unwrap();
    let gate = Arc::new(Gate::default());
    gate.open();
    let flushes = Arc::new(AtomicUsize::new(0));
    let write = GatedWriter {
        inner: write,
        gate,
        flushes: flushes.clone(),
    };
    let connection = Connection::start(read, write, NoRequests, Limits::default());
    (connection, raw, flushes)
}

/// Reads `count` requests from the raw end and answers all of them with
/// one write (echoing each call's arguments), as a peer that reads a burst
/// and answers it together does.
async fn answer_together(raw: &mut UnixStream, count: u64) {
    let mut answers = Vec::new();
    for _ in 0..count {
        let request = within("a request", read_message(raw)).await;
        let Body::RuntimeCallRequest(call) = request.body else {
            panic!("expected a call, got {:?}", request.body);
        };
        let answer = Message {
            id: request.id,
            kind: Kind::Response,
            body: Body::RuntimeCallResponse(CallResponse { result: call.args }),
        };
        answers.extend(frame(&encode_message(&answer).unwrap()));
    }
    raw.write_all(&answers).await.unwrap();
}

/// 12d. Callers woken together by one burst of answers write their next
///      requests together: the first at once, the other 15 with one more
///      write, not one write each. (On one thread, so that the callers
///      run one after the other, each finding the writer free, as they do
///      on a busy host.)
#[tokio::test]
async fn callers_woken_by_one_burst_write_their_next_requests_together() {
    const CALLERS: u64 = 16;
    let (connection, mut raw, flushes) = counted_raw_peer();
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let connection = connection.clone();
            tokio::spawn(async move {
                let first = connection.call(call_request("m", int(i))).await;
                let second = connection.call(call_request("m", int(100 + i))).await;
                (result_of(first), result_of(second))
            })
        })
        .collect();
    answer_together(&mut raw, CALLERS).await;
    let before = flushes.load(Ordering::SeqCst);
    // The second requests, all of them, before anything else is answered.
    answer_together(&mut raw, CALLERS).await;
    let burst_writes = flushes.load(Ordering::SeqCst) - before;
    assert_eq!(
        burst_writes, 2,
        "16 callers woken by one burst wrote their requests with {burst_writes} writes"
    );
    for (i, caller) in (0..CALLERS).zip(callers) {
        let (first, second) = within("a caller", caller).await.unwrap();
        assert_eq!((first, second), (int(i), int(100 + i)));
    }
}

/// 12e. A call answered alone writes its next request at once: by the
///      time the next call's first poll returns, its request was written.
#[tokio::test]
async fn a_call_after_a_lone_answer_is_written_at_once() {
    let (connection, mut raw, flushes) = counted_raw_peer();
    for i in 0..5 {
        let before = flushes.load(Ordering::SeqCst);
        let mut call = [Box::pin(connection.call(call_request("m", int(i))))];
        poll_each_once(&mut call).await;
        assert_eq!(
            flushes.load(Ordering::SeqCst),
            before + 1,
            "call {i} was not written by its first poll"
        );
        answer_together(&mut raw, 1).await;
        let [call] = call;
        assert_eq!(result_of(within("an answer", call).await), int(i));
    }
}

/// 12f. The caller that promised a burst's write may be dropped before it
///      writes (its deadline): the requests queued behind it still go out.
#[tokio::test]
async fn the_burst_goes_out_when_the_caller_that_was_to_write_it_is_dropped() {
    let (connection, mut raw, flushes) = counted_raw_peer();
    // Three calls answered in one burst.
    let first: Vec<_> = (0..3)
        .map(|i| Box::pin(connection.call(call_request("m", int(i)))))
        .collect();
    let (answers, ()) = within("the first burst", async {
        tokio::join!(join_all(first), answer_together(&mut raw, 3))
    })
    .await;
    for (i, answer) in (0..3).zip(answers) {
        assert_eq!(result_of(answer), int(i));
    }

    let before = flushes.load(Ordering::SeqCst);
    // The first writes at once, the second defers, the third queues.
    let mut calls: Vec<_> = (10..13)
        .map(|i| Box::pin(connection.call(call_request("m", int(i)))))
        .collect();
    poll_each_once(&mut calls).await;
    assert_eq!(
        flushes.load(Ordering::SeqCst),
        before + 1,
        "only the first of the burst's callers has written"
    );
    let deferring = calls.remove(1);
    drop(deferring);

    let mut seen = Vec::new();
    while seen.len() < 4 {
        let message = within("the rest of the burst", read_message(&mut raw)).await;
        seen.push(message.body);
    }
    let args: Vec<_> = seen
        .iter()
        .filter_map(|body| match body {
            Body::RuntimeCallRequest(call) => Some(call.args.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(args, vec![int(10), int(11), int(12)]);
    assert!(
        seen.iter().any(|body| matches!(body, Body::Cancel(_))),
        "the dropped call is cancelled: {seen:?}"
    );
}

/// 13. Closing one connection leaves another one alone.
#[tokio::test(flavor = "multi_thread")]
async fn closing_one_connection_leaves_another_alone() {
    let (a1, b1) = echo_pair();
    let (a2, b2) = echo_pair();
    for (a, b) in [(&a1, &b1), (&a2, &b2)] {
        assert_eq!(
            result_of(within("before", a.call(call_request("m", int(1)))).await),
            tagged("B", &int(1))
        );
        assert_eq!(
            result_of(within("before", b.call(call_request("m", int(2)))).await),
            tagged("A", &int(2))
        );
    }

    a1.close("done with 1");
    assert_eq!(
        closed_reason(within("closed pair", a1.call(Body::RuntimePing)).await),
        "done with 1"
    );
    within("B1 notices", b1.closed()).await;
    assert!(matches!(b1.state(), State::Closed(_)));

    assert_eq!(a2.state(), State::Ready);
    assert_eq!(b2.state(), State::Ready);
    for i in 0..20 {
        assert_eq!(
            result_of(within("after", a2.call(call_request("m", int(i)))).await),
            tagged("B", &int(i))
        );
        assert_eq!(
            result_of(within("after", b2.call(call_request("m", int(i)))).await),
            tagged("A", &int(i))
        );
    }
}

// ------------------------------------------- bugs: these fail on purpose

/// BUG: a handler that calls back through its `Peer` (the documented use:
/// a runtime reading host storage while serving a call) deadlocks as soon
/// as more requests arrive than `max_concurrent_requests`. The read loop
/// waits for a serving permit before reading the next frame, so the
/// response the running handler waits for is never read, so the handler
/// never finishes and never frees its permit.
///
/// Here B serves one request at a time; A sends a second call while B's
/// first handler awaits A's storage answer, and that answer is queued
/// behind the second request on the wire.
#[tokio::test(flavor = "multi_thread")]
async fn handlers_calling_back_do_not_deadlock_when_saturated() {
    let storage_asked = Arc::new(Semaphore::new(0));
    let storage_may_answer = Arc::new(Semaphore::new(0));
    let a_handler = {
        let (asked, may_answer) = (storage_asked.clone(), storage_may_answer.clone());
        handler(move |request, _| {
            let (asked, may_answer) = (asked.clone(), may_answer.clone());
            async move {
                asked.add_permits(1);
                may_answer.acquire().await.unwrap().forget();
                echo("A", request)
            }
        })
    };
    let b_handler = handler(|request, peer: Peer| async move {
        let Body::RuntimeCallRequest(call) = request else {
            return echo("B", request);
        };
        let storage = peer
            .call(Body::HostStorageGet(StorageKey { key: "k".into() }))
            .await;
        match storage {
            Ok(Body::HostStorageGetResponse(_)) => echo("B", Body::RuntimeCallRequest(call)),
            other => Body::Error(ErrorBody::new(
                "test",
                ErrorBody::CODE_INTERNAL,
                format!("storage failed: {other:?}"),
            )),
        }
    });
    let b_limits = Limits {
        max_concurrent_requests: 1,
        ..Limits::default()
    };
    let (a, b) = pair(a_handler, Limits::default(), b_handler, b_limits);
    a.mark_ready();
    b.mark_ready();

    let first = spawn_call(&a, call_request("m", int(1)));
    // B's only handler is now waiting for A's storage answer.
    within("B asks A for storage", storage_asked.acquire())
        .await
        .unwrap()
        .forget();
    // The second request goes on the wire before the storage answer.
    let mut second = Box::pin(a.call(call_request("m", int(2))));
    poll_fn(|cx| {
        assert!(second.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    storage_may_answer.add_permits(2);

    let (first, second) = match timeout(Duration::from_secs(5), async {
        tokio::join!(first, second)
    })
    .await
    {
        Ok(answers) => answers,
        Err(_) => panic!(
            "deadlock: B's read loop waits for a serving permit and so never reads \
             the storage response its only running handler is waiting for"
        ),
    };
    assert_eq!(result_of(first.unwrap()), tagged("B", &int(1)));
    assert_eq!(result_of(second), tagged("B", &int(2)));
}

/// BUG: a side whose handlers are all busy stops reading, so it does not
/// notice the other side hanging up: its own pending calls then wait
/// forever instead of failing with `ConnectionClosed`, and `closed()`
/// never returns. (The `Connection` docs promise it closes "when the other
/// side hangs up".)
#[tokio::test(flavor = "multi_thread")]
async fn a_saturated_side_still_notices_the_peer_hanging_up() {
    let arrived = Arc::new(Semaphore::new(0));
    let never = {
        let arrived = arrived.clone();
        handler(move |_, _| {
            arrived.add_permits(1);
            std::future::pending()
        })
    };
    let limits = Limits {
        max_concurrent_requests: 1,
        ..Limits::default()
    };
    let (b, mut raw) = raw_peer(never, limits);
    b.mark_ready();

    // B calls the raw peer, which reads the request and never answers.
    let pending = spawn_call(&b, Body::RuntimePing);
    within("B's request", read_message(&mut raw)).await;
    // Two requests to B: the first occupies its only handler, the second
    // waits for a permit.
    for id in [1, 2] {
        let request = Message {
            id,
            kind: Kind::Request,
            body: call_request("m", int(id)),
        };
        write_message(&mut raw, &request).await;
    }
    within("B serves the first", arrived.acquire())
        .await
        .unwrap()
        .forget();
    // The peer dies.
    drop(raw);

    let reason = match timeout(Duration::from_secs(5), b.closed()).await {
        Ok(reason) => reason,
        Err(_) => panic!(
            "B never noticed the peer hanging up: its read loop is parked waiting \
             for a serving permit, and its own call to the dead peer hangs"
        ),
    };
    assert_eq!(
        closed_reason(within("B's pending call", pending).await.unwrap()),
        *reason
    );
}

/// BUG: a response bigger than `max_frame_bytes` closes the whole
/// connection (the writer's codec refuses the frame, and a write error
/// closes everything), failing every other call in flight, instead of
/// answering that one call with an error. `send_response` already turns an
/// unencodable response into a `CODE_INTERNAL` error; an oversized one
/// slips past that because the size is only checked by the codec at write
/// time. The same happens to a caller whose request is too big: its call,
/// and every other, fails with "write failed: frame size too big".
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_response_fails_only_its_own_call() {
    let limits = Limits {
        max_frame_bytes: 1024,
        ..Limits::default()
    };
    let big_answer = handler(|request, _| async move {
        match request {
            Body::RuntimeCallRequest(call) if call.method == "big" => {
                Body::RuntimeCallResponse(CallResponse {
                    result: byte_string(2048),
                })
            }
            other => echo("B", other),
        }
    });
    let (a, b) = pair(NoRequests, limits, big_answer, limits);
    b.mark_ready();

    let answer = within("the oversized answer", a.call(call_request("big", int(1)))).await;
    assert!(
        matches!(&answer, Err(Error::Remote(_))),
        "expected an error answer for this call only, got {answer:?} \
         (A: {:?}, B: {:?})",
        a.state(),
        b.state()
    );
    let answer = within("a later call", a.call(call_request("m", int(2)))).await;
    assert_eq!(result_of(answer), tagged("B", &int(2)));
}

/// A request whose body variant this side does not know (a newer peer's
/// addition) is answered "unsupported"; the connection keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_request_variant_is_refused_without_closing() {
    let (connection, mut raw) = raw_peer(Echo("A"), Limits::default());
    connection.mark_ready();
    // [id 9, request, [variant 99, []]]
    raw.write_all(&frame(&[0x83, 0x09, 0x00, 0x82, 0x18, 0x63, 0x80]))
        .await
        .unwrap();
    let answer = within("the refusal", read_message(&mut raw)).await;
    assert_eq!(answer.id, 9);
    assert_eq!(answer.kind, Kind::Response);
    match answer.body {
        Body::Error(error) => {
            assert_eq!(error.module, "protocol");
            assert_eq!(error.code, ErrorBody::CODE_UNSUPPORTED);
            assert!(
                error.message.contains("unknown request variant 99"),
                "{error}"
            );
        }
        other => panic!("expected an error answer, got {other:?}"),
    }
    // Still serving: a real request gets its answer.
    write_message(
        &mut raw,
        &Message {
            id: 10,
            kind: Kind::Request,
            body: Body::RuntimePing,
        },
    )
    .await;
    let answer = within("the ping answer", read_message(&mut raw)).await;
    assert_eq!(answer.id, 10);
    assert!(matches!(connection.state(), State::Ready));
}

// ------------------------------------------------ cancel and control requests

/// Signals `dropped` when the handler future holding it is dropped, whether
/// it finished or not.
struct DropSignal(Arc<Semaphore>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.add_permits(1);
    }
}

/// A handler whose `slow` calls never finish by themselves: each one
/// signals `arrived`, then waits forever holding a [`DropSignal`] on
/// `dropped`. Everything else is [`echo`]ed.
fn never_finishing(
    arrived: &Arc<Semaphore>,
    dropped: &Arc<Semaphore>,
) -> FnHandler<impl Fn(Body, Peer) -> BoxBody + Send + Sync + 'static> {
    let (arrived, dropped) = (arrived.clone(), dropped.clone());
    handler(move |request, _| {
        let (arrived, dropped) = (arrived.clone(), dropped.clone());
        async move {
            if matches!(&request, Body::RuntimeCallRequest(call) if call.method == "slow") {
                let _signal = DropSignal(dropped);
                arrived.add_permits(1);
                std::future::pending::<()>().await;
            }
            echo("B", request)
        }
    })
}

/// While every one of B's slots is taken by a call that does not finish,
/// B still answers pings, aborts and shutdowns at once: they concern the
/// connection or the process, and a liveness ping stuck behind slow calls
/// would make a busy runtime look hung. (They used to wait for a slot.)
#[tokio::test(flavor = "multi_thread")]
async fn control_requests_are_answered_while_every_slot_is_busy() {
    let (arrived, dropped) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let limits = Limits {
        max_concurrent_requests: 1,
        ..Limits::default()
    };
    let (a, b) = pair(
        NoRequests,
        Limits::default(),
        never_finishing(&arrived, &dropped),
        limits,
    );
    b.mark_ready();
    let _busy = spawn_call(&a, call_request("slow", int(1)));
    within("the slow call occupies B's only slot", arrived.acquire())
        .await
        .unwrap()
        .forget();
    // A second call waits for the slot; the control requests do not.
    let _queued = spawn_call(&a, call_request("m", int(2)));
    for control in [Body::RuntimePing, Body::RuntimeAbort, Body::RuntimeShutdown] {
        let name = control.name();
        let answer = timeout(Duration::from_secs(5), a.call(control)).await;
        // The echo handler serves pings and refuses the other two; either
        // way an answer came.
        match answer {
            Ok(Ok(_) | Err(Error::Remote(_))) => {}
            Ok(Err(other)) => panic!("{name} failed: {other:?}"),
            Err(_) => panic!("{name} waited for a slot held by a call that never finishes"),
        }
    }
}

/// A call given up by its caller (its deadline passed, or its task was
/// aborted, as when an HTTP client disconnects) is cancelled on the other
/// side: B drops the handler's future, and keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_given_up_by_its_caller_drops_the_handler_on_the_other_side() {
    let (arrived, dropped) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let (a, b) = pair(
        NoRequests,
        Limits::default(),
        never_finishing(&arrived, &dropped),
        Limits::default(),
    );
    b.mark_ready();

    // A deadline.
    let late = timeout(
        Duration::from_millis(200),
        a.call(call_request("slow", int(1))),
    )
    .await;
    assert!(late.is_err(), "the slow call should miss its deadline");
    within("the slow call reached B", arrived.acquire())
        .await
        .unwrap()
        .forget();
    within(
        "B drops the handler of the call A gave up on",
        dropped.acquire(),
    )
    .await
    .unwrap()
    .forget();

    // A caller gone: its task is aborted while the call waits.
    let gone = spawn_call(&a, call_request("slow", int(2)));
    within("the second slow call reached B", arrived.acquire())
        .await
        .unwrap()
        .forget();
    gone.abort();
    within(
        "B drops the handler of the abandoned call",
        dropped.acquire(),
    )
    .await
    .unwrap()
    .forget();

    let answer = within("a later call", a.call(call_request("m", int(3)))).await;
    assert_eq!(result_of(answer), tagged("B", &int(3)));
    assert_eq!(b.state(), State::Ready);
}

/// What goes on the wire: an answered call is never cancelled; a call
/// past its deadline is followed by `Cancel{request_id}`; a peer that
/// refuses the cancel as an unknown variant (as a 1.0 peer does) leaves
/// the connection as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_is_sent_only_for_calls_left_waiting() {
    let (a, mut raw) = raw_peer(NoRequests, Limits::default());
    a.mark_ready();

    // Answered: no cancel follows.
    let answered = spawn_call(&a, call_request("m", int(1)));
    let request = within("the first request", read_message(&mut raw)).await;
    write_message(
        &mut raw,
        &Message {
            id: request.id,
            kind: Kind::Response,
            body: Body::Empty,
        },
    )
    .await;
    assert_eq!(
        within("the answer", answered).await.unwrap().unwrap(),
        Body::Empty
    );

    // Past its deadline: the next frame after the request is its cancel.
    let late = timeout(
        Duration::from_millis(100),
        a.call(call_request("m", int(2))),
    );
    let (late, abandoned) = tokio::join!(late, read_message(&mut raw));
    assert!(late.is_err(), "nobody answered, so the deadline passes");
    assert_eq!(abandoned.body, call_request("m", int(2)));
    let cancel = within("the cancel", read_message(&mut raw)).await;
    assert_eq!(cancel.kind, Kind::Request);
    assert_eq!(
        cancel.body,
        Body::Cancel(steward_protocol::CancelRequest {
            request_id: abandoned.id
        }),
        "the frame after an abandoned request"
    );
    // An old peer does not know variant 15 and refuses it.
    write_message(
        &mut raw,
        &Message {
            id: cancel.id,
            kind: Kind::Response,
            body: Body::Error(ErrorBody::new(
                "protocol",
                ErrorBody::CODE_UNSUPPORTED,
                "unknown request variant 15; this side speaks protocol 1.0",
            )),
        },
    )
    .await;

    // Still connected; and the answered call was not cancelled after the
    // fact: the next frame is the next request.
    let next = spawn_call(&a, call_request("m", int(3)));
    let request = within("the third request", read_message(&mut raw)).await;
    assert_eq!(request.body, call_request("m", int(3)));
    write_message(
        &mut raw,
        &Message {
            id: request.id,
            kind: Kind::Response,
            body: Body::Empty,
        },
    )
    .await;
    assert_eq!(
        within("the third answer", next).await.unwrap().unwrap(),
        Body::Empty
    );
    assert_eq!(a.state(), State::Ready);
}

/// A cancel from the other side: the request it names stops (its handler
/// future is dropped) and gets no answer; the cancel itself is answered
/// `Empty`, also when it names nothing running.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_from_the_other_side_stops_that_request() {
    let (arrived, dropped) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let (a, mut raw) = raw_peer(never_finishing(&arrived, &dropped), Limits::default());
    a.mark_ready();
    let send = |id, body| Message {
        id,
        kind: Kind::Request,
        body,
    };
    let cancel = |request_id| Body::Cancel(steward_protocol::CancelRequest { request_id });

    write_message(&mut raw, &send(5, call_request("slow", int(5)))).await;
    within("the slow request is served", arrived.acquire())
        .await
        .unwrap()
        .forget();
    write_message(&mut raw, &send(6, cancel(5))).await;
    let answer = within("the cancel's answer", read_message(&mut raw)).await;
    assert_eq!((answer.id, answer.kind), (6, Kind::Response));
    assert_eq!(answer.body, Body::Empty);
    within("the cancelled handler is dropped", dropped.acquire())
        .await
        .unwrap()
        .forget();

    // Nothing to cancel: answered all the same.
    write_message(&mut raw, &send(7, cancel(12_345))).await;
    let answer = within("the second cancel's answer", read_message(&mut raw)).await;
    assert_eq!((answer.id, answer.body), (7, Body::Empty));

    // No answer for request 5 ever comes: the next frame answers the ping.
    write_message(&mut raw, &send(8, Body::RuntimePing)).await;
    let answer = within("the ping's answer", read_message(&mut raw)).await;
    assert_eq!((answer.id, answer.body), (8, Body::Empty));
    assert_eq!(a.state(), State::Ready);
}
