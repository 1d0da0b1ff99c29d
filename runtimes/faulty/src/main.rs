//! `faulty`: a runtime that breaks the protocol in one chosen way, so the
//! host's tests can prove that each failure is contained and explained.
//! Never use it for anything else.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use steward_protocol::{
    Body, Connection, HOST_SOCKET_ENV, Handler, Limits, Peer, ProtocolVersion, RuntimeInfoResponse,
};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

#[derive(Parser)]
#[command(about = "A Steward runtime that misbehaves on purpose (for tests)")]
struct Args {
    /// How to misbehave.
    #[arg(long, value_enum)]
    mode: Mode,
    /// The version to report, where the mode reports one.
    #[arg(long = "version", default_value = "1.0.0")]
    runtime_version: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// Never connects to the host.
    NeverConnect,
    /// Sends a frame of random-looking bytes that are not CBOR.
    Garbage,
    /// Announces a 64 MiB frame.
    Oversized,
    /// Sends the start of a frame, then hangs up (and stays alive).
    Truncated,
    /// Answers the handshake with protocol major version 99.
    WrongProtocol,
    /// Exits as soon as the handshake request arrives.
    CrashInHandshake,
    /// Starts a grandchild process (`sleep`), then serves pings and the
    /// handshake like a well-behaved runtime; for orphan tests.
    SpawnChild,
}

struct Answer {
    protocol: ProtocolVersion,
    version: String,
    crash_on_handshake: bool,
}

impl Handler for Answer {
    async fn handle(&self, request: Body, _peer: &Peer) -> Body {
        match request {
            Body::RuntimeInfoRequest(_) => {
                if self.crash_on_handshake {
                    std::process::exit(3);
                }
                Body::RuntimeInfoResponse(RuntimeInfoResponse {
                    protocol_version: self.protocol,
                    runtime_version: self.version.clone(),
                    features: Vec::new(),
                })
            }
            _ => Body::Empty,
        }
    }
}

async fn connect() -> UnixStream {
    let path = std::env::var_os(HOST_SOCKET_ENV).expect("started by a host");
    UnixStream::connect(path).await.expect("host socket")
}

async fn serve(stream: UnixStream, answer: Answer) {
    let (read, write) = stream.into_split();
    let connection = Connection::start(read, write, answer, Limits::default());
    connection.closed().await;
}

async fn run(args: Args) {
    let forever = Duration::from_secs(3600);
    match args.mode {
        Mode::NeverConnect => tokio::time::sleep(forever).await,
        Mode::Garbage => {
            let mut stream = connect().await;
            let junk = [0xffu8, 0x1c, 0x1d, 0x1e, 0x00, 0x42, 0x13, 0x37];
            let mut frame = (junk.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&junk);
            let _ = stream.write_all(&frame).await;
            tokio::time::sleep(forever).await;
        }
        Mode::Oversized => {
            let mut stream = connect().await;
            let _ = stream.write_all(&(64u32 << 20).to_be_bytes()).await;
            let _ = stream.write_all(&[0u8; 1024]).await;
            tokio::time::sleep(forever).await;
        }
        Mode::Truncated => {
            let mut stream = connect().await;
            let _ = stream.write_all(&100u32.to_be_bytes()).await;
            let _ = stream.write_all(&[0x83, 0x01, 0x01, 0x82]).await;
            drop(stream);
            tokio::time::sleep(forever).await;
        }
        Mode::WrongProtocol | Mode::CrashInHandshake | Mode::SpawnChild => {
            let _grandchild = if matches!(args.mode, Mode::SpawnChild) {
                Some(
                    tokio::process::Command::new("sleep")
                        .arg("3600")
                        .spawn()
                        .expect("spawn a grandchild"),
                )
            } else {
                None
            };
            let protocol = match args.mode {
                Mode::WrongProtocol => ProtocolVersion {
                    major: 99,
                    minor: 0,
                },
                _ => steward_protocol::PROTOCOL_VERSION,
            };
            let answer = Answer {
                protocol,
                version: args.runtime_version,
                crash_on_handshake: matches!(args.mode, Mode::CrashInHandshake),
            };
            serve(connect().await, answer).await;
        }
    }
}

fn main() {
    let args = Args::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(args));
}
