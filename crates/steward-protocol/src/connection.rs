//! [`Connection`]: one bidirectional, multiplexed protocol connection.
//!
//! Either side may send requests at any time; each side numbers its own
//! requests, and a response carries the id of the request it answers. Many
//! requests are in flight in both directions at once; incoming requests are
//! served concurrently, up to a bound, and outgoing frames are written in
//! batches (one flush per wake-up of the writer, not one per message; the
//! answers to a burst of requests read together go out together).
//!
//! This module owns framing, ids, pending calls, the requests being served
//! and the connection state, and so also `Cancel` (protocol 1.1): a call
//! abandoned by its caller is cancelled on the other side, and a cancel
//! from the other side drops the serving of that request. It must never
//! interpret any other request (the [`Handler`] does) nor know what is at
//! the other end of the socket (a process, a test, another language).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::AbortHandle;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::codec::unknown_variant;
use crate::{
    Body, CancelRequest, Error, ErrorBody, Kind, Limits, Message, PROTOCOL_VERSION, decode_message,
    encode_message,
};

/// Serves the requests the other side sends.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Requests are served concurrently (see
    /// [`Limits::max_concurrent_requests`]; `RuntimePing`, `RuntimeAbort`
    /// and `RuntimeShutdown` never wait for a free slot). Return
    /// [`Body::Error`] for failures the caller should see. `peer` makes
    /// requests back to the other side (a runtime reading host storage
    /// while serving a call).
    ///
    /// The returned future may be dropped before it finishes: when the
    /// other side cancels the request (its caller gave up), or when the
    /// connection closes. Nobody waits for its answer then, so work it
    /// has not done need not be done; keep what it changes consistent at
    /// every await.
    fn handle(&self, request: Body, peer: &Peer) -> impl Future<Output = Body> + Send;
}

/// A handler that refuses every request: for sides that only call.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRequests;

impl Handler for NoRequests {
    async fn handle(&self, request: Body, _peer: &Peer) -> Body {
        Body::Error(ErrorBody::new(
            "protocol",
            ErrorBody::CODE_UNSUPPORTED,
            format!("this side serves no requests (got {})", request.name()),
        ))
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Connected; only handshake requests are served yet.
    Handshaking,
    /// Handshake done; every request is served.
    Ready,
    /// Closed, with the reason. Every pending and later call fails.
    Closed(Arc<str>),
}

/// One protocol connection; a cheap handle (clone it freely). The
/// connection closes when [`close`](Self::close) is called, when the last
/// handle is dropped, when the other side hangs up, or on the first bad
/// frame; every handle then sees [`State::Closed`].
#[derive(Clone)]
pub struct Connection {
    handle: Arc<Handle>,
}

/// Owned by the user-facing handles only (the connection's own tasks hold
/// `Inner`), so dropping the last handle closes the connection.
struct Handle {
    peer: Peer,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.peer.inner.close("connection dropped by its owner");
    }
}

/// Makes requests to the other side without owning the connection: what a
/// [`Handler`] gets. Holding one does not keep the connection open.
#[derive(Clone)]
pub struct Peer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("state", &*self.inner.state.borrow())
            .finish_non_exhaustive()
    }
}

struct Inner {
    limits: Limits,
    /// Frames waiting to be written. Whoever holds `writer` writes them
    /// all with one flush; see [`Inner::send_frame`].
    queue: Mutex<Outgoing>,
    /// Whether the last answer the reader passed on came in a burst (more
    /// frames were read with it), and so its caller is one of several
    /// woken at once, whose next requests are worth writing together.
    answers: AnswerFlow,
    writer: tokio::sync::Mutex<FramedWrite<Pin<Box<dyn AsyncWrite + Send>>, LengthDelimitedCodec>>,
    pending: Mutex<Pending>,
    /// The other side's requests served in tasks of their own, by id, so
    /// that its `Cancel` can stop one. (A request answered at once, in the
    /// reader, is done before a cancel of it can be read.)
    served: Mutex<HashMap<u64, AbortHandle>>,
    next_id: AtomicU64,
    state: watch::Sender<State>,
    closed: CancellationToken,
    /// Set just before `closed` fires, for the checks made on every write:
    /// the token's `is_cancelled` takes its lock, which the callers on
    /// every worker and the reader would all contend for.
    is_closed: AtomicBool,
}

