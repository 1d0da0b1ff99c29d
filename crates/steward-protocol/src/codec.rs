//! Frames ↔ messages: strict decoding of untrusted bytes, and limits.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of
//! one CBOR-encoded [`Message`]. Framing itself is tokio-util's
//! `LengthDelimitedCodec` (configured in the connection); this module turns
//! one frame's bytes into a message and back. It must never panic on any
//! input: every failure is an [`Error`] naming the problem.

use bytes::Bytes;

use crate::{Error, Message};

/// Bounds on what a connection accepts and buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame accepted or sent, in bytes. Default 16 MiB.
    pub max_frame_bytes: usize,
    /// Requests from the other side served at once. Default 256.
    pub max_concurrent_requests: usize,
    /// Requests waiting for a free slot; beyond that, requests are refused
    /// at once with a `busy` error. Default 1024.
    pub max_queued_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 16 * 1024 * 1024,
            max_concurrent_requests: 256,
            max_queued_requests: 1024,
        }
    }
}

/// Encodes a message as one frame's payload (without the length prefix).
pub fn encode_message(message: &Message) -> Result<Bytes, Error> {
    minicbor::to_vec(message)
        .map(Bytes::from)
        .map_err(|e| Error::Encode {
            reason: e.to_string(),
        })
}

/// Decodes one frame's payload: exactly one message, nothing after it,
/// within `limits`.
pub fn decode_message(payload: &[u8], limits: &Limits) -> Result<Message, Error> {
    if payload.len() > limits.max_frame_bytes {
        return Err(Error::FrameTooLarge {
            size: payload.len(),
            max: limits.max_frame_bytes,
        });
    }
    let mut decoder = minicbor::Decoder::new(payload);
    let message: Message = decoder.decode().map_err(|e| Error::Malformed {
        reason: e.to_string(),
    })?;
    let end = decoder.position();
    if end != payload.len() {
        return Err(Error::Malformed {
            reason: format!("{} trailing bytes after the message", payload.len() - end),
        });
    }
    Ok(message)
}

/// For a payload that failed to decode: its id, kind and body variant
/// number, if only the variant is unknown (a newer peer's addition). Such
/// a message is answered or failed on its own instead of closing the
/// connection.
pub(crate) fn unknown_variant(payload: &[u8]) -> Option<(u64, crate::Kind, u32)> {
    let mut decoder = minicbor::Decoder::new(payload);
    if decoder.array().ok()? != Some(3) {
        return None;
    }
    let id = decoder.u64().ok()?;
    let kind = decoder.decode::<crate::Kind>().ok()?;
    if decoder.array().ok()? != Some(2) {
        return None;
    }
    let variant = decoder.u32().ok()?;
    (variant >= crate::message::BODY_VARIANTS).then_some((id, kind, variant))
}
