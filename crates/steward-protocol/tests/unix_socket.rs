//! `unix_socket::split` on real sockets: what the reactor watches (read
//! from the kernel's own listing of each epoll instance), a write that
//! fills the send buffer, short reads, and both ways of ending.
//!
//! Every wait that could hang is bounded by [`within`].

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::future::{Future, poll_fn};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use steward_protocol::unix_socket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {WAIT:?}"))
}

const EPOLLIN: u32 = 0x1;
const EPOLLOUT: u32 = 0x4;

/// The kernel's name of the socket behind descriptor `fd` of this process
/// (`socket:[inode]`): the same for every descriptor of one socket.
fn socket_name(fd: i32) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The event masks under which any epoll instance of this process watches
/// a descriptor of the socket named `name`, one per registration, from
/// `/proc/self/fdinfo` (lines `tfd: <fd> events: <hex mask> data: <token>
/// …`). Tokio's reactor holds two descriptors of its epoll instance, so a
/// registration is listed twice, the same line each time.
fn watched_as(name: &str) -> Vec<u32> {
    let mut registrations = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let fd = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
            continue;
        };
        if target.to_string_lossy() != "anon_inode:[eventpoll]" {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        for line in info.lines().filter(|line| line.starts_with("tfd:")) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let watched: i32 = fields[1].parse().unwrap();
            let mask = u32::from_str_radix(fields[3], 16).unwrap();
            let same_socket = std::fs::read_link(format!("/proc/self/fd/{watched}"))
                .is_ok_and(|target| target.to_string_lossy() == name);
            if same_socket {
                registrations.insert(line.to_owned(), mask);
            }
        }
    }
    registrations.into_values().collect()
}

#[tokio::test]
async fn the_socket_is_watched_for_reading_only() {
    let (ours, _theirs) = UnixStream::pair().unwrap();
    let name = socket_name(ours.as_raw_fd());
    // The probe sees tokio's own registration, writable events included:
    // what every read by the other side used to wake this side for.
    let tokio_masks = watched_as(&name);
    assert_eq!(
        tokio_masks.len(),
        1,
        "tokio's registration: {tokio_masks:x?}"
    );
    assert_ne!(tokio_masks[0] & EPOLLOUT, 0, "{tokio_masks:x?}");

    let (_read, _write) = unix_socket::split(ours).unwrap();
    let masks = watched_as(&name);
    assert_eq!(masks.len(), 1, "one registration: {masks:x?}");
    assert_ne!(masks[0] & EPOLLIN, 0, "watched for reading: {masks:x?}");
    assert_eq!(masks[0] & EPOLLOUT, 0, "not for writing: {masks:x?}");
}

#[tokio::test]
async fn a_write_that_fills_the_buffer_waits_for_room_then_stops_watching_for_it() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let name = socket_name(ours.as_raw_fd());
    let (_read, mut write) = unix_socket::split(ours).unwrap();
    let payload: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();

    let mut writing = pin!(write.write_all(&payload));
    let first = poll_fn(|cx| Poll::Ready(writing.as_mut().poll(cx))).await;
    assert!(first.is_pending(), "8 MiB cannot fit in a socket's buffer");
    let masks = watched_as(&name);
    assert!(
        masks.iter().any(|mask| mask & EPOLLOUT != 0),
        "a blocked write waits for room: {masks:x?}"
    );

    // The other side reads everything (on a thread: it blocks).
    let theirs = theirs.into_std().unwrap();
    theirs.set_nonblocking(false).unwrap();
    let expected = payload.len();
    let reader = std::thread::spawn(move || {
        let mut theirs = theirs;
        let mut received = Vec::with_capacity(expected);
        let mut chunk = vec![0; 64 << 10];
        while received.len() < expected {
            let n = theirs.read(&mut chunk).unwrap();
            assert_ne!(n, 0, "end of stream before the whole payload");
            received.extend_from_slice(&chunk[..n]);
        }
        received
    });
    within("the blocked write", writing).await.unwrap();
    let received = within("the reader thread", async {
        tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap()
    })
    .await;
    assert!(received == payload, "the bytes arrive whole and in order");

    let masks = watched_as(&name);
    assert_eq!(
        masks.len(),
        1,
        "the second registration is gone: {masks:x?}"
    );
    assert_eq!(masks[0] & EPOLLOUT, 0, "{masks:x?}");
}