/// What waits to be written.
#[derive(Default)]
struct Outgoing {
    frames: VecDeque<Bytes>,
    /// A task has promised a write pass after a yield (see
    /// [`Inner::send_frame`]): until it starts, a frame only joins the
    /// queue.
    write_deferred: bool,
}

/// How answers have been arriving, as a `Flow` in an atomic: the reader
/// sets it with every answer, callers read it when they write.
#[derive(Default)]
struct AnswerFlow(AtomicU8);

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Flow {
    /// The last answer came alone: its caller's next request goes out at
    /// once.
    Alone = 0,
    /// The last answer came in a burst, and none of the woken callers has
    /// written yet: the first one writes at once, so that the other side
    /// has work while the rest get ready.
    BurstStarting = 1,
    /// One of a burst's callers has written: the next one waits for the
    /// rest of the burst (see [`Inner::send_frame`]).
    Burst = 2,
}

impl AnswerFlow {
    fn get(&self) -> Flow {
        match self.0.load(Ordering::Relaxed) {
            0 => Flow::Alone,
            1 => Flow::BurstStarting,
            _ => Flow::Burst,
        }
    }

    fn set(&self, flow: Flow) {
        self.0.store(flow as u8, Ordering::Relaxed);
    }
}

struct Pending {
    calls: HashMap<u64, oneshot::Sender<Result<Body, Error>>>,
    /// Set when the connection closed: no call may register after that.
    closed: Option<Arc<str>>,
}

impl Connection {
    /// Starts a connection over `read` and `write` (the halves of a socket),
    /// serving the other side's requests with `handler`. Spawns one reader
    /// task on the current tokio runtime; writes happen in the callers'
    /// own tasks (see [`Peer::call`]), batched when several are ready.
    pub fn start<R, W, H>(read: R, write: W, handler: H, limits: Limits) -> Self
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
        H: Handler,
    {
        let (state, _) = watch::channel(State::Handshaking);
        let codec = || {
            LengthDelimitedCodec::builder()
                .big_endian()
                .length_field_length(4)
                .max_frame_length(limits.max_frame_bytes)
                .new_codec()
        };
        let write: Pin<Box<dyn AsyncWrite + Send>> = Box::pin(write);
        let inner = Arc::new(Inner {
            limits,
            queue: Mutex::new(Outgoing::default()),
            answers: AnswerFlow::default(),
            writer: tokio::sync::Mutex::new(FramedWrite::new(write, codec())),
            pending: Mutex::new(Pending {
                calls: HashMap::new(),
                closed: None,
            }),
            served: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            state,
            closed: CancellationToken::new(),
            is_closed: AtomicBool::new(false),
        });
        let reader = FramedRead::new(read, codec());
        tokio::spawn(read_loop(inner.clone(), reader, Arc::new(handler), limits));
        Self {
            handle: Arc::new(Handle {
                peer: Peer { inner },
            }),
        }
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.handle.peer.inner
    }

    /// A non-owning handle for making requests.
    pub fn peer(&self) -> Peer {
        self.handle.peer.clone()
    }

    /// Sends a request and waits for its response. A [`Body::Error`]
    /// response becomes [`Error::Remote`]. For a deadline, wrap the future
    /// in `tokio::time::timeout`: dropping it forgets the call and cancels
    /// it on the other side (see [`Peer::call`]).
    pub async fn call(&self, request: Body) -> Result<Body, Error> {
        self.handle.peer.call(request).await
    }

    /// Marks the handshake done: from now on every request is served.
    ///
    /// Usually not needed: a connection becomes ready by itself when a
    /// `RuntimeInfoResponse` passes through it (sent or received).
    pub fn mark_ready(&self) {
        self.inner().mark_ready();
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner().state.borrow().clone()
    }

    /// Waits until the connection is closed and returns why.
    pub async fn closed(&self) -> Arc<str> {
        let mut state = self.inner().state.subscribe();
        loop {
            if let State::Closed(reason) = &*state.borrow_and_update() {
                return reason.clone();
            }
            if state.changed().await.is_err() {
                return Arc::from("connection dropped");
            }
        }
    }

    /// Closes the connection: pending and later calls fail with
    /// [`Error::ConnectionClosed`]. Idempotent.
    pub fn close(&self, reason: &str) {
        self.inner().close(reason);
    }
}

