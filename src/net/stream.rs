//! A client connection over TCP, TLS over TCP, or a Unix socket: one type for the session
//! code. The idle path (`poll_read_ready` + `try_read_buf`) also works over TLS: plaintext rustls
//! already decrypted counts as readable.

use super::transport::{delegate_async_io, poll_read_now};
use std::io;
use std::pin::Pin;
use std::task::Poll;
use tokio::io::ReadBuf;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::server::TlsStream;

/// A connected client.
#[derive(Debug)]
pub enum ClientStream {
    Tcp(TcpStream),
    /// TLS after an SSLRequest; boxed, the session state is large.
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
    /// Only while the TCP stream moves into TLS (or after a failed handshake): every I/O fails.
    Upgrading,
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection given up during TLS setup",
    )
}

impl ClientStream {
    /// Ready when the socket is readable (or closed), without reading; otherwise the task's
    /// waker waits in the socket's own readiness slot (no waiter node in the caller's future).
    pub fn poll_read_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(s) => s.poll_read_ready(cx),
            Self::Tls(s) => {
                // rustls holding decrypted bytes does not want more: readable now.
                if !s.get_ref().1.wants_read() {
                    return Poll::Ready(Ok(()));
                }
                s.get_ref().0.poll_read_ready(cx)
            }
            Self::Unix(s) => s.poll_read_ready(cx),
            Self::Upgrading => Poll::Ready(Err(gone())),
        }
    }

    /// Reads what is there into `buf` without waiting.
    ///
    /// Over TCP and Unix sockets the read goes through `poll_read`, which notes a short read as
    /// "drained": the forwarder's next read then waits for the socket's next readiness instead
    /// of making a system call that only returns `EAGAIN` (one in five of a transaction's).
    pub fn try_read_buf(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        match self {
            Self::Tcp(_) | Self::Unix(_) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match tokio_util::io::poll_read_buf(Pin::new(self), &mut cx, buf) {
                    Poll::Ready(r) => r,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
            Self::Tls(s) => {
                let start = buf.len();
                buf.resize(start + 8192, 0);
                let mut rb = ReadBuf::new(&mut buf[start..]);
                let polled = poll_read_now(s.as_mut(), &mut rb);
                let n = rb.filled().len();
                buf.truncate(start + n);
                match polled {
                    Poll::Ready(Ok(())) => Ok(n),
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
            Self::Upgrading => Err(gone()),
        }
    }

    /// Takes the TCP stream out for a TLS handshake (leaves `Upgrading`).
    pub fn take_tcp(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, Self::Upgrading) {
            Self::Tcp(s) => Some(s),
            other => {
                *self = other;
                None
            }
        }
    }

    /// The client's IP address; `None` for a Unix socket.
    pub fn peer_ip(&self) -> io::Result<Option<std::net::IpAddr>> {
        match self {
            Self::Tcp(s) => Ok(Some(s.peer_addr()?.ip())),
            Self::Tls(s) => Ok(Some(s.get_ref().0.peer_addr()?.ip())),
            Self::Unix(_) => Ok(None),
            Self::Upgrading => Err(gone()),
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// Whether this is a Unix-socket connection.
    pub fn is_unix(&self) -> bool {
        matches!(self, Self::Unix(_))
    }
}

delegate_async_io!(ClientStream {
    Tcp(s) => Pin::new(s),
    Tls(s) => Pin::new(s.as_mut()),
    Unix(s) => Pin::new(s),
}; Upgrading => gone());

/// Where a client connected from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(std::net::SocketAddr),
    Unix,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => a.fmt(f),
            Self::Unix => f.write_str("unix"),
        }
    }
}
