//! The hook tool's wire format: what a hook tool sends the agent and what it
//! gets back, as JSON. This module owns the types; it must never know what
//! a command does.

use serde::{Deserialize, Serialize};

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
}
