//! The hook tool's wire format: what a hook tool sends the agent and what it
//! gets back, and how they are framed.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of
//! JSON. One connection carries one request or several, one after the other
//! (each answered before the next is read). This module owns the types, the
//! size limits and the framing, blocking (the client) and async (the
//! server); it must never know what a command does.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest request a server reads, in bytes (1 MiB): a hook tool's
/// arguments, never bulk data.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The largest answer a client reads, in bytes (16 MiB). Commands whose
/// output could be larger write it to a file (`--output FILE`).
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// One hook tool invocation, as the client sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRequest {
    /// The hook context the command runs against (from `STEWARD_CONTEXT_ID`).
    pub context_id: String,
    /// The client's working directory; must be absolute. Relative paths in
    /// the arguments (`--output FILE`) are relative to it.
    pub dir: String,
    /// The command's name (`config-get`, …).
    pub command: String,
    /// The command's arguments, without the command name.
    pub args: Vec<String>,
}

/// What a command printed and its exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolOutput {
    /// The exit code: 0 success, 1 the command failed, 2 a usage error.
    pub code: i32,
    /// Text for the client's standard output.
    pub stdout: String,
    /// Text for the client's standard error.
    pub stderr: String,
}

/// The server's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolAnswer {
    /// The request was refused before any command ran (juju's RPC errors:
    /// unknown context, unknown command, bad directory, bad frame). The
    /// message starts with `bad request: `.
    Refused {
        /// Why, for the client to print after `error: `.
        error: String,
    },
    /// The command ran.
    Output(ToolOutput),
}

impl ToolAnswer {
    /// A refusal with `bad request: ` before `reason`.
    pub fn bad_request(reason: impl std::fmt::Display) -> Self {
        ToolAnswer::Refused {
            error: format!("bad request: {reason}"),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The peer closed the connection before the first byte of a frame: the
    /// normal end of a connection.
    Closed,
    /// The announced length is over the limit; the connection cannot be
    /// resynchronised and must be closed.
    TooLarge { size: usize, max: usize },
    /// The connection failed or closed in the middle of a frame.
    Io(io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::TooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds the limit of {max} bytes")
            }
            FrameError::Io(error) => write!(f, "{error}"),
        }
    }
}

fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    // A u32 always fits in usize on the platforms this crate builds for
    // (Unix sockets imply at least 32-bit); saturate rather than panic.
    let size = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(size)
}

fn header(len: usize) -> io::Result<[u8; 4]> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))
}

/// Reads one frame's payload (async; the server side).
pub(crate) async fn read_frame_async<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; 4];
    // The first byte decides between "closed between requests" (normal)
    // and "closed mid-frame" (an error).
    match reader.read(&mut prefix[..1]).await {
        Ok(0) => return Err(FrameError::Closed),
        Ok(_) => {}
        Err(error) => return Err(FrameError::Io(error)),
    }
    reader
        .read_exact(&mut prefix[1..])
        .await
        .map_err(FrameError::Io)?;
    let size = frame_len(prefix, max)?;
    let mut payload = vec![0u8; size];
    reader
        .read_exact(&mut payload)
        .await
        .map_err(FrameError::Io)?;
    Ok(payload)
}

/// Writes one frame (async; the server side).
pub(crate) async fn write_frame_async<W: AsyncWrite + Unpin>(
    writer: &mut W,
    payload: &[u8],
) -> io::Result<()> {
    // One buffer, one write: a request–answer exchange should cost the
    // client one wake-up, not two.
    let mut frame = Vec::with_capacity(payload.len() + 4);
    frame.extend_from_slice(&header(payload.len())?);
    frame.extend_from_slice(payload);
    writer.write_all(&frame).await?;
    writer.flush().await
}

/// Reads one frame's payload (blocking; the client side).
pub(crate) fn read_frame<R: Read>(reader: &mut R, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; 4];
    loop {
        match reader.read(&mut prefix[..1]) {
            Ok(0) => return Err(FrameError::Closed),
            Ok(_) => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(FrameError::Io(error)),
        }
    }
    reader
        .read_exact(&mut prefix[1..])
        .map_err(FrameError::Io)?;
    let size = frame_len(prefix, max)?;
    let mut payload = vec![0u8; size];
    reader.read_exact(&mut payload).map_err(FrameError::Io)?;
    Ok(payload)
}

/// Writes one frame (blocking; the client side).
pub(crate) fn write_frame<W: Write>(writer: &mut W, payload: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(payload.len() + 4);
    frame.extend_from_slice(&header(payload.len())?);
    frame.extend_from_slice(payload);
    writer.write_all(&frame)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_told_apart_by_their_keys() {
        let refused: ToolAnswer =
            serde_json::from_str(r#"{"error":"bad request: command not specified"}"#).unwrap();
        assert_eq!(
            refused,
            ToolAnswer::Refused {
                error: "bad request: command not specified".into()
            }
        );
        let output: ToolAnswer =
            serde_json::from_str(r#"{"code":2,"stdout":"","stderr":"error: x\n"}"#).unwrap();
        assert_eq!(
            output,
            ToolAnswer::Output(ToolOutput {
                code: 2,
                stdout: String::new(),
                stderr: "error: x\n".into()
            })
        );
        assert_eq!(
            serde_json::to_string(&ToolAnswer::bad_request("unknown context \"x\"")).unwrap(),
            r#"{"error":"bad request: unknown context \"x\""}"#
        );
    }

    #[test]
    fn frames_round_trip_and_are_bounded() {
        let mut buffer = Vec::new();
        write_frame(&mut buffer, b"{}").unwrap();
        assert_eq!(buffer, b"\0\0\0\x02{}");
        assert_eq!(read_frame(&mut buffer.as_slice(), 16).unwrap(), b"{}");
        assert!(matches!(
            read_frame(&mut buffer.as_slice(), 1),
            Err(FrameError::TooLarge { size: 2, max: 1 })
        ));
        assert!(matches!(
            read_frame(&mut &b""[..], 16),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_frame(&mut &b"\0\0"[..], 16),
            Err(FrameError::Io(_))
        ));
        assert!(matches!(
            read_frame(&mut &b"\0\0\0\x05ab"[..], 16),
            Err(FrameError::Io(_))
        ));
    }

    #[tokio::test]
    async fn async_frames_match_blocking_ones() {
        let mut buffer = Vec::new();
        write_frame_async(&mut buffer, b"[1]").await.unwrap();
        let mut blocking = Vec::new();
        write_frame(&mut blocking, b"[1]").unwrap();
        assert_eq!(buffer, blocking);
        assert_eq!(
            read_frame_async(&mut buffer.as_slice(), 16).await.unwrap(),
            b"[1]"
        );
        assert!(matches!(
            read_frame_async(&mut &b""[..], 16).await,
            Err(FrameError::Closed)
        ));
    }
}
