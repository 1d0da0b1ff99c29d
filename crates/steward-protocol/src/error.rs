//! The protocol crate's one error type.

use std::sync::Arc;

use crate::ErrorBody;

/// What can go wrong speaking the protocol.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame announced more bytes than the configured cap; the
    /// connection is closed (raise `Limits::max_frame_bytes` if legitimate).
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Bytes that are not a valid message; the reason names the problem.
    #[error("malformed message: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
    /// A value nested deeper than allowed.
    #[error("value nested deeper than {max} levels")]
    NestingTooDeep {
        /// The limit.
        max: usize,
    },
    /// A value could not be encoded.
    #[error("cannot encode: {reason}")]
    Encode {
        /// Why.
        reason: String,
    },
    /// The connection closed before the call was answered (or before it
    /// was sent). Retrying on a new connection may succeed.
    #[error("connection closed: {reason}")]
    ConnectionClosed {
        /// Why it closed.
        reason: Arc<str>,
    },
    /// The other side answered with an error.
    #[error("{0}")]
    Remote(ErrorBody),
    /// The other side answered with a body this request does not expect.
    #[error("unexpected response {got} to {request}")]
    UnexpectedResponse {
        /// The request's name.
        request: &'static str,
        /// The response's name.
        got: &'static str,
    },
}
