//! Accept loops: TCP and Unix-socket listeners, socket options, back-off when accept fails.

use super::stream::{ClientStream, Peer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

/// A listening socket: TCP, or a Unix socket whose file is removed on drop.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds a TCP listener with SO_REUSEADDR (and SO_REUSEPORT when asked, for hand-over).
pub fn bind(addr: SocketAddr, reuse_port: bool, backlog: u32) -> std::io::Result<Listener> {
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
    TcpListener::from_std(sock.into()).map(Listener::Tcp)
}

/// Binds `DIR/.s.PGSQL.PORT`, as PostgreSQL and libpq name it; a stale socket file (nobody
/// accepting on it) is replaced, a live one is an error.
pub fn bind_unix(dir: &Path, port: u16) -> std::io::Result<Listener> {
    let path = dir.join(format!(".s.PGSQL.{port}"));
    if path.exists() && std::os::unix::net::UnixStream::connect(&path).is_err() {
        std::fs::remove_file(&path)?;
    }
    let l = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
    Ok(Listener::Unix(l, path))
}

impl Listener {
    async fn accept(&self, keepalive: bool) -> std::io::Result<(ClientStream, Peer)> {
        match self {
            Self::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                if keepalive {
                    let _ = socket2::SockRef::from(&s).set_keepalive(true);
                }
                Ok((ClientStream::Tcp(s), Peer::Tcp(peer)))
            }
            Self::Unix(l, _) => Ok((ClientStream::Unix(l.accept().await?.0), Peer::Unix)),
        }
    }
}

/// Accepts until `stop`, handing each client to `on_client`.
pub async fn accept_loop<F>(
    listener: Listener,
    stop: CancellationToken,
    keepalive: bool,
    mut on_client: F,
) where
    F: FnMut(ClientStream, Peer),
{
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept(keepalive) => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
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
