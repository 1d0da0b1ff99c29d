//! A call the host gives up on: the SDK drops the call's future and fires
//! its `ctx.cancelled()`, so work handed off by the call learns of it too.
//! The host side is a bare `Connection` over a socket pair.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::time::Duration;

use steward_protocol::{
    Body, CallRequest, Connection, Limits, NoRequests, PROTOCOL_VERSION, RuntimeInfoRequest,
};
use steward_runtime::{CallContext, ErrorBody, Runtime, Value};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The bound on every wait for something that should happen.
const WAIT: Duration = Duration::from_secs(10);

/// `hold` hands its cancel signal to the test and never finishes by itself.
struct Holding {
    handed: mpsc::UnboundedSender<CancellationToken>,
}

impl Runtime for Holding {
    fn version(&self) -> String {
        "1.0.0".into()
    }

    async fn call(&self, ctx: &CallContext, method: &str, args: Value) -> Result<Value, ErrorBody> {
        match method {
            "hold" => {
                let _ = self.handed.send(ctx.cancelled().clone());
                std::future::pending().await
            }
            _ => Ok(args),
        }
    }
}

fn call(method: &str) -> Body {
    Body::RuntimeCallRequest(CallRequest {
        method: method.into(),
        args: Value::null(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_the_host_gives_up_on_fires_its_cancel_signal() {
    let (host_end, runtime_end) = UnixStream::pair().unwrap();
    let (handed, mut tokens) = mpsc::unbounded_channel();
    let runtime = tokio::spawn(steward_runtime::serve_on(runtime_end, Holding { handed }));
    let (read, write) = host_end.into_split();
    let host = Connection::start(read, write, NoRequests, Limits::default());
    let info = host.call(Body::RuntimeInfoRequest(RuntimeInfoRequest {
        runtime_id: "holding".into(),
        protocol_version: PROTOCOL_VERSION,
        expected_version: "1.0.0".into(),
    }));
    tokio::time::timeout(WAIT, info).await.unwrap().unwrap();

    let given_up = tokio::time::timeout(Duration::from_millis(200), host.call(call("hold"))).await;
    assert!(given_up.is_err(), "hold never answers");
    let token = tokio::time::timeout(WAIT, tokens.recv())
        .await
        .expect("the call ran")
        .unwrap();
    tokio::time::timeout(WAIT, token.cancelled())
        .await
        .expect("the cancel signal of the call the host gave up on fires");

    // The runtime keeps serving.
    let answered = tokio::time::timeout(WAIT, host.call(call("echo"))).await;
    assert!(matches!(answered, Ok(Ok(Body::RuntimeCallResponse(_)))));
    host.close("test done");
    tokio::time::timeout(WAIT, runtime)
        .await
        .expect("the runtime exits when the host hangs up")
        .unwrap()
        .unwrap();
}