impl Peer {
    /// Sends a request and waits for its response. A [`Body::Error`]
    /// response becomes [`Error::Remote`]. For a deadline, wrap the future
    /// in `tokio::time::timeout`: dropping it forgets the call.
    ///
    /// A call dropped after its request was sent and before its answer
    /// arrived is cancelled: a `Cancel` for it goes to the other side
    /// (best effort, written in the background; the drop never waits),
    /// which stops serving it. A peer older than protocol 1.1 refuses the
    /// cancel as unsupported, which changes nothing.
    pub async fn call(&self, request: Body) -> Result<Body, Error> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(
            &Message {
                id,
                kind: Kind::Request,
                body: request,
            },
            &self.inner.limits,
        )?;
        let (reply, response) = oneshot::channel();
        let closed = {
            let mut pending = self.inner.pending();
            match &pending.closed {
                Some(reason) => Some(reason.clone()),
                None => {
                    pending.calls.insert(id, reply);
                    None
                }
            }
        };
        if let Some(reason) = closed {
            // Failing without ever yielding would let a caller's retry
            // loop starve the tasks that could repair things.
            tokio::task::consume_budget().await;
            return Err(Error::ConnectionClosed { reason });
        }
        // Forget the call however this future ends (answered, dropped by a
        // deadline, failed to send), and cancel it if it was left waiting.
        let _forget = ForgetOnDrop {
            inner: &self.inner,
            id,
        };
        self.inner.send_frame(frame).await?;
        match response.await {
            Ok(Ok(Body::Error(error))) => Err(Error::Remote(error)),
            Ok(result) => result,
            Err(_) => Err(self.inner.closed_error()),
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Queues `frame` and, unless another task is writing already, writes
    /// everything queued with one flush ("flat combining"): a lone call
    /// goes out from its own task with no hand-off, and many concurrent
    /// ones share syscalls. A task that finds the writer busy leaves its
    /// frame to the writing task, which checks the queue again after
    /// releasing the writer, so no frame is stranded.
    ///
    /// Callers woken together by one burst of answers run one after the
    /// other, each finding the writer free, so each would write its next
    /// request alone: one syscall per call, and one wake-up of the other
    /// side each, where one would do. So after the first of them (which
    /// writes at once: the other side gets work), the second yields
    /// before writing, and the rest only queue their frames until its
    /// write pass starts: the requests of one burst go out together. A
    /// call answered alone never waits. (Pipelined echo calls from 64
    /// callers: 1.3–1.7× the calls/s; see docs/benchmarks.md.)
    async fn send_frame(self: &Arc<Self>, frame: Bytes) -> Result<(), Error> {
        let defer = {
            let mut queue = self.queue();
            queue.frames.push_back(frame);
            if queue.write_deferred {
                return Ok(());
            }
            queue.write_deferred = match self.answers.get() {
                Flow::Alone => false,
                Flow::BurstStarting => {
                    self.answers.set(Flow::Burst);
                    false
                }
                Flow::Burst => true,
            };
            queue.write_deferred
        };
        // If this future is dropped mid-write or while it defers (a
        // caller's deadline), the queue must still go out: a task takes
        // over.
        let mut take_over = TakeOverOnDrop(Some(self.clone()));
        if defer {
            // Tokio runs the tasks that are ready before a yielded one.
            tokio::task::yield_now().await;
        }
        let result = self.write_queued().await;
        take_over.0 = None;
        result
    }

    async fn write_queued(&self) -> Result<(), Error> {
        // This pass takes whatever is queued from now on, or leaves it to
        // the task holding the writer, which looks again before it stops.
        self.queue().write_deferred = false;
        loop {
            let Ok(mut writer) = self.writer.try_lock() else {
                return Ok(());
            };
            if self.is_closed.load(Ordering::Acquire) {
                self.queue().frames.clear();
                return Err(self.closed_error());
            }
            let mut result = Ok(());
            // Take a frame off the queue only once the sink can accept it
            // at once, so that cancelling here never loses one.
            while result.is_ok() && !self.queue().frames.is_empty() {
                result =
                    std::future::poll_fn(|cx| SinkExt::<Bytes>::poll_ready_unpin(&mut *writer, cx))
                        .await;
                if result.is_ok() {
                    let Some(frame) = self.queue().frames.pop_front() else {
                        break;
                    };
                    result = SinkExt::<Bytes>::start_send_unpin(&mut *writer, frame);
                }
            }
            if result.is_ok() {
                result = SinkExt::<Bytes>::flush(&mut *writer).await;
            }
            drop(writer);
            if let Err(error) = result {
                self.close(&format!("write failed: {error}"));
                return Err(self.closed_error());
            }
            if self.queue().frames.is_empty() {
                return Ok(());
            }
        }
    }

    fn queue(&self) -> MutexGuard<'_, Outgoing> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn closed_error(&self) -> Error {
        let reason = self
            .pending()
            .closed
            .clone()
            .unwrap_or_else(|| Arc::from("connection closed"));
        Error::ConnectionClosed { reason }
    }

