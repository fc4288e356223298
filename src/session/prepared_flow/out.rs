//! Rewritten client bytes of one scan, copied over lazily.

use bytes::BytesMut;

/// Rewritten client bytes of one scan: frames kept as they are stay in the source buffer and
/// are copied over only once a frame before them had to change.
pub struct Out<'a> {
    src: &'a [u8],
    /// The frame being handled.
    pub start: usize,
    pub end: usize,
    /// Bytes of `src` already accounted for in `out`.
    pub copied: usize,
    pub out: Option<BytesMut>,
}

impl<'a> Out<'a> {
    /// Rewriting over `src`.
    pub fn new(src: &'a [u8]) -> Self {
        Self {
            src,
            start: 0,
            end: 0,
            copied: 0,
            out: None,
        }
    }

    /// The bytes being rewritten.
    pub fn src(&self) -> &'a [u8] {
        self.src
    }

    pub(super) fn detached() -> Out<'static> {
        Out::new(&[])
    }

    /// The current frame is replaced: returns the buffer to write its replacement to.
    pub fn replace(&mut self) -> &mut BytesMut {
        let o = self.out.get_or_insert_with(crate::session::buffers::take);
        if self.copied < self.start {
            o.extend_from_slice(&self.src[self.copied..self.start]);
        }
        self.copied = self.copied.max(self.end);
        o
    }
}
