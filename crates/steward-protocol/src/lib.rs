//! Steward's wire protocol: how the host and a runtime process talk.
//!
//! - A frame is a 4-byte big-endian length, then one CBOR-encoded
//!   [`Message`] `[id, kind, body]`. CBOR so that runtimes can be written in
//!   any language.
//! - Decoding untrusted bytes is strict and bounded: a frame-size cap
//!   ([`Limits`]), a nesting limit ([`MAX_NESTING`]), trailing bytes
//!   rejected. A bad frame closes that connection with an error naming the
//!   problem; nothing panics.
//! - The whole format, byte by byte, for implementers in any language (with
//!   a complete runtime in Python), is the [`spec`].
//! - [`Connection`] is bidirectional and multiplexed: both sides send
//!   requests, many in flight each way, responses matched by id. A call
//!   its caller gives up on (a deadline, a dropped future) is cancelled
//!   on the other side, which stops serving it (protocol 1.1).
//!
//! This crate knows nothing of processes: it speaks over any
//! `AsyncRead`/`AsyncWrite` pair; for a Unix socket, the halves from
//! [`unix_socket::split`] save a wake-up per frame over tokio's own.

mod codec;
mod connection;
mod error;
mod message;
pub mod unix_socket;
mod value;

#[doc = include_str!("../docs/protocol.md")]
pub mod spec {}

pub use codec::{Limits, decode_message, encode_message};
pub use connection::{Connection, Handler, NoRequests, Peer, State};
pub use error::Error;
pub use message::{
    Body, CallRequest, CallResponse, CancelRequest, ErrorBody, Kind, Message, PROTOCOL_VERSION,
    ProtocolVersion, RuntimeInfoRequest, RuntimeInfoResponse, StorageEntry, StorageKey,
    StorageKeys, StorageValue,
};
pub use value::{MAX_NESTING, Value};

/// The environment variable through which the host tells a runtime process
/// where its Unix socket is.
pub const HOST_SOCKET_ENV: &str = "STEWARD_HOST";