    fn mark_ready(&self) {
        self.state.send_if_modified(|state| {
            if *state == State::Handshaking {
                *state = State::Ready;
                true
            } else {
                false
            }
        });
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self, reason: &str) {
        let calls = {
            let mut pending = self.pending();
            if pending.closed.is_some() {
                return;
            }
            let reason: Arc<str> = Arc::from(reason);
            pending.closed = Some(reason.clone());
            self.state.send_replace(State::Closed(reason));
            std::mem::take(&mut pending.calls)
        };
        debug!(reason, failed_calls = calls.len(), "connection closed");
        let reason: Arc<str> = Arc::from(reason);
        for (_, reply) in calls {
            let _ = reply.send(Err(Error::ConnectionClosed {
                reason: reason.clone(),
            }));
        }
        self.is_closed.store(true, Ordering::Release);
        self.closed.cancel();
    }

    /// Tells the other side that nobody waits for the answer to our
    /// request `request_id` any more. Called from a drop: it queues the
    /// frame and leaves the writing to the current writer or to a task of
    /// its own, never waiting.
    fn send_cancel(self: &Arc<Self>, request_id: u64) {
        if self.is_closed.load(Ordering::Acquire) {
            return;
        }
        let message = Message {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            kind: Kind::Request,
            body: Body::Cancel(CancelRequest { request_id }),
        };
        let Ok(frame) = encode_frame(&message, &self.limits) else {
            return;
        };
        self.queue().frames.push_back(frame);
        // Without a runtime (a future dropped after its runtime shut down)
        // the frame waits for the next write, if any: best effort.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let inner = self.clone();
            runtime.spawn(async move {
                let _ = inner.write_queued().await;
            });
        }
    }

    /// Stops serving the other side's request `id`, if it still runs: its
    /// task is aborted, which drops the handler's future. It gets no
    /// answer; its sender has forgotten it.
    fn cancel_served(&self, id: u64) -> bool {
        let task = self.served().remove(&id);
        match task {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    fn served(&self) -> MutexGuard<'_, HashMap<u64, AbortHandle>> {
        self.served.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn respond(&self, id: u64, body: Result<Body, Error>) {
        let reply = self.pending().calls.remove(&id);
        match reply {
            Some(reply) => {
                let _ = reply.send(body);
            }
            // A call whose caller gave up (deadline) before the answer.
            None => debug!(id, "response to a call nobody waits for"),
        }
    }
}

/// Finishes writing the queue from a task of its own when a writing
/// future is dropped before it is done.
struct TakeOverOnDrop(Option<Arc<Inner>>);

impl Drop for TakeOverOnDrop {
    fn drop(&mut self) {
        // Frames may wait in the queue or, half-written, in the sink's
        // buffer: either way another write pass finishes them.
        if let Some(inner) = self.0.take() {
            tokio::spawn(async move {
                let _ = inner.write_queued().await;
            });
        }
    }
}

/// Forgets a call when its future ends; one still waiting for its answer
/// (a deadline, a caller gone) is cancelled on the other side. An answered
/// call was removed from `pending` by its answer, and a call of a closed
/// connection by the close, so neither is cancelled.
struct ForgetOnDrop<'a> {
    inner: &'a Arc<Inner>,
    id: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        let waiting = self.inner.pending().calls.remove(&self.id).is_some();
        if waiting {
            self.inner.send_cancel(self.id);
        }
    }
}

