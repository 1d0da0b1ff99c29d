//! The wire types: [`Message`] and its [`Body`].
//!
//! Field and variant numbers are the wire format (see the [`spec`](crate::spec)):
//! never renumber; add new optional fields at the end and new variants
//! with new numbers. This module must never do I/O.

use minicbor::{Decode, Encode};

use crate::Value;

/// The protocol version this crate speaks. Peers must agree on `major`;
/// `minor` only adds optional things (1.1 added [`Body::Cancel`]).
pub const PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion { major: 1, minor: 1 };

/// One frame's content.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(array)]
pub struct Message {
    /// Chosen by the side that sends the request, unique among its
    /// requests in flight; a response repeats the request's id.
    #[n(0)]
    pub id: u64,
    /// Request or response.
    #[n(1)]
    pub kind: Kind,
    /// What it says.
    #[n(2)]
    pub body: Body,
}

/// Whether a message asks or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum Kind {
    /// Asks the other side; expects exactly one response with the same id.
    #[n(0)]
    Request,
    /// Answers the other side's request with this id.
    #[n(1)]
    Response,
}

/// A protocol version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(array)]
pub struct ProtocolVersion {
    /// Incompatible changes.
    #[n(0)]
    pub major: u16,
    /// Compatible additions.
    #[n(1)]
    pub minor: u16,
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Everything a message can carry. Requests and their usual responses:
///
/// | request (sent by) | response |
/// |---|---|
/// | `RuntimeInfoRequest` (host) | `RuntimeInfoResponse` |
/// | `RuntimePing` (host) | `Empty` |
/// | `RuntimeAbort` (host) | `Empty` |
/// | `RuntimeShutdown` (host) | `Empty`, then the runtime exits |
/// | `RuntimeCallRequest` (host) | `RuntimeCallResponse` |
/// | `HostStorageGet` (runtime) | `HostStorageGetResponse` |
/// | `HostStorageSet` / `HostStorageDelete` (runtime) | `Empty` |
/// | `HostStorageList` (runtime) | `HostStorageListResponse` |
/// | `Cancel` (either, since 1.1) | `Empty`; the cancelled request may get no answer |
///
/// Any request may instead be answered with `Error`.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum Body {
    /// Nothing; the success answer of requests that return nothing.
    #[n(0)]
    Empty,
    /// A failure, answering any request.
    #[n(1)]
    Error(#[n(0)] ErrorBody),
    /// Host → runtime, first message on a connection: who you are and
    /// which protocol the host speaks.
    #[n(2)]
    RuntimeInfoRequest(#[n(0)] RuntimeInfoRequest),
    /// Runtime → host: the runtime's side of the handshake.
    #[n(3)]
    RuntimeInfoResponse(#[n(0)] RuntimeInfoResponse),
    /// Host → runtime: are you alive?
    #[n(4)]
    RuntimePing,
    /// Host → runtime: abandon the work in progress (calls in flight may
    /// fail); the runtime stays up.
    #[n(5)]
    RuntimeAbort,
    /// Host → runtime: finish up and exit.
    #[n(6)]
    RuntimeShutdown,
    /// Host → runtime: an application call.
    #[n(7)]
    RuntimeCallRequest(#[n(0)] CallRequest),
    /// Runtime → host: an application call's result.
    #[n(8)]
    RuntimeCallResponse(#[n(0)] CallResponse),
    /// Runtime → host: read a key of the runtime's storage.
    #[n(9)]
    HostStorageGet(#[n(0)] StorageKey),
    /// Host → runtime: the value of a key, or nothing.
    #[n(10)]
    HostStorageGetResponse(#[n(0)] StorageValue),
    /// Runtime → host: write a key.
    #[n(11)]
    HostStorageSet(#[n(0)] StorageEntry),
    /// Runtime → host: remove a key (removing a missing key succeeds).
    #[n(12)]
    HostStorageDelete(#[n(0)] StorageKey),
    /// Runtime → host: the keys starting with a prefix, sorted.
    #[n(13)]
    HostStorageList(#[n(0)] StorageKey),
    /// Host → runtime: keys found.
    #[n(14)]
    HostStorageListResponse(#[n(0)] StorageKeys),
    /// Either side, since 1.1: the sender gave up on one of its own
    /// requests (a deadline, a caller gone); the receiver stops serving it.
    /// Handled by the [`Connection`](crate::Connection) itself, never by a
    /// [`Handler`](crate::Handler).
    #[n(15)]
    Cancel(#[n(0)] CancelRequest),
}

/// How many `Body` variants this version knows (numbers `0..BODY_VARIANTS`).
pub(crate) const BODY_VARIANTS: u32 = 16;

impl Body {
    /// The variant's name, for logs and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Empty => "Empty",
            Body::Error(_) => "Error",
            Body::RuntimeInfoRequest(_) => "RuntimeInfoRequest",
            Body::RuntimeInfoResponse(_) => "RuntimeInfoResponse",
            Body::RuntimePing => "RuntimePing",
            Body::RuntimeAbort => "RuntimeAbort",
            Body::RuntimeShutdown => "RuntimeShutdown",
            Body::RuntimeCallRequest(_) => "RuntimeCallRequest",
            Body::RuntimeCallResponse(_) => "RuntimeCallResponse",
            Body::HostStorageGet(_) => "HostStorageGet",
            Body::HostStorageGetResponse(_) => "HostStorageGetResponse",
            Body::HostStorageSet(_) => "HostStorageSet",
            Body::HostStorageDelete(_) => "HostStorageDelete",
            Body::HostStorageList(_) => "HostStorageList",
            Body::HostStorageListResponse(_) => "HostStorageListResponse",
            Body::Cancel(_) => "Cancel",
        }
    }

    /// True for the requests allowed before the handshake completed.
    pub fn is_handshake(&self) -> bool {
        matches!(self, Body::RuntimeInfoRequest(_) | Body::RuntimePing)
    }
}

/// A failure: which part failed, a machine-readable code, and a message
/// for people.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(array)]
pub struct ErrorBody {
    /// The part that failed (`"protocol"`, `"host"`, or the runtime's own
    /// module names).
    #[n(0)]
    pub module: String,
    /// A code, unique within `module`.
    #[n(1)]
    pub code: u32,
    /// What went wrong, for people.
    #[n(2)]
    pub message: String,
}

impl ErrorBody {
    /// `protocol` code: the request is not understood by this side.
    pub const CODE_UNSUPPORTED: u32 = 1;
    /// `protocol` code: the request came before the handshake.
    pub const CODE_NOT_READY: u32 = 2;
    /// `protocol` code: this side failed to produce an answer.
    pub const CODE_INTERNAL: u32 = 3;
    /// `protocol` code: the request was abandoned (abort, shutdown).
    pub const CODE_ABORTED: u32 = 4;
    /// `protocol` code: too many requests in progress; try again later.
    pub const CODE_BUSY: u32 = 5;

    /// A failure body.
    pub fn new(module: impl Into<String>, code: u32, message: impl Into<String>) -> Self {
        Self {
            module: module.into(),
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} error {}: {}", self.module, self.code, self.message)
    }
}

/// The host's side of the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(array)]
pub struct RuntimeInfoRequest {
    /// The runtime id the host runs this process as.
    #[n(0)]
    pub runtime_id: String,
    /// The protocol version the host speaks.
    #[n(1)]
    pub protocol_version: ProtocolVersion,
    /// The runtime version the host expects this process to be.
    #[n(2)]
    pub expected_version: String,
}

/// The runtime's side of the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(array)]
pub struct RuntimeInfoResponse {
    /// The protocol version the runtime speaks.
    #[n(0)]
    pub protocol_version: ProtocolVersion,
    /// The runtime's own version (must equal the configured one).
    #[n(1)]
    pub runtime_version: String,
    /// Optional capabilities, by name.
    #[n(2)]
    pub features: Vec<String>,
}

/// An application call.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(array)]
pub struct CallRequest {
    /// Which method.
    #[n(0)]
    pub method: String,
    /// Its arguments: any CBOR item.
    #[n(1)]
    pub args: Value,
}

/// An application call's result.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(array)]
pub struct CallResponse {
    /// Any CBOR item.
    #[n(0)]
    pub result: Value,
}

/// Which request a [`Body::Cancel`] gives up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(array)]
pub struct CancelRequest {
    /// The id of the sender's own request, as it sent it.
    #[n(0)]
    pub request_id: u64,
}

/// A storage key (or key prefix).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(array)]
pub struct StorageKey {
    /// The key.
    #[n(0)]
    pub key: String,
}

/// A stored value, if present.
///
/// Encoded by hand: "no such key" is the field left out (`[]`), so a
/// stored CBOR `null` (`[null]`) stays a present value. The derived
/// decoding of an `Option` would read that `null` as absent, and a runtime
/// could not tell a stored `null` from a missing key.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageValue {
    /// `None` when the key is absent.
    pub value: Option<Value>,
}

impl<C> Encode<C> for StorageValue {
    fn encode<W: minicbor::encode::Write>(
        &self,
        e: &mut minicbor::Encoder<W>,
        ctx: &mut C,
    ) -> Result<(), minicbor::encode::Error<W::Error>> {
        match &self.value {
            None => e.array(0)?.ok(),
            Some(value) => {
                e.array(1)?;
                <Value as Encode<C>>::encode(value, e, ctx)
            }
        }
    }
}

impl<'b, C> Decode<'b, C> for StorageValue {
    fn decode(d: &mut minicbor::Decoder<'b>, ctx: &mut C) -> Result<Self, minicbor::decode::Error> {
        let mut value = None;
        match d.array()? {
            Some(len) => {
                for index in 0..len {
                    if index == 0 {
                        value = Some(<Value as Decode<C>>::decode(d, ctx)?);
                    } else {
                        // Fields a later minor version may add.
                        d.skip()?;
                    }
                }
            }
            None => {
                let mut index = 0;
                while d.datatype()? != minicbor::data::Type::Break {
                    if index == 0 {
                        value = Some(<Value as Decode<C>>::decode(d, ctx)?);
                    } else {
                        d.skip()?;
                    }
                    index += 1;
                }
                d.skip()?;
            }
        }
        Ok(Self { value })
    }
}

/// A key and the value to store under it.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(array)]
pub struct StorageEntry {
    /// The key.
    #[n(0)]
    pub key: String,
    /// The value: any CBOR item.
    #[n(1)]
    pub value: Value,
}

/// Keys found by a list request, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(array)]
pub struct StorageKeys {
    /// The keys.
    #[n(0)]
    pub keys: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_variants_counts_every_variant() {
        // The highest variant number must be BODY_VARIANTS - 1.
        let last = Body::Cancel(CancelRequest { request_id: 0 });
        let cbor = minicbor::to_vec(&last).unwrap();
        assert_eq!(cbor[..2], [0x82, (BODY_VARIANTS - 1) as u8]);
    }
}
