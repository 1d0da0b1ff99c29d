//! End-to-end tests of the API server's limits against slow, idle and
//! hostile clients, over raw TCP: a half-sent request head and an idle
//! keep-alive connection are closed after `--http-timeout`, an announced
//! oversized body is refused at once, a stalled body gets 408, a shutdown
//! is not held up by a half-sent request, idle connections at the
//! connection cap give way to real clients, and a slowloris of 500
//! connections does not stop calls.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Agent, DEADLINE, Options};

/// The agent's address, from its URL.
fn address(agent: &Agent) -> String {
    agent.url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (EOF or reset); returns
/// what it sent, or panics after `within`.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server did not close the connection within {within:?}"
    );
    String::from_utf8_lossy(&received).into_owned()
}

/// An agent (demo config) with `--http-timeout 1s`.
async fn agent_with_short_timeout(dir: &TempDir) -> Agent {
    let agent = Agent::start(Options {
        http_timeout: Some("1s".to_owned()),
        ..Options::demo(dir.path())
    })
    .await;
    agent.wait_running(&["echo", "kv"]).await;
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_heads_and_idle_connections_are_closed_after_the_http_timeout() {
    let dir = TempDir::new().unwrap();
    let agent = agent_with_short_timeout(&dir).await;

    let mut half = TcpStream::connect(address(&agent)).await.unwrap();
    half.write_all(b"GET /v1/runtimes HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    until_closed(&mut half, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(900));

    let mut idle = TcpStream::connect(address(&agent)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Meanwhile and afterwards, the API serves.
    assert_eq!(agent.api.call_ok("echo", "echo", json!(1)).await, json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_oversized_body_is_refused_at_once_and_a_stalled_one_times_out() {
    let dir = TempDir::new().unwrap();
    let agent = agent_with_short_timeout(&dir).await;

    let mut big = TcpStream::connect(address(&agent)).await.unwrap();
    big.write_all(
        b"POST /v1/runtimes/echo/call HTTP/1.1\r\nHost: x\r\nContent-Length: 5242880\r\n\r\n",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let answer = until_closed(&mut big, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"module\":\"steward\""), "{answer}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "refused without waiting for the body"
    );

    let mut stalled = TcpStream::connect(address(&agent)).await.unwrap();
    stalled
        .write_all(b"POST /v1/runtimes/echo/call HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"method\"")
        .await
        .unwrap();
    let answer = until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_does_not_hold_up_a_shutdown() {
    let dir = TempDir::new().unwrap();
    // The default timeout (15 s): it is the shutdown that must not wait.
    let mut agent = Agent::demo(dir.path()).await;
    let mut half = TcpStream::connect(address(&agent)).await.unwrap();
    half.write_all(
        b"POST /v1/runtimes/echo/call HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let status = agent.stop_with(Signal::SIGTERM, DEADLINE).await;
    assert!(status.success(), "{status}: {}", agent.stderr.text());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_at_the_cap_give_way_to_real_clients() {
    let dir = TempDir::new().unwrap();
    // 128 open files: the connection cap is 32, and the agent keeps the
    // rest for its runtimes.
    let agent = Agent::start(Options {
        open_files: Some(128),
        ..Options::demo(dir.path())
    })
    .await;
    agent.wait_running(&["echo", "kv"]).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        // Connected, never a byte sent (the server may close some at once).
        if let Ok(stream) = TcpStream::connect(address(&agent)).await {
            idle.push(stream);
        }
    }
    let started = Instant::now();
    assert_eq!(
        agent.api.call_ok("echo", "echo", json!("through")).await,
        "through"
    );
    let (status, body) = agent.api.set_version("echo", "2.0.0").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a call and a switch took {:?} behind 200 idle connections",
        started.elapsed()
    );
    assert!(
        !agent.stderr.text().contains("Too many open files"),
        "{}",
        agent.stderr.text()
    );
    drop(idle);
}

/// A slowloris: 500 connections each sending a request head a byte at a
/// time, never finishing it. Calls on fresh connections keep being served
/// all along, and the trickling connections are closed by the head
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_of_500_connections_does_not_stop_calls() {
    let dir = TempDir::new().unwrap();
    let agent = agent_with_short_timeout(&dir).await;
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut stream = TcpStream::connect(address(&agent)).await.unwrap();
        stream
            .write_all(b"POST /v1/runtimes/echo/call HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let trickle = tokio::spawn(async move {
        // One more header byte each 200 ms on every connection, until the
        // server closes them.
        let mut open = slow;
        for _ in 0..25 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut still = Vec::new();
            for mut stream in open {
                if stream.write_all(b"X").await.is_ok() {
                    still.push(stream);
                }
            }
            open = still;
        }
        open.len()
    });
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            agent.api.call_ok("echo", "echo", json!(served)).await,
            json!(served)
        );
        served += 1;
    }
    assert!(
        served >= 20,
        "only {served} calls in 3 s behind the slowloris"
    );
    let still_open = trickle.await.unwrap();
    assert_eq!(
        still_open, 0,
        "the head timeout (1 s) closed every trickling connection"
    );
}
