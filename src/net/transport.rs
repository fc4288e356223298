//! What the client and server stream enums share: `AsyncRead`/`AsyncWrite` delegated to the
//! stream a variant holds (a `match`, no boxing or `dyn` on the forwarding path), and a read
//! that does not wait.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};

/// Implements `AsyncRead` and `AsyncWrite` for an enum whose variants each hold a stream:
/// `Variant(binding) => pinned stream` for every live variant, then optionally
/// `; Dead => io::Error` for unit variants on which every I/O fails.
///
/// ```ignore
/// delegate_async_io!(ServerStream {
///     Tcp(s) => Pin::new(s),
///     Tls(s) => Pin::new(s.as_mut()),
/// });
/// ```
macro_rules! delegate_async_io {
    ($ty:ident { $($var:ident($s:ident) => $pin:expr),+ $(,)? } $(; $dead:ident => $err:expr)?) => {
        impl ::tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut ::tokio::io::ReadBuf<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                match self.get_mut() {
                    $(Self::$var($s) => ::tokio::io::AsyncRead::poll_read($pin, cx, buf),)+
                    $(Self::$dead => ::std::task::Poll::Ready(Err($err)),)?
                }
            }
        }

        impl ::tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                match self.get_mut() {
                    $(Self::$var($s) => ::tokio::io::AsyncWrite::poll_write($pin, cx, buf),)+
                    $(Self::$dead => ::std::task::Poll::Ready(Err($err)),)?
                }
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                match self.get_mut() {
                    $(Self::$var($s) => ::tokio::io::AsyncWrite::poll_flush($pin, cx),)+
                    $(Self::$dead => ::std::task::Poll::Ready(Err($err)),)?
                }
            }

            fn poll_shutdown(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                match self.get_mut() {
                    $(Self::$var($s) => ::tokio::io::AsyncWrite::poll_shutdown($pin, cx),)+
                    $(Self::$dead => ::std::task::Poll::Ready(Err($err)),)?
                }
            }
        }
    };
}
pub(crate) use delegate_async_io;

/// Polls `stream` once for bytes without registering for a wake-up: `Pending` means nothing
/// is there now. Over TLS, plaintext rustls already decrypted counts as there.
pub fn poll_read_now<R: AsyncRead + Unpin + ?Sized>(
    stream: &mut R,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(stream).poll_read(&mut cx, buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A two-variant enum like the real ones: one live stream, one dead state.
    enum Either {
        Duplex(Box<DuplexStream>),
        Gone,
    }
    delegate_async_io!(Either { Duplex(s) => Pin::new(s.as_mut()) }; Gone => io::ErrorKind::NotConnected.into());

    #[tokio::test]
    async fn live_variants_delegate_and_dead_ones_fail() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = Either::Duplex(Box::new(a));
        s.write_all(b"ping").await.unwrap();
        s.flush().await.unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        b.write_all(b"pong").await.unwrap();
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        s.shutdown().await.unwrap();
        assert_eq!(
            b.read(&mut got).await.unwrap(),
            0,
            "shutdown reaches the peer"
        );

        let mut dead = Either::Gone;
        let kind = |r: io::Result<usize>| r.err().map(|e| e.kind());
        assert_eq!(
            kind(dead.write(b"x").await),
            Some(io::ErrorKind::NotConnected)
        );
        assert_eq!(
            kind(dead.read(&mut got).await),
            Some(io::ErrorKind::NotConnected)
        );
        assert!(dead.flush().await.is_err() && dead.shutdown().await.is_err());
    }

    #[tokio::test]
    async fn read_now_does_not_wait() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let mut space = [0u8; 8];
        let mut rb = ReadBuf::new(&mut space);
        assert!(poll_read_now(&mut a, &mut rb).is_pending());
        b.write_all(b"hi").await.unwrap();
        assert!(matches!(
            poll_read_now(&mut a, &mut rb),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(rb.filled(), b"hi");
    }
}
