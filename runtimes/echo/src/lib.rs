//! `echo`: the example runtime used by the demo, the tests and the
//! benchmarks. Each method exercises one thing a host must cope with.
//!
//! | method | args | result |
//! |---|---|---|
//! | `echo` | anything | the args, unchanged |
//! | `version` | — | this process's version string |
//! | `sleep` | `{"ms": N}` | `null` after N ms (or an `aborted` error on abort) |
//! | `fail` | `{"code": N, "message": S}` | an error body `echo`/N/S |
//! | `crash` | — | the process exits with status 101 |
//! | `big` | `{"bytes": N}` | a byte string of N bytes |
//! | `print` | `{"text": S, "stream": "stdout"\|"stderr"}` | `null`, once S is printed as a line on that stream (stdout when left out) |
//!
//! The version comes from the command line (`--version 2.0.0`), so one
//! binary serves as every configured version. On start it prints
//! `echo VERSION starting` on stdout, so that its host's logs of it have a
//! line. Printing never fails a call or the process: a closed pipe only
//! loses the line.

use std::io::Write;
use std::time::Duration;

use serde::Deserialize;
use steward_runtime::{CallContext, ErrorBody, Runtime, Value, decode_args, encode_result};

/// The `module` of this runtime's error answers.
const MODULE: &str = "echo";

struct Echo {
    version: String,
}

/// Error codes of module `echo`.
const CODE_NO_METHOD: u32 = 404;
const CODE_ABORTED: u32 = ErrorBody::CODE_ABORTED;

#[derive(Deserialize)]
struct Sleep {
    ms: u64,
}

#[derive(Deserialize)]
struct Fail {
    code: u32,
    message: String,
}

#[derive(Deserialize)]
struct Big {
    bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Print {
    text: String,
    #[serde(default)]
    stream: Stream,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Stream {
    #[default]
    Stdout,
    Stderr,
}

/// Writes `text` and a newline on `stream`, losing it if the pipe is gone.
fn print_line(stream: Stream, text: &str) {
    let _ = match stream {
        Stream::Stdout => writeln!(std::io::stdout().lock(), "{text}"),
        Stream::Stderr => writeln!(std::io::stderr().lock(), "{text}"),
    };
}

/// A CBOR byte string, through serde.
struct ByteString(Vec<u8>);

impl serde::Serialize for ByteString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl Runtime for Echo {
    fn version(&self) -> String {
        self.version.clone()
    }

    async fn call(
        &self,
        ctx: &CallContext,
        method: &str,
        input: Value,
    ) -> Result<Value, ErrorBody> {
        match method {
            "echo" => Ok(input),
            "version" => encode_result(MODULE, &self.version),
            "sleep" => {
                let Sleep { ms } = decode_args(MODULE, method, &input)?;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(Value::null()),
                    () = ctx.aborted().cancelled() => {
                        Err(ErrorBody::new(MODULE, CODE_ABORTED, "sleep aborted by the host"))
                    }
                }
            }
            "fail" => {
                let Fail { code, message } = decode_args(MODULE, method, &input)?;
                Err(ErrorBody::new(MODULE, code, message))
            }
            "crash" => {
                tracing::warn!("crashing on request");
                std::process::exit(101);
            }
            "big" => {
                let Big { bytes } = decode_args(MODULE, method, &input)?;
                encode_result(MODULE, &ByteString(vec![0xab; bytes]))
            }
            "print" => {
                let Print { text, stream } = decode_args(MODULE, method, &input)?;
                print_line(stream, &text);
                Ok(Value::null())
            }
            other => Err(ErrorBody::new(
                MODULE,
                CODE_NO_METHOD,
                format!("no method {other:?}; try echo, version, sleep, fail, crash, big or print"),
            )),
        }
    }
}

/// Runs the `echo` runtime with command-line `args` (the first is the
/// program name): the entry point of the `steward-runtime-echo` binary and of
/// `steward example-runtime echo`, which is how the agent's demo finds its
/// example runtimes without a separate build step.
pub fn main_from<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString>,
{
    steward_runtime::main_versioned("steward-runtime-echo", args, |version| {
        print_line(Stream::Stdout, &format!("echo {version} starting"));
        Echo { version }
    })
}
