//! A runtime process's output, with the real test runtime (its `print`
//! method writes chosen bytes to its stdout or stderr): lines that are not
//! UTF-8 and lots of output do not stop the host reading it. Every wait is
//! bounded (20 s) and waits for an answer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

mod support;

use serde_json::json;
use steward_host::RuntimeHost;

use support::{host, print, started};

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
