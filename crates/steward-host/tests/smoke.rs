//! A first end-to-end check of the process host with the real `echo` runtime.

mod support;
use std::time::Duration;
use steward_host::{Event, RuntimeHost};
use steward_protocol::{Body, CallRequest, CallResponse, Value};

#[tokio::test(flavor = "multi_thread")]
async fn smoke() {
    let host = support::echo("1.0.0");
    let mut events = host.watch_events();
    host.start().unwrap();
    let started = support::next_event(&mut events).await;
    assert!(matches!(started, Event::Started { .. }), "{started:?}");
    let args = Value::encode(&serde_json::json!({"hi": 1})).unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        host.call(Body::RuntimeCallRequest(CallRequest {
            method: "echo".into(),
            args: args.clone(),
        })),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        answer,
        Body::RuntimeCallResponse(CallResponse { result: args })
    );
    host.stop().await;
    let stopped = support::next_event(&mut events).await;
    assert!(matches!(stopped, Event::Stopped { .. }), "{stopped:?}");
}
