//! Per-thread pool of I/O buffers: a client holds buffers only while it has bytes in flight.
//!
//! An idle client owns no buffer at all (PgBouncer's 1 KB per idle client is the bar), and the
//! steady state allocates nothing because buffers cycle through this cache.

use bytes::BytesMut;
use std::cell::RefCell;

/// Size of a fresh buffer.
pub const BUF_SIZE: usize = 16 * 1024;
/// Buffers larger than this are freed rather than cached.
const MAX_CACHED_CAPACITY: usize = 256 * 1024;
/// Buffers cached per thread.
const MAX_CACHED: usize = 256;

thread_local! {
    static CACHE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Takes an empty buffer from this thread's cache, or allocates one.
pub fn take() -> BytesMut {
    CACHE
        .with(|c| c.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(BUF_SIZE))
}

/// Gives a buffer back; it is cleared and kept if small enough.
pub fn give(mut buf: BytesMut) {
    buf.clear();
    if buf.capacity() < BUF_SIZE / 2 || buf.capacity() > MAX_CACHED_CAPACITY {
        return;
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < MAX_CACHED {
            c.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn buffers_cycle() {
        let mut b = super::take();
        b.extend_from_slice(b"abc");
        let ptr = b.as_ptr();
        super::give(b);
        let again = super::take();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr);
    }
}
