//! Feeds arbitrary bytes to the frame decoder and the value checker.
//!
//! Nothing may panic. A payload that decodes must re-encode to bytes that
//! decode to the same message, and that encoding must be a fixed point
//! (the input itself need not be reproduced byte for byte: the decoder
//! accepts non-canonical forms such as long integer heads or
//! indefinite-length arrays). A checked value must keep its bytes, and
//! looking a key up in it must not panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_protocol::{Limits, Value, decode_message, encode_message};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(message) = decode_message(data, &limits) {
        let encoded = encode_message(&message).expect("a decoded message re-encodes");
        let again = decode_message(&encoded, &limits).expect("a re-encoded message decodes");
        assert_eq!(again, message, "the round trip changed the message");
        let encoded_again = encode_message(&again).expect("re-encodes");
        assert_eq!(encoded_again, encoded, "the encoding is not a fixed point");
    }
    if let Ok(value) = Value::from_cbor(data.to_vec()) {
        assert_eq!(value.as_cbor(), data, "a checked value changed its bytes");
        let _ = value.field("k");
    }
});
