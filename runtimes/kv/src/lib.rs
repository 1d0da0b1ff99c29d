//! `kv`: an example runtime whose state lives in the host's storage, so it
//! survives restarts and version switches.
//!
//! | method | args | result |
//! |---|---|---|
//! | `put` | `{"key": S, "value": V}` | `null` |
//! | `get` | `{"key": S}` | V, or `null` when absent |
//! | `delete` | `{"key": S}` | `null` |
//! | `list` | — | the keys, sorted |
//! | `version` | — | this process's version string |
//!
//! The version comes from the command line (`--version 1.1.0`).

use serde::Deserialize;
use steward_runtime::{CallContext, ErrorBody, Runtime, Value, decode_args, encode_result};

/// The `module` of this runtime's error answers.
const MODULE: &str = "kv";

struct Kv {
    version: String,
}

const CODE_NO_METHOD: u32 = 404;
const CODE_STORAGE: u32 = 503;

/// Keys are stored under this prefix, leaving room for other state.
const PREFIX: &str = "kv/";

#[derive(Deserialize)]
struct Key {
    key: String,
}

#[derive(Deserialize)]
struct Put {
    key: String,
}

fn storage_error(error: steward_runtime::Error) -> ErrorBody {
    ErrorBody::new(MODULE, CODE_STORAGE, format!("host storage: {error}"))
}

impl Runtime for Kv {
    fn version(&self) -> String {
        self.version.clone()
    }

    async fn call(
        &self,
        ctx: &CallContext,
        method: &str,
        input: Value,
    ) -> Result<Value, ErrorBody> {
        let storage = ctx.storage();
        match method {
            "put" => {
                let Put { key } = decode_args(MODULE, method, &input)?;
                // Store the value's CBOR as it came, without re-encoding.
                let value = extract_value(&input)?;
                storage
                    .set(&format!("{PREFIX}{key}"), value)
                    .await
                    .map_err(storage_error)?;
                Ok(Value::null())
            }
            "get" => {
                let Key { key } = decode_args(MODULE, method, &input)?;
                let found = storage
                    .get(&format!("{PREFIX}{key}"))
                    .await
                    .map_err(storage_error)?;
                Ok(found.unwrap_or_else(Value::null))
            }
            "delete" => {
                let Key { key } = decode_args(MODULE, method, &input)?;
                storage
                    .delete(&format!("{PREFIX}{key}"))
                    .await
                    .map_err(storage_error)?;
                Ok(Value::null())
            }
            "list" => {
                let keys = storage.list(PREFIX).await.map_err(storage_error)?;
                let keys: Vec<&str> = keys.iter().filter_map(|k| k.strip_prefix(PREFIX)).collect();
                encode_result(MODULE, &keys)
            }
            "version" => encode_result(MODULE, &self.version),
            other => Err(ErrorBody::new(
                MODULE,
                CODE_NO_METHOD,
                format!("no method {other:?}; try put, get, delete, list or version"),
            )),
        }
    }
}

/// The `value` field of `put`'s args, as it came (no re-encoding).
fn extract_value(input: &Value) -> Result<Value, ErrorBody> {
    input
        .field("value")
        .map_err(|e| ErrorBody::new(MODULE, steward_runtime::CODE_BAD_ARGS, format!("put: {e}")))?
        .ok_or_else(|| {
            ErrorBody::new(
                MODULE,
                steward_runtime::CODE_BAD_ARGS,
                "put: missing field `value`",
            )
        })
}

/// Runs the `kv` runtime with command-line `args` (the first is the
/// program name): the entry point of the `steward-runtime-kv` binary and of
/// `steward example-runtime kv`, which is how the agent's demo finds its
/// example runtimes without a separate build step.
pub fn main_from<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString>,
{
    steward_runtime::main_versioned("steward-runtime-kv", args, |version| Kv { version })
}
