//! A server connection's transport: plain TCP, TLS over TCP (`server_tls_sslmode`) or a Unix
//! socket (`host` starting with `/`), one type for the login, control queries and the
//! forwarding fast path.

use crate::net::transport::{delegate_async_io, poll_read_now};
use std::io;
use std::pin::Pin;
use tokio::io::ReadBuf;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;

/// A connected server.
#[derive(Debug)]
pub enum ServerStream {
    Tcp(TcpStream),
    /// TLS after an SSLRequest answered 'S'; boxed, the rustls state is large.
    Tls(Box<TlsStream<TcpStream>>),
    /// A local server's socket (`host = "/var/run/postgresql"`): no TLS, as libpq does.
    Unix(UnixStream),
}

/// The socket file of a server whose `host` is a directory, as libpq names it.
pub fn unix_socket_path(dir: &str, port: u16) -> std::path::PathBuf {
    std::path::Path::new(dir).join(format!(".s.PGSQL.{port}"))
}

/// Whether `host` names a Unix-socket directory rather than a network host (libpq's rule).
pub fn is_unix_host(host: &str) -> bool {
    host.starts_with('/')
}

impl ServerStream {
    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// Whether the server has nothing to say (no data, no EOF, no error) right now.
    ///
    /// Over TLS, decrypted bytes rustls holds count as something to say; a TLS record that
    /// carries no application data (a session ticket, say) is consumed and counts as quiet.
    pub fn is_quiet(&mut self) -> bool {
        let mut probe = [0u8; 64];
        match self {
            Self::Tcp(s) => {
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Self::Tls(s) => poll_read_now(s.as_mut(), &mut ReadBuf::new(&mut probe)).is_pending(),
            Self::Unix(s) => {
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Registers the socket with the reactor of the runtime running the caller instead of the
    /// one it was opened on, so that its readiness wakes the worker that now uses it (two
    /// `epoll_ctl` calls). A TLS connection stays where it is (tokio-rustls cannot be taken
    /// apart and rebuilt): it still works from any worker, through the reactor it was opened
    /// on. An error means the socket is lost (it was closed).
    pub fn rebind(self) -> io::Result<Self> {
        match self {
            Self::Tcp(s) => TcpStream::from_std(s.into_std()?).map(Self::Tcp),
            Self::Unix(s) => UnixStream::from_std(s.into_std()?).map(Self::Unix),
            tls @ Self::Tls(_) => Ok(tls),
        }
    }
}

delegate_async_io!(ServerStream {
    Tcp(s) => Pin::new(s),
    Tls(s) => Pin::new(s.as_mut()),
    Unix(s) => Pin::new(s),
});
