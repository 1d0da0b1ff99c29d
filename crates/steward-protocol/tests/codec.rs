//! Message encoding: a round trip for every `Body` variant (proptest), the
//! documented byte layout, and strict refusal of bad payloads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use proptest::prelude::*;
use steward_protocol::{
    Body, CallRequest, CallResponse, CancelRequest, Error, ErrorBody, Kind, Limits, MAX_NESTING,
    Message, PROTOCOL_VERSION, ProtocolVersion, RuntimeInfoRequest, RuntimeInfoResponse,
    StorageEntry, StorageKey, StorageKeys, StorageValue, Value, decode_message, encode_message,
};

/// Arbitrary CBOR values, built through serde from JSON-like data.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    let tree = leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..8)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    });
    prop_oneof![
        tree.prop_map(|json| Value::encode(&json).unwrap()),
        prop::collection::vec(any::<u8>(), 0..256)
            .prop_map(|bytes| Value::encode(&serde_bytes_like(bytes)).unwrap()),
    ]
}

/// A byte string (CBOR major type 2), through serde.
fn serde_bytes_like(bytes: Vec<u8>) -> impl serde::Serialize {
    struct Bytes(Vec<u8>);
    impl serde::Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }
    Bytes(bytes)
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    (any::<u16>(), any::<u16>()).prop_map(|(major, minor)| ProtocolVersion { major, minor })
}

fn body() -> impl Strategy<Value = Body> {
    let text = ".{0,24}";
    prop_oneof![
        Just(Body::Empty),
        (text, any::<u32>(), text).prop_map(|(m, c, s)| Body::Error(ErrorBody::new(m, c, s))),
        (text, version(), text).prop_map(|(runtime_id, protocol_version, expected_version)| {
            Body::RuntimeInfoRequest(RuntimeInfoRequest {
                runtime_id,
                protocol_version,
                expected_version,
            })
        }),
        (version(), text, prop::collection::vec(text, 0..4)).prop_map(
            |(protocol_version, runtime_version, features)| {
                Body::RuntimeInfoResponse(RuntimeInfoResponse {
                    protocol_version,
                    runtime_version,
                    features,
                })
            }
        ),
        Just(Body::RuntimePing),
        Just(Body::RuntimeAbort),
        Just(Body::RuntimeShutdown),
        (text, value())
            .prop_map(|(method, args)| Body::RuntimeCallRequest(CallRequest { method, args })),
        value().prop_map(|result| Body::RuntimeCallResponse(CallResponse { result })),
        text.prop_map(|key| Body::HostStorageGet(StorageKey { key })),
        proptest::option::of(value())
            .prop_map(|value| Body::HostStorageGetResponse(StorageValue { value })),
        (text, value()).prop_map(|(key, value)| Body::HostStorageSet(StorageEntry { key, value })),
        text.prop_map(|key| Body::HostStorageDelete(StorageKey { key })),
        text.prop_map(|key| Body::HostStorageList(StorageKey { key })),
        prop::collection::vec(text, 0..6)
            .prop_map(|keys| Body::HostStorageListResponse(StorageKeys { keys })),
        any::<u64>().prop_map(|request_id| Body::Cancel(CancelRequest { request_id })),
    ]
}

proptest! {
    #[test]
    fn every_body_round_trips(id in any::<u64>(), request in any::<bool>(), body in body()) {
        let kind = if request { Kind::Request } else { Kind::Response };
        let message = Message { id, kind, body };
        let frame = encode_message(&message).unwrap();
        let decoded = decode_message(&frame, &Limits::default()).unwrap();
        prop_assert_eq!(decoded, message);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_message(&bytes, &Limits::default());
    }

    #[test]
    fn every_truncation_of_a_valid_message_is_refused(body in body(), cut in any::<prop::sample::Index>()) {
        let frame = encode_message(&Message { id: 1, kind: Kind::Request, body }).unwrap();
        let cut = cut.index(frame.len());
        prop_assert!(decode_message(&frame[..cut], &Limits::default()).is_err());
    }
}

