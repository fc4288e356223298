//! A server connection's transport: plain TCP or TLS over TCP (`server_tls_sslmode`), one
//! type for the login, control queries and the forwarding fast path.

use crate::net::transport::{delegate_async_io, poll_read_now};
use std::io;
use std::pin::Pin;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A connected server.
#[derive(Debug)]
pub enum ServerStream {
    Tcp(TcpStream),
    /// TLS after an SSLRequest answered 'S'; boxed, the rustls state is large.
    Tls(Box<TlsStream<TcpStream>>),
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
        }
    }
}

delegate_async_io!(ServerStream {
    Tcp(s) => Pin::new(s),
    Tls(s) => Pin::new(s.as_mut()),
});
