//! Accept loop: socket options, the client limit, and back-off when accept fails.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Binds a TCP listener with SO_REUSEADDR (and SO_REUSEPORT when asked, for hand-over).
pub fn bind(addr: SocketAddr, reuse_port: bool, backlog: u32) -> std::io::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog as i32)?;
    TcpListener::from_std(sock.into())
}

/// Accepts until `stop`, handing each client to `on_client`.
pub async fn accept_loop<F>(
    listener: TcpListener,
    stop: CancellationToken,
    keepalive: bool,
    mut on_client: F,
) where
    F: FnMut(TcpStream, SocketAddr),
{
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let _ = stream.set_nodelay(true);
                if keepalive {
                    let _ = socket2::SockRef::from(&stream).set_keepalive(true);
                }
                on_client(stream, peer);
            }
            Err(e) => {
                // Out of descriptors or a transient error: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