/// Removes a served request's entry from `served` when its task ends,
/// however it ends (answered, cancelled, the connection closed), unless
/// the entry is another task's by now (the other side reused the id).
struct UnlistOnDrop {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for UnlistOnDrop {
    fn drop(&mut self) {
        let Some(me) = tokio::task::try_id() else {
            return;
        };
        let mut served = self.inner.served();
        if served.get(&self.id).is_some_and(|task| task.id() == me) {
            served.remove(&self.id);
        }
    }
}

/// Why a connection's reader stopped.
enum ReadEnd {
    /// This side closed the connection (`close`, or the last handle went).
    Closed,
    /// The other side hung up: end of stream, or a reset.
    HungUp,
    /// A frame could not be read or decoded; the reason names the problem.
    BadFrame(String),
}

/// The bounds on the other side's requests. The reader never waits for
/// either: it must keep reading responses, which handlers calling back to
/// the other side depend on, and notice a hang-up. A peer that floods past
/// the admission bound is refused with "busy" rather than buffered without
/// end.
struct Admission {
    /// Requests admitted (running or waiting to run).
    admitted: Arc<Semaphore>,
    /// Requests running.
    serving: Arc<Semaphore>,
}

impl Admission {
    fn new(limits: &Limits) -> Self {
        Self {
            admitted: Arc::new(Semaphore::new(
                limits.max_concurrent_requests + limits.max_queued_requests,
            )),
            serving: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
        }
    }
}

async fn read_loop<R, H>(
    inner: Arc<Inner>,
    mut reader: FramedRead<R, LengthDelimitedCodec>,
    handler: Arc<H>,
    limits: Limits,
) where
    R: AsyncRead + Unpin,
    H: Handler,
{
    let admission = Admission::new(&limits);
    // Held while the frames being answered were all read already: every
    // answer (and every other task's frame) then queues behind it, and
    // they go out together, with one write, before the reader waits on
    // the socket again. Only a burst of requests is batched, from its
    // second one on: the first answer goes out at once, so the other side
    // has work while the rest are answered, a lone request is never held
    // back, and reading answers never holds up this side's own calls.
    let mut batch = None;
    let mut answered_in_burst = false;
    let mut batched = 0_usize;
    // One wait for the whole loop, not one made and dropped per frame
    // (each a registration with the token's `Notify` and its removal).
    let closed = inner.closed.cancelled();
    tokio::pin!(closed);
    let end = loop {
        let more_buffered = complete_frame_buffered(reader.read_buffer(), limits.max_frame_bytes);
        if !more_buffered {
            answered_in_burst = false;
        }
        // A batch also ends after `MAX_BATCHED_ANSWERS`, so that a peer
        // streaming requests still meets the socket's backpressure and
        // the queue of answers stays small.
        if !more_buffered || batched >= MAX_BATCHED_ANSWERS {
            batched = 0;
            if batch.take().is_some() {
                // Released first: `write_queued` takes the writer itself.
                let _ = inner.write_queued().await;
            }
        }
        if more_buffered && answered_in_burst && batch.is_none() {
            batch = inner.writer.try_lock().ok();
        }
        if batch.is_some() {
            batched += 1;
        }
        let frame = tokio::select! {
            biased;
            () = &mut closed => break ReadEnd::Closed,
            frame = reader.next() => frame,
        };
        let frame = match frame {
            None => break ReadEnd::HungUp,
            Some(Err(error)) => break read_error(&error, &limits),
            Some(Ok(frame)) => frame,
        };
        match decode_message(&frame, &limits) {
            Ok(message) => match message.kind {
                Kind::Response => {
                    if matches!(message.body, Body::RuntimeInfoResponse(_)) {
                        inner.mark_ready();
                    }
                    let burst = more_buffered
                        || complete_frame_buffered(reader.read_buffer(), limits.max_frame_bytes);
                    inner.answers.set(if burst {
                        Flow::BurstStarting
                    } else {
                        Flow::Alone
                    });
                    inner.respond(message.id, Ok(message.body));
                }
                Kind::Request => {
                    answered_in_burst = true;
                    match message.body {
                        Body::Cancel(CancelRequest { request_id }) => {
                            let cancelled = inner.cancel_served(request_id);
                            debug!(request_id, cancelled, "the other side cancelled a request");
                            send_response(&inner, message.id, Body::Empty, &limits).await;
                        }
                        _ => serve_request(&inner, message, &handler, &admission, &limits).await,
                    }
                }
            },
            Err(error) => {
                if let Some(end) = undecodable(&inner, &frame, &error, &limits).await {
                    break end;
                }
            }
        }
    };
    if batch.take().is_some() {
        let _ = inner.write_queued().await;
    }
    // Closing comes first and never depends on anything else succeeding
    // (logging may fail: stderr can be a pipe to a dead process).
    match end {
        ReadEnd::Closed => {}
        ReadEnd::HungUp => {
            inner.close("the other side hung up");
            // How every connection ends; the owner of the other side logs
            // why.
            debug!("the other side hung up; connection closed");
        }
        ReadEnd::BadFrame(reason) => {
            inner.close(&reason);
            warn!(%reason, "closed the connection");
        }
    }
    // Tell the other side we are done (EOF), after any write in progress.
    let mut writer = inner.writer.lock().await;
    let _ = SinkExt::<Bytes>::close(&mut *writer).await;
}

/// The most answers the reader queues before it writes them (see
/// `read_loop`): 64 pipelined calls share one write, and a peer that
/// streams requests without reading its answers is slowed by the socket
/// rather than growing this side's queue.
const MAX_BATCHED_ANSWERS: usize = 64;

/// Whether `buffer` starts with a whole frame (a 4-byte big-endian
/// length and that many bytes) that the reader can take without waiting.
/// A length over the limit is no frame: the reader's next read fails on it.
fn complete_frame_buffered(buffer: &[u8], max_frame_bytes: usize) -> bool {
    let Some((header, body)) = buffer.split_first_chunk::<4>() else {
        return false;
    };
    let length = u32::from_be_bytes(*header) as usize;
    length <= max_frame_bytes && body.len() >= length
}

/// What a failed read means: a reset is a hang-up (the other side died),
/// not a bad frame.
fn read_error(error: &std::io::Error, limits: &Limits) -> ReadEnd {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            ReadEnd::HungUp
        }
        ErrorKind::InvalidData => ReadEnd::BadFrame(format!(
            "bad frame: {error} (the limit is {} bytes)",
            limits.max_frame_bytes
        )),
        _ => ReadEnd::BadFrame(format!("bad frame: {error}")),
    }
}

