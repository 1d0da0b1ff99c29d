//! [`Proxy`]: a loopback TCP forwarder to etcd that can freeze every
//! connection through it, to cut one agent off while the fleet goes on.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A TCP proxy on a free loopback port. While frozen, no byte passes in
/// either direction and connections stay open (new ones are accepted and
/// frozen too): to its clients etcd is silent, as when it is stopped or
/// the network drops packets. Stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    frozen: Arc<watch::Sender<bool>>,
    stop: CancellationToken,
}

impl Proxy {
    /// Starts forwarding a free loopback port to `target` (`host:port`).
    /// Must be called inside a tokio runtime; the proxy lives on it.
    pub async fn start(target: &str) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let frozen = Arc::new(watch::Sender::new(false));
        let stop = CancellationToken::new();
        let target = target.to_owned();
        let (accept_frozen, accept_stop) = (frozen.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = accept_stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let (frozen, stop) = (accept_frozen.subscribe(), accept_stop.child_token());
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        connection(client, server, frozen, stop).await;
                    }
                });
            }
        });
        Ok(Proxy { port, frozen, stop })
    }

    /// The URL to give clients, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops every byte, in both directions, on every connection.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Lets bytes pass again (those held back first).
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn connection(
    client: TcpStream,
    server: TcpStream,
    frozen: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either direction ending ends the connection, as a closed socket would.
    tokio::select! {
        () = stop.cancelled() => {}
        () = pump(client_read, server_write, frozen.clone()) => {}
        () = pump(server_read, client_write, frozen) => {}
    }
}

/// Copies bytes one way, holding them while frozen.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut frozen: watch::Receiver<bool>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if frozen.wait_for(|frozen| !*frozen).await.is_err() {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // Frozen while waiting: stop reading (the read is cancel safe).
            _ = frozen.wait_for(|frozen| *frozen) => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|frozen| !*frozen).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