#[test]
fn layout_matches_the_documentation() {
    // The spec (docs/protocol.md): [id, kind, [tag, [payload]]].
    let call = Message {
        id: 7,
        kind: Kind::Request,
        body: Body::RuntimeCallRequest(CallRequest {
            method: "echo".into(),
            args: Value::from_cbor(vec![0xa1, 0x61, 0x6e, 0x01]).unwrap(),
        }),
    };
    assert_eq!(
        &encode_message(&call).unwrap()[..],
        [
            0x83, 0x07, 0x00, 0x82, 0x07, 0x81, 0x82, 0x64, b'e', b'c', b'h', b'o', 0xa1, 0x61,
            b'n', 0x01
        ]
    );
    let ping = Message {
        id: 1,
        kind: Kind::Request,
        body: Body::RuntimePing,
    };
    assert_eq!(
        &encode_message(&ping).unwrap()[..],
        [0x83, 0x01, 0x00, 0x82, 0x04, 0x80]
    );
    // The handshake of the spec's full exchange (section 10).
    let info = Message {
        id: 1,
        kind: Kind::Request,
        body: Body::RuntimeInfoRequest(RuntimeInfoRequest {
            runtime_id: "echo".into(),
            protocol_version: PROTOCOL_VERSION,
            expected_version: "1.2.0".into(),
        }),
    };
    assert_eq!(
        &encode_message(&info).unwrap()[..],
        [
            0x83, 0x01, 0x00, 0x82, 0x02, 0x81, 0x83, 0x64, b'e', b'c', b'h', b'o', 0x82, 0x01,
            0x01, 0x65, b'1', b'.', b'2', b'.', b'0'
        ]
    );
    let answer = Message {
        id: 1,
        kind: Kind::Response,
        body: Body::RuntimeInfoResponse(RuntimeInfoResponse {
            protocol_version: PROTOCOL_VERSION,
            runtime_version: "1.2.0".into(),
            features: Vec::new(),
        }),
    };
    assert_eq!(
        &encode_message(&answer).unwrap()[..],
        [
            0x83, 0x01, 0x01, 0x82, 0x03, 0x81, 0x83, 0x82, 0x01, 0x01, 0x65, b'1', b'.', b'2',
            b'.', b'0', 0x80
        ]
    );
    // Protocol 1.1: request 9 cancels request 7.
    let cancel = Message {
        id: 9,
        kind: Kind::Request,
        body: Body::Cancel(CancelRequest { request_id: 7 }),
    };
    assert_eq!(
        &encode_message(&cancel).unwrap()[..],
        [0x83, 0x09, 0x00, 0x82, 0x0f, 0x81, 0x81, 0x07]
    );
}

/// "No such key" is the value left out; a stored CBOR `null` is a present
/// value, not "no such key" (a runtime must be able to tell them apart).
#[test]
fn a_stored_null_is_not_an_absent_value() {
    let get = |payload: &[u8]| match decode_message(payload, &Limits::default()).unwrap().body {
        Body::HostStorageGetResponse(StorageValue { value }) => value,
        other => panic!("decoded {other:?}"),
    };
    assert_eq!(get(&[0x83, 0x01, 0x01, 0x82, 0x0a, 0x81, 0x80]), None);
    assert_eq!(
        get(&[0x83, 0x01, 0x01, 0x82, 0x0a, 0x81, 0x81, 0xf6]),
        Some(Value::null())
    );
    // Indefinite length, and a field a later minor version might add.
    assert_eq!(
        get(&[0x83, 0x01, 0x01, 0x82, 0x0a, 0x81, 0x9f, 0x05, 0x06, 0xff]),
        Some(Value::from_cbor(vec![0x05]).unwrap())
    );
    assert_eq!(get(&[0x83, 0x01, 0x01, 0x82, 0x0a, 0x81, 0x9f, 0xff]), None);
    let stored_null = Message {
        id: 1,
        kind: Kind::Response,
        body: Body::HostStorageGetResponse(StorageValue {
            value: Some(Value::null()),
        }),
    };
    assert_eq!(
        &encode_message(&stored_null).unwrap()[..],
        [0x83, 0x01, 0x01, 0x82, 0x0a, 0x81, 0x81, 0xf6]
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let mut frame = encode_message(&Message {
        id: 1,
        kind: Kind::Response,
        body: Body::Empty,
    })
    .unwrap()
    .to_vec();
    frame.push(0x00);
    let error = decode_message(&frame, &Limits::default()).unwrap_err();
    assert!(error.to_string().contains("1 trailing bytes"), "{error}");
}

#[test]
fn oversized_payload_is_refused_before_decoding() {
    let limits = Limits {
        max_frame_bytes: 8,
        ..Limits::default()
    };
    let error = decode_message(&[0u8; 9], &limits).unwrap_err();
    assert!(matches!(error, Error::FrameTooLarge { size: 9, max: 8 }));
}

#[test]
fn deeply_nested_arguments_are_refused() {
    // [1, 0, [7, [["m", [[[[...]]]]]]]]
    let mut frame = vec![0x83, 0x01, 0x00, 0x82, 0x07, 0x81, 0x82, 0x61, b'm'];
    frame.extend(std::iter::repeat_n(0x81, MAX_NESTING + 1));
    frame.push(0x00);
    let error = decode_message(&frame, &Limits::default()).unwrap_err();
    assert!(error.to_string().contains("nested deeper"), "{error}");
}

#[test]
fn unknown_body_variant_is_refused_by_name() {
    let frame = [0x83, 0x01, 0x00, 0x82, 0x18, 0x63, 0x80]; // variant 99
    let error = decode_message(&frame, &Limits::default()).unwrap_err();
    assert!(matches!(error, Error::Malformed { .. }), "{error}");
}