/// Answers or fails one message this side cannot decode, if it is a newer
/// peer's variant (the connection stays); otherwise the connection ends.
async fn undecodable(
    inner: &Arc<Inner>,
    frame: &[u8],
    error: &Error,
    limits: &Limits,
) -> Option<ReadEnd> {
    match unknown_variant(frame) {
        Some((id, Kind::Request, variant)) => {
            let refusal = refusal(
                ErrorBody::CODE_UNSUPPORTED,
                format!(
                    "unknown request variant {variant}; this side speaks protocol {PROTOCOL_VERSION}"
                ),
            );
            send_response(inner, id, refusal, limits).await;
            None
        }
        Some((id, Kind::Response, variant)) => {
            inner.respond(
                id,
                Err(Error::Malformed {
                    reason: format!("unknown answer variant {variant}"),
                }),
            );
            None
        }
        None => Some(ReadEnd::BadFrame(format!("bad frame: {error}"))),
    }
}

/// Serves one request of the other side: refused before the handshake or
/// past the admission bound, answered inline when it is ready at once,
/// else in a task of its own, listed in `served` so that the other side
/// can cancel it.
async fn serve_request<H: Handler>(
    inner: &Arc<Inner>,
    message: Message,
    handler: &Arc<H>,
    admission: &Admission,
    limits: &Limits,
) {
    let id = message.id;
    let ready = *inner.state.borrow() == State::Ready;
    if !ready && !message.body.is_handshake() {
        let refusal = refusal(
            ErrorBody::CODE_NOT_READY,
            format!("not ready: {} before the handshake", message.body.name()),
        );
        send_response(inner, id, refusal, limits).await;
        return;
    }
    let Ok(admitted) = admission.admitted.clone().try_acquire_owned() else {
        let refusal = refusal(
            ErrorBody::CODE_BUSY,
            format!(
                "busy: more than {} requests in progress",
                limits.max_concurrent_requests
            ),
        );
        send_response(inner, id, refusal, limits).await;
        return;
    };
    // Requests about the connection or the process itself must be
    // answered while every slot is taken by calls: a liveness ping queued
    // behind slow calls would make a busy runtime look hung, and an abort
    // is meant for exactly the runtime whose calls do not finish.
    let serving = needs_slot(&message.body).then(|| admission.serving.clone());
    let (work_inner, handler, limits) = (inner.clone(), handler.clone(), *limits);
    let mut work = Box::pin(async move {
        let _admitted = admitted;
        let peer = Peer { inner: work_inner };
        let response = tokio::select! {
            // The work first: most answers are ready at once, and then the
            // wait for the connection to close (a lock of the token, which
            // the whole connection shares, and one of its `Notify`) is
            // never set up. Borrowed, not cloned, for the same reason.
            biased;
            response = serve(&*handler, message.body, &peer, serving.as_deref()) => response,
            // Work for a closed connection is abandoned.
            () = peer.inner.closed.cancelled() => return,
        };
        send_response(&peer.inner, id, response, &limits).await;
    });
    // Most answers are ready at once (an echo, a ping): finish those here
    // and save a task hand-off per request; only work that has to wait
    // gets a task of its own.
    if (&mut work).now_or_never().is_some() {
        return;
    }
    let unlist = UnlistOnDrop {
        inner: inner.clone(),
        id,
    };
    // Listed under the lock the task's own unlisting takes, so that the
    // entry cannot outlive a task that ends at once.
    let mut served = inner.served();
    let task = tokio::spawn(async move {
        let _unlist = unlist;
        work.await;
    });
    served.insert(id, task.abort_handle());
}

