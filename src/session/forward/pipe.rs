//! One direction of the forwarding: bytes read but not yet written, how much of them is
//! decided, and how much of a streamed frame body is still to come.

use crate::proto::frame_len;
use crate::session::buffers;
use bytes::{Buf, BytesMut};
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

/// Both directions of a client's forwarding. An idle client holds none: a session takes a
/// pair from this thread's cache when its client sends a request and gives it back at the
/// transaction boundary once both directions are empty, so the pair is not part of an idle
/// client's task and the steady state allocates nothing.
#[derive(Default)]
pub struct Pipes {
    /// Client to server.
    pub c2s: Pipe,
    /// Server to client.
    pub s2c: Pipe,
}

/// Pairs cached per thread (as many as transactions run at once on it, at most this many).
const MAX_CACHED_PIPES: usize = 1024;

thread_local! {
    #[allow(clippy::vec_box)] // the boxes themselves are what the sessions hold
    static PIPES: RefCell<Vec<Box<Pipes>>> = const { RefCell::new(Vec::new()) };
}

impl Pipes {
    /// The session's pair in `slot`, taken from the thread's cache (or made) when it has none.
    pub fn of(slot: &mut Option<Box<Pipes>>) -> &mut Pipes {
        slot.get_or_insert_with(|| PIPES.with(|c| c.borrow_mut().pop()).unwrap_or_default())
    }

    /// At a transaction boundary: gives both buffers back when empty, and the pair itself to
    /// the thread's cache when nothing is left in it (a pipelined request may be).
    pub fn park(slot: &mut Option<Box<Pipes>>) {
        let Some(p) = slot.as_mut() else {
            return;
        };
        p.c2s.park();
        p.s2c.park();
        if p.c2s.is_empty() && p.s2c.is_empty() {
            if let Some(p) = slot.take() {
                PIPES.with(|c| {
                    let mut c = c.borrow_mut();
                    if c.len() < MAX_CACHED_PIPES {
                        c.push(p);
                    }
                });
            }
        }
    }
}

/// One direction of the forwarding.
#[derive(Default)]
pub struct Pipe {
    pub(super) buf: Option<BytesMut>,
    /// Bytes at the front of `buf` that are decided and wait to be written.
    pub(super) ready: usize,
    /// Bytes of a streamed frame body that have not arrived yet.
    pub(in crate::session) stream_left: usize,
}

impl Pipe {
    fn buf(&mut self) -> &mut BytesMut {
        self.buf.get_or_insert_with(buffers::take)
    }

    /// Whether nothing is buffered or half-received.
    pub fn is_empty(&self) -> bool {
        self.stream_left == 0 && self.buf.as_ref().is_none_or(|b| b.is_empty())
    }

    /// Whether the pipe waits for the rest of a message from its source: nothing decided is
    /// left to write, and part of a frame (a header, a body read whole, a streamed body) has
    /// arrived without the rest.
    pub fn awaits_rest(&self) -> bool {
        if self.ready > 0 {
            return false;
        }
        if self.stream_left > 0 {
            return true;
        }
        let Some(buf) = self.buf.as_ref().filter(|b| !b.is_empty()) else {
            return false;
        };
        match frame_len(buf, usize::MAX) {
            Ok(Some(total)) => total > buf.len(),
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Capacity of the pipe's buffer (what this direction holds in memory).
    pub fn capacity(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.capacity())
    }

    /// Returns the buffer to the thread cache when it holds nothing.
    pub fn park(&mut self) {
        if self.is_empty() {
            if let Some(b) = self.buf.take() {
                buffers::give(b);
            }
        }
    }

    /// Inserts decided bytes right after those already decided (before undecided ones).
    pub(in crate::session) fn insert(&mut self, bytes: &[u8]) {
        let at = self.ready;
        let buf = self.buf();
        let len = buf.len();
        buf.resize(len + bytes.len(), 0);
        buf.copy_within(at..len, at + bytes.len());
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        self.ready += bytes.len();
    }

    /// Removes `n` undecided bytes at `at`.
    pub(super) fn remove(&mut self, at: usize, n: usize) {
        if let Some(buf) = self.buf.as_mut() {
            let len = buf.len();
            buf.copy_within(at + n..len, at);
            buf.truncate(len - n);
        }
    }

    /// Puts already-read bytes (from the idle client read) into this pipe.
    pub fn preload(&mut self, bytes: BytesMut) {
        match &mut self.buf {
            Some(b) if !b.is_empty() => b.extend_from_slice(&bytes),
            _ => {
                if let Some(old) = self.buf.replace(bytes) {
                    buffers::give(old);
                }
            }
        }
    }
}

/// Writes the decided bytes of `p` to `dst`; returns how many left.
pub(super) fn write_out<W: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    dst: &mut W,
    p: &mut Pipe,
) -> Poll<io::Result<usize>> {
    let Some(buf) = p.buf.as_mut() else {
        return Poll::Ready(Ok(0));
    };
    let n = match Pin::new(dst).poll_write(cx, &buf[..p.ready]) {
        Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
        Poll::Ready(Ok(n)) => n,
        other => return other,
    };
    buf.advance(n);
    p.ready -= n;
    if buf.is_empty() && p.stream_left == 0 {
        p.park();
    }
    Poll::Ready(Ok(n))
}

/// Reads whatever `src` has into the pipe's buffer.
pub(super) fn read_in<R: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    src: &mut R,
    p: &mut Pipe,
) -> Poll<io::Result<usize>> {
    let buf = p.buf();
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(buffers::BUF_SIZE);
    }
    tokio_util::io::poll_read_buf(Pin::new(src), cx, buf)
}
