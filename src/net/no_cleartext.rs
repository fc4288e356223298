//! A plain TCP stream towards PostgreSQL for clients we do not write ourselves
//! (tokio-postgres: the agent's and the pooler's probes) that refuses to go on when the server
//! asks for a cleartext password: it watches the server's messages until AuthenticationOk and
//! fails the read that carries AuthenticationCleartextPassword, so the client never gets to
//! send the password. After AuthenticationOk it only passes bytes through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What the scanner waits for.
#[derive(Debug, Clone, Copy)]
enum Scan {
    /// A message header (tag, length) and, for 'R', the request code: up to 9 bytes.
    Head { buf: [u8; 9], have: usize },
    /// The rest of a message body.
    Skip(usize),
    /// Authentication is over.
    Done,
}

/// A stream that errors out instead of delivering a cleartext password request.
#[derive(Debug)]
pub struct NoCleartext<S> {
    inner: S,
    scan: Scan,
}

/// The error a refused request gives.
pub fn refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the server asks for a cleartext password over a connection without TLS: refused \
         (use md5 or scram-sha-256 for this role in pg_hba.conf)",
    )
}

/// The refusal inside `e` (an error of a client that used a [`NoCleartext`] stream), as a
/// fresh error that says why.
pub fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<io::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::PermissionDenied
                && io.to_string() == refused().to_string()
            {
                return Some(refused());
            }
        }
        cur = err.source();
    }
    None
}

impl<S> NoCleartext<S> {
    /// Wraps `inner`, watching from the first byte the server sends.
    pub fn new(inner: S) -> Self {
        NoCleartext {
            inner,
            scan: Scan::Head {
                buf: [0; 9],
                have: 0,
            },
        }
    }

    /// Feeds bytes the server sent; `Err` on a cleartext password request.
    fn feed(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.scan {
                Scan::Done => return Ok(()),
                Scan::Skip(n) => {
                    let k = (*n).min(bytes.len());
                    bytes = &bytes[k..];
                    *n -= k;
                    if *n == 0 {
                        self.scan = Scan::Head {
                            buf: [0; 9],
                            have: 0,
                        };
                    }
                }
                Scan::Head { buf, have } => {
                    let want = if *have >= 1 && buf[0] == b'R' { 9 } else { 5 };
                    let k = (want - *have).min(bytes.len());
                    buf[*have..*have + k].copy_from_slice(&bytes[..k]);
                    *have += k;
                    bytes = &bytes[k..];
                    let want = if buf[0] == b'R' { 9 } else { 5 };
                    if *have < want {
                        continue;
                    }
                    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                    let body_left = len.saturating_sub(4).saturating_sub(want - 5);
                    if buf[0] == b'R' {
                        match i32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) {
                            3 => return Err(refused()),
                            0 => {
                                self.scan = Scan::Done;
                                return Ok(());
                            }
                            _ => {}
                        }
                    }
                    self.scan = match body_left {
                        0 => Scan::Head {
                            buf: [0; 9],
                            have: 0,
                        },
                        n => Scan::Skip(n),
                    };
                }
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for NoCleartext<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if !matches!(me.scan, Scan::Done) {
                    let new = buf.filled()[before..].to_vec();
                    if let Err(e) = me.feed(&new) {
                        buf.set_filled(before);
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoCleartext<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Connects to `host:port` over TCP (no delay, keepalive), guarded.
pub async fn connect(host: &str, port: u16) -> io::Result<NoCleartext<TcpStream>> {
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(
        &socket2::TcpKeepalive::new().with_time(std::time::Duration::from_secs(5)),
    );
    Ok(NoCleartext::new(tcp))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn auth(code: i32, data: &[u8]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&(8 + data.len() as i32).to_be_bytes());
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(data);
        m
    }

    /// Feeds `stream` in pieces of `step` bytes; the first error, if any.
    fn feed_in(stream: &[u8], step: usize) -> io::Result<()> {
        let mut g = NoCleartext::new(());
        stream.chunks(step).try_for_each(|c| g.feed(c))
    }

    #[test]
    fn a_cleartext_request_is_refused_however_it_is_split() {
        let mut s = auth(3, b"");
        s.extend_from_slice(b"Z\0\0\0\x05I");
        for step in 1..=s.len() {
            assert!(feed_in(&s, step).is_err(), "step {step}");
        }
    }

    #[test]
    fn scram_md5_and_what_follows_authentication_pass() {
        let mut s = auth(10, b"SCRAM-SHA-256\0\0");
        s.extend(auth(11, b"r=abc,s=c2FsdA==,i=4096"));
        s.extend(auth(12, b"v=xyz"));
        s.extend(auth(0, b""));
        // After AuthenticationOk nothing is inspected, even bytes that look like a request.
        s.extend(auth(3, b""));
        for step in 1..=s.len() {
            assert!(feed_in(&s, step).is_ok(), "step {step}");
        }
        let mut md5 = auth(5, b"salt");
        md5.extend(auth(0, b""));
        assert!(feed_in(&md5, 3).is_ok());
        // An ErrorResponse before any request is skipped, not misread.
        let mut e = b"E\0\0\0\x08abcd".to_vec();
        e.extend(auth(3, b""));
        assert!(feed_in(&e, 2).is_err());
    }
}