/// Whether a request waits for one of the slots of
/// [`Limits::max_concurrent_requests`]: calls and storage requests do;
/// pings, aborts and shutdowns do not.
fn needs_slot(request: &Body) -> bool {
    !matches!(
        request,
        Body::RuntimePing | Body::RuntimeAbort | Body::RuntimeShutdown
    )
}

/// Runs the handler once a slot is free (if it needs one); a panic
/// becomes an error answer instead of a caller waiting forever.
async fn serve<H: Handler>(
    handler: &H,
    request: Body,
    peer: &Peer,
    serving: Option<&Semaphore>,
) -> Body {
    let _slot = match serving {
        Some(serving) => match serving.acquire().await {
            Ok(slot) => Some(slot),
            Err(_) => {
                return refusal(ErrorBody::CODE_INTERNAL, "connection shutting down".into());
            }
        },
        None => None,
    };
    let name = request.name();
    match AssertUnwindSafe(handler.handle(request, peer))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => refusal(
            ErrorBody::CODE_INTERNAL,
            format!("the handler of {name} panicked"),
        ),
    }
}

fn refusal(code: u32, message: String) -> Body {
    Body::Error(ErrorBody::new("protocol", code, message))
}

async fn send_response(inner: &Arc<Inner>, id: u64, body: Body, limits: &Limits) {
    // The handshake answer opens the connection for every request: the
    // runtime's side of "ready".
    if matches!(body, Body::RuntimeInfoResponse(_)) {
        inner.mark_ready();
    }
    let name = body.name();
    let encoded = encode_frame(
        &Message {
            id,
            kind: Kind::Response,
            body,
        },
        limits,
    );
    // An answer that cannot be sent fails that one call, not the connection.
    let frame = match encoded {
        Ok(frame) => frame,
        Err(error) => {
            let failure = Message {
                id,
                kind: Kind::Response,
                body: refusal(
                    ErrorBody::CODE_INTERNAL,
                    format!("cannot send the {name} answer: {error}"),
                ),
            };
            match encode_frame(&failure, limits) {
                Ok(frame) => frame,
                Err(_) => return,
            }
        }
    };
    let _ = inner.send_frame(frame).await;
}

/// Encodes a message, refusing one larger than the frame limit (the other
/// side would close the connection over it).
fn encode_frame(message: &Message, limits: &Limits) -> Result<Bytes, Error> {
    let frame = encode_message(message)?;
    if frame.len() > limits.max_frame_bytes {
        return Err(Error::FrameTooLarge {
            size: frame.len(),
            max: limits.max_frame_bytes,
        });
    }
    Ok(frame)
}
