//! A runtime process's output, with the real test runtime (its `print`
//! method writes chosen bytes to its stdout or stderr): lines that are not
//! UTF-8, lines longer than the limit, both streams; lines passed on to an
//! [`OutputSink`] besides the host's log, with their version, stream and
//! time; and a sink nobody reads, which loses lines (and counts them) but
//! never holds up the runtime. Every wait is bounded (20 s) and waits for
//! an answer or a line.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

mod support;

use std::time::{Duration, SystemTime};

use serde_json::json;
use steward_host::{OutputSink, OutputStream, RuntimeHost};
use steward_protocol::Body;

use support::{call, host, next_line, print, print_line, started};

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_utf8_does_not_stop_the_output_being_read() {
    let host = host(support::config("out", "1.0.0", &[]));
    started(&host).await;
    let mut events = host.watch_events();
    print(
        &host,
        json!({"stream": "stdout", "text": "bad: ", "raw": [0xff, 0xfe]}),
    )
    .await;
    // Four times what a pipe holds: written only if the host reads on.
    let line = "x".repeat(1023);
    print(
        &host,
        json!({"stream": "stdout", "text": line, "times": 256}),
    )
    .await;
    print(
        &host,
        json!({"stream": "stderr", "text": line, "times": 256}),
    )
    .await;
    assert!(
        events.try_recv().is_err(),
        "the runtime stopped or restarted"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_reach_the_sink_with_their_version_stream_and_time() {
    let (sink, mut lines) = OutputSink::channel(64);
    let mut config = support::config("out", "2.0.0", &["--version", "2.0.0"]);
    config.output = Some(sink);
    config.max_line_bytes = 100;
    let host = host(config);
    started(&host).await;

    let before = SystemTime::now();
    print_line(&host, "stdout", "hello").await;
    let line = next_line(&mut lines).await;
    assert_eq!(&*line.version, "2.0.0");
    assert_eq!(line.stream, OutputStream::Stdout);
    assert_eq!(line.text, "hello");
    assert_eq!(line.dropped, 0);
    assert!(before <= line.time && line.time <= SystemTime::now());

    print(
        &host,
        json!({"stream": "stderr", "text": "bad: ", "raw": [0xff, 0x0d]}),
    )
    .await;
    let line = next_line(&mut lines).await;
    assert_eq!(
        (line.stream, line.text.as_str()),
        (OutputStream::Stderr, "bad: \u{fffd}")
    );

    print(&host, json!({"stream": "stdout", "text": "z".repeat(250)})).await;
    let line = next_line(&mut lines).await;
    assert_eq!(
        line.text,
        format!("{} [truncated 150 bytes]", "z".repeat(100))
    );

    // Three lines in one write come as three lines, in order.
    print_line(&host, "stderr", "1\n2\n3").await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_line(&mut lines).await.text);
    }
    assert_eq!(got, ["1", "2", "3"]);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_nobody_reads_loses_lines_but_never_holds_the_runtime_up() {
    let (sink, mut lines) = OutputSink::channel(4);
    let mut config = support::config("out", "1.0.0", &[]);
    config.output = Some(sink.clone());
    let host = host(config);
    started(&host).await;
    let mut events = host.watch_events();

    // 1 MB, sixteen times what a pipe holds, while nobody reads the sink.
    let line = "x".repeat(99);
    print(
        &host,
        json!({"stream": "stdout", "text": line, "times": 10_000}),
    )
    .await;
    match call(&host, "version", json!(null)).await {
        Body::RuntimeCallResponse(_) => {}
        other => panic!("version answered {other:?}"),
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while sink.dropped() < 10_000 - 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} lines dropped",
            sink.dropped()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sink.dropped(), 10_000 - 4);
    for _ in 0..4 {
        let kept = next_line(&mut lines).await;
        assert_eq!((kept.text.len(), kept.dropped), (99, 0));
    }
    // The next line that gets through says how many were lost before it.
    print_line(&host, "stdout", "after").await;
    let after = next_line(&mut lines).await;
    assert_eq!((after.text.as_str(), after.dropped), ("after", 10_000 - 4));
    assert!(
        events.try_recv().is_err(),
        "the runtime stopped or restarted"
    );
    host.stop().await;
}