#[tokio::test]
async fn data_after_a_short_read_is_read_too() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let (mut read, _write) = unix_socket::split(ours).unwrap();
    let mut buffer = [0u8; 1024];
    theirs.write_all(b"first").await.unwrap();
    let n = within("the first read", read.read(&mut buffer))
        .await
        .unwrap();
    assert_eq!(&buffer[..n], b"first");
    // That read took less than it asked for, so readiness was cleared: the
    // next write must raise it again.
    theirs.write_all(b"second").await.unwrap();
    let n = within("the second read", read.read(&mut buffer))
        .await
        .unwrap();
    assert_eq!(&buffer[..n], b"second");
}

#[tokio::test]
async fn a_read_fills_a_buffer_exactly_and_leaves_the_rest() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let (mut read, _write) = unix_socket::split(ours).unwrap();
    theirs.write_all(b"0123456789").await.unwrap();
    let mut four = [0u8; 4];
    read.read_exact(&mut four).await.unwrap();
    assert_eq!(&four, b"0123");
    let mut rest = [0u8; 6];
    within("the rest", read.read_exact(&mut rest))
        .await
        .unwrap();
    assert_eq!(&rest, b"456789");
}

#[tokio::test]
async fn shutting_down_the_write_half_ends_the_other_sides_stream() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let (mut read, mut write) = unix_socket::split(ours).unwrap();
    write.write_all(b"last words").await.unwrap();
    write.shutdown().await.unwrap();
    let mut received = Vec::new();
    within("their read to the end", theirs.read_to_end(&mut received))
        .await
        .unwrap();
    assert_eq!(received, b"last words");
    // Only the writing direction ended: ours still reads.
    theirs.write_all(b"reply").await.unwrap();
    let mut reply = [0u8; 5];
    within("our read", read.read_exact(&mut reply))
        .await
        .unwrap();
    assert_eq!(&reply, b"reply");
}

#[tokio::test]
async fn a_hang_up_is_the_end_of_the_stream_and_a_failed_write() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (mut read, mut write) = unix_socket::split(ours).unwrap();
    drop(theirs);
    let mut buffer = [0u8; 16];
    let n = within("the read", read.read(&mut buffer)).await.unwrap();
    assert_eq!(n, 0, "end of stream");
    let error = within("the write", write.write_all(b"anyone?"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BrokenPipe, "{error}");
}

#[tokio::test]
async fn many_frames_both_ways_arrive_in_order() {
    let (a, b) = UnixStream::pair().unwrap();
    let (mut a_read, mut a_write) = unix_socket::split(a).unwrap();
    let (mut b_read, mut b_write) = unix_socket::split(b).unwrap();
    const COUNT: u32 = 20_000;
    // B echoes what it reads until A's end of stream.
    let echo = tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        loop {
            let n = b_read.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            b_write.write_all(&buffer[..n]).await.unwrap();
        }
        b_write.shutdown().await.unwrap();
    });
    let sender = tokio::spawn(async move {
        for i in 0..COUNT {
            a_write.write_all(&i.to_be_bytes()).await.unwrap();
        }
        a_write.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    within("the echoes", a_read.read_to_end(&mut echoed))
        .await
        .unwrap();
    sender.await.unwrap();
    echo.await.unwrap();
    let numbers: Vec<u32> = echoed
        .chunks_exact(4)
        .map(|chunk| u32::from_be_bytes(chunk.try_into().unwrap()))
        .collect();
    assert_eq!(numbers, (0..COUNT).collect::<Vec<_>>());
}

/// The other end a blocking socket, as a runtime written without an event
/// loop holds it.
#[test]
fn a_std_peer_can_talk_to_the_halves() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    runtime.block_on(async move {
        ours.set_nonblocking(true).unwrap();
        let (mut read, mut write) =
            unix_socket::split(UnixStream::from_std(ours).unwrap()).unwrap();
        theirs.write_all(b"ping").unwrap();
        let mut ping = [0u8; 4];
        within("ping", read.read_exact(&mut ping)).await.unwrap();
        assert_eq!(&ping, b"ping");
        write.write_all(b"pong").await.unwrap();
        let mut pong = [0u8; 4];
        theirs.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"pong");
    });
}
