//! The two halves of a Unix stream socket, made for a [`Connection`]:
//! registered with tokio's reactor for reading only.
//!
//! Why not tokio's own halves: a `tokio::net::UnixStream` is registered
//! for readable *and* writable events, edge-triggered, for its whole
//! life. On a Unix socket, every read by the other side frees space in
//! this side's send buffer, and the kernel reports that as a new
//! writable edge: the event loop here wakes up, finds nothing to do, and
//! goes back to sleep. A connection whose calls are each one frame out
//! and one frame back pays one such wake-up per call on each side, in
//! both processes: on one CPU two more context switches per call, across
//! CPUs one more cross-CPU wake-up each way.
//!
//! Here writes go straight to the (non-blocking) socket. Only a write that
//! finds the send buffer full registers a second descriptor of the same
//! socket for writable events, waits on it, and drops it again once a
//! write went through; so a connection is woken for writability only while
//! the other side is not keeping up.
//!
//! This module owns the socket's readiness and nothing else: framing and
//! what the bytes mean are the [`Connection`]'s.
//!
//! [`Connection`]: crate::Connection

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Splits a connected socket into the halves a [`Connection`] is started
/// with.
///
/// # Panics
///
/// Outside a tokio runtime with I/O enabled, like tokio's own sockets.
///
/// # Errors
///
/// When the socket cannot be taken from tokio's reactor or registered
/// again (the reactor is shutting down, or the process is out of file
/// descriptors).
///
/// [`Connection`]: crate::Connection
pub fn split(stream: tokio::net::UnixStream) -> io::Result<(ReadHalf, WriteHalf)> {
    // Leaves the socket non-blocking, which both halves rely on.
    let stream = Arc::new(stream.into_std()?);
    let read = register(stream.clone(), Interest::READABLE)?;
    Ok((
        ReadHalf { socket: read },
        WriteHalf {
            socket: stream,
            blocked: None,
        },
    ))
}

/// Registers `socket` with the current reactor for `interest` only.
//
// Tokio 1.54 deprecated this safe constructor for the `unsafe` one, whose
// contract is that the descriptor stays open, and the same, for the
// registration's life: it is sound for a socket the registration owns
// (an `Arc` of it, or a descriptor of its own), which is all this module
// registers; and this workspace forbids `unsafe`.
#[expect(
    deprecated,
    reason = "sound for an owned socket; the replacement needs `unsafe`, which the workspace forbids"
)]
fn register<T: AsRawFd>(socket: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    AsyncFd::with_interest(socket, interest)
}

/// The reading half of a socket from [`split`]: the only part of it that
/// the reactor watches while nothing is blocked.
#[derive(Debug)]
pub struct ReadHalf {
    socket: AsyncFd<Arc<StdUnixStream>>,
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.socket.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let wanted = unfilled.len();
            match ready.try_io(|socket| socket.get_ref().as_ref().read(unfilled)) {
                Ok(Ok(read)) => {
                    // A short read emptied the socket: the next read would
                    // only say so (EAGAIN). Edge-triggered, new data raises
                    // readiness again, and clearing never hides an edge
                    // newer than the one this read answered.
                    if read > 0 && read < wanted {
                        ready.clear_ready();
                    }
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(error)) => return Poll::Ready(Err(error)),
                Err(_would_block) => {}
            }
        }
    }
}

/// The writing half of a socket from [`split`]: writes at once, and waits
/// for room (registered for it) only when the send buffer is full.
#[derive(Debug)]
pub struct WriteHalf {
    socket: Arc<StdUnixStream>,
    /// A second descriptor of the socket, registered for writable events,
    /// while a write waits for room.
    blocked: Option<AsyncFd<StdUnixStream>>,
}

impl WriteHalf {
    /// Runs `write` until it does not block: at once while there is room,
    /// else each time the reactor says there may be room again.
    fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&StdUnixStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let result = match &self.blocked {
                None => write(&self.socket),
                Some(blocked) => {
                    let mut ready = ready!(blocked.poll_write_ready(cx))?;
                    match ready.try_io(|socket| write(socket.get_ref())) {
                        Ok(result) => result,
                        Err(_would_block) => continue,
                    }
                }
            };
            match result {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if self.blocked.is_none() {
                        // Registering reports the socket writable at once if
                        // room appeared since the write failed: nothing is
                        // missed in between.
                        let second = self.socket.try_clone()?;
                        self.blocked = Some(register(second, Interest::WRITABLE)?);
                    }
                }
                result => {
                    // Room again: stop listening for it.
                    self.blocked = None;
                    return Poll::Ready(result);
                }
            }
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_io(cx, |mut socket| socket.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io(cx, |mut socket| socket.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(match self.socket.shutdown(Shutdown::Write) {
            // The other side is gone already: shut down is what it is.
            Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(()),
            result => result,
        })
    }
}
