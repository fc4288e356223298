//! Frame boundaries on the hot path: header peek, complete-frame iteration and the backend scan.
//!
//! A frame is `tag: u8`, `len: i32` (big endian, counting itself but not the tag) and
//! `len - 4` body bytes. Everything here works on borrowed slices and allocates nothing, so the
//! forwarding loop can call it on every read.

use std::iter::FusedIterator;

use super::tags::{backend, status};
use super::ProtoError;

/// Size of a frame header: one tag byte and a four-byte length.
pub const HEADER_LEN: usize = 5;

/// Peeks the header at the start of `buf` and returns the total frame size (header included).
///
/// Returns `Ok(None)` when fewer than [`HEADER_LEN`] bytes are available. The body need not be
/// in `buf` yet: the caller compares the result with `buf.len()` (or reserves that much).
/// `max_len` bounds the total frame size.
///
/// # Errors
/// [`ProtoError::BadLength`] when the length field is below 4 (negative included) and
/// [`ProtoError::MessageTooLarge`] when the frame would exceed `max_len`.
#[inline]
pub fn frame_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, ProtoError> {
    let Some(&[_tag, a, b, c, d]) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let raw = i32::from_be_bytes([a, b, c, d]);
    let len = match usize::try_from(raw) {
        Ok(len) if len >= 4 => len,
        _ => return Err(ProtoError::BadLength(raw)),
    };
    // `len` <= i32::MAX, so adding the tag byte cannot overflow a 32- or 64-bit usize.
    let total = len + 1;
    if total > max_len {
        return Err(ProtoError::MessageTooLarge {
            len: total,
            max: max_len,
        });
    }
    Ok(Some(total))
}

/// Iterator over the complete frames at the start of a buffer, yielding `(tag, body)`.
///
/// It stops at the first incomplete frame; [`Frames::consumed`] then tells how many bytes the
/// yielded frames cover. A bad header yields one `Err` and ends the iteration.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    max_len: usize,
    done: bool,
}

impl<'a> Frames<'a> {
    /// Iterates over the complete frames of `buf`, each at most `max_len` bytes long.
    #[must_use]
    pub fn new(buf: &'a [u8], max_len: usize) -> Self {
        Self {
            buf,
            pos: 0,
            max_len,
            done: false,
        }
    }

    /// Bytes covered by the frames yielded so far.
    #[must_use]
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// The bytes after the frames yielded so far (a partial frame, or nothing).
    #[must_use]
    pub fn remainder(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<(u8, &'a [u8]), ProtoError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.remainder();
        let total = match frame_len(rest, self.max_len) {
            Ok(Some(total)) => total,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let Some((&tag, header_and_body)) = rest.get(..total).and_then(<[u8]>::split_first) else {
            self.done = true;
            return None;
        };
        self.pos += total;
        let body = header_and_body.get(HEADER_LEN - 1..).unwrap_or_default();
        Some(Ok((tag, body)))
    }
}

impl FusedIterator for Frames<'_> {}

/// A set of ASCII message tags, one bit per tag; non-ASCII bytes are never members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TagSet(u128);

impl TagSet {
    /// The empty set.
    pub const EMPTY: Self = Self(0);

    /// Backend messages the pooler must look at even while it only forwards bytes:
    /// ParameterStatus, ErrorResponse, BackendKeyData, CopyIn/Out/BothResponse,
    /// NoticeResponse and NotificationResponse.
    pub const INTERESTING: Self = Self::EMPTY
        .with(backend::PARAMETER_STATUS)
        .with(backend::ERROR_RESPONSE)
        .with(backend::BACKEND_KEY_DATA)
        .with(backend::COPY_IN_RESPONSE)
        .with(backend::COPY_OUT_RESPONSE)
        .with(backend::COPY_BOTH_RESPONSE)
        .with(backend::NOTICE_RESPONSE)
        .with(backend::NOTIFICATION_RESPONSE);

    /// The three copy-mode responses (CopyIn, CopyOut, CopyBoth).
    pub const COPY: Self = Self::EMPTY
        .with(backend::COPY_IN_RESPONSE)
        .with(backend::COPY_OUT_RESPONSE)
        .with(backend::COPY_BOTH_RESPONSE);

    const fn bit(tag: u8) -> u128 {
        if tag < 128 {
            1u128 << tag
        } else {
            0
        }
    }

    /// This set plus `tag`.
    #[must_use]
    pub const fn with(self, tag: u8) -> Self {
        Self(self.0 | Self::bit(tag))
    }

    /// Adds `tag`.
    #[inline]
    pub fn insert(&mut self, tag: u8) {
        self.0 |= Self::bit(tag);
    }

    /// Whether `tag` is in the set.
    #[must_use]
    pub const fn contains(self, tag: u8) -> bool {
        self.0 & Self::bit(tag) != 0
    }

    /// Whether the set has no member.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Members present in both sets.
    #[must_use]
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Whether the sets share a member.
    #[must_use]
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Iterates over the members in ascending order.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        (0u8..128).filter(move |&t| self.contains(t))
    }
}

/// Where a ReadyForQuery frame ended and the transaction status it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyForQuery {
    /// Offset just past the frame in the scanned buffer (the frame itself is the 6 bytes
    /// before it).
    pub end: usize,
    /// Transaction status: one of [`status::IDLE`], [`status::IN_TRANSACTION`],
    /// [`status::FAILED`].
    pub status: u8,
}

impl ReadyForQuery {
    /// Whether the server is idle outside a transaction block (the connection may be released
    /// in transaction pooling mode).
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.status == status::IDLE
    }
}

/// What [`scan_backend`] learned from a burst of server bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendScan {
    /// Bytes forming whole frames from the start of the buffer.
    pub complete: usize,
    /// Number of whole frames.
    pub frames: usize,
    /// The last ReadyForQuery among the whole frames.
    pub last_ready: Option<ReadyForQuery>,
    /// Every tag seen among the whole frames.
    pub tags: TagSet,
    /// Total size of the partial frame after `complete`, when its header is already there.
    pub next_len: Option<usize>,
}

impl BackendScan {
    /// The [`TagSet::INTERESTING`] tags that were seen.
    #[must_use]
    pub fn interesting(&self) -> TagSet {
        self.tags.intersection(TagSet::INTERESTING)
    }

    /// Whether a copy-mode response was seen.
    #[must_use]
    pub fn saw_copy(&self) -> bool {
        self.tags.intersects(TagSet::COPY)
    }

    /// Whether an ErrorResponse was seen.
    #[must_use]
    pub fn saw_error(&self) -> bool {
        self.tags.contains(backend::ERROR_RESPONSE)
    }
}

/// Walks the complete frames of a burst of server bytes without decoding or copying them.
///
/// # Errors
/// A bad header ([`frame_len`]'s errors) or a ReadyForQuery whose body is not exactly one
/// valid status byte.
pub fn scan_backend(buf: &[u8], max_len: usize) -> Result<BackendScan, ProtoError> {
    let mut scan = BackendScan::default();
    let mut frames = Frames::new(buf, max_len);
    while let Some(frame) = frames.next() {
        let (tag, body) = frame?;
        scan.frames += 1;
        scan.tags.insert(tag);
        if tag == backend::READY_FOR_QUERY {
            let status = match body {
                [s @ (status::IDLE | status::IN_TRANSACTION | status::FAILED)] => *s,
                _ => return Err(ProtoError::Malformed("ReadyForQuery status")),
            };
            scan.last_ready = Some(ReadyForQuery {
                end: frames.consumed(),
                status,
            });
        }
    }
    scan.complete = frames.consumed();
    scan.next_len = frame_len(frames.remainder(), max_len)?;
    Ok(scan)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(i32::try_from(body.len()).unwrap() + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frame_len_needs_five_bytes() {
        assert_eq!(frame_len(b"", MAX), Ok(None));
        assert_eq!(frame_len(b"Z\0\0\0", MAX), Ok(None));
        assert_eq!(frame_len(b"Z\0\0\0\x05", MAX), Ok(Some(6)));
        // Only the header is needed.
        assert_eq!(frame_len(b"D\0\0\x01\0", MAX), Ok(Some(257)));
    }

    #[test]
    fn frame_len_rejects_bad_lengths() {
        assert_eq!(
            frame_len(b"Z\0\0\0\x03", MAX),
            Err(ProtoError::BadLength(3))
        );
        assert_eq!(
            frame_len(b"Z\xff\xff\xff\xff", MAX),
            Err(ProtoError::BadLength(-1))
        );
        assert_eq!(
            frame_len(b"Z\x80\0\0\0", MAX),
            Err(ProtoError::BadLength(i32::MIN))
        );
        assert_eq!(
            frame_len(b"Z\x7f\xff\xff\xff", MAX),
            Err(ProtoError::MessageTooLarge {
                len: 1 << 31,
                max: MAX
            })
        );
        assert_eq!(frame_len(b"X\0\0\0\x04", 5), Ok(Some(5)));
        assert!(frame_len(b"X\0\0\0\x05", 5).is_err());
    }

    #[test]
    fn frames_yields_complete_frames_only() {
        let mut buf = frame(b'C', b"SELECT 1\0");
        buf.extend(frame(b'Z', b"I"));
        let partial = frame(b'D', b"abcdef");
        buf.extend_from_slice(&partial[..7]);
        let mut it = Frames::new(&buf, MAX);
        assert_eq!(it.next(), Some(Ok((b'C', &b"SELECT 1\0"[..]))));
        assert_eq!(it.next(), Some(Ok((b'Z', &b"I"[..]))));
        assert_eq!(it.next(), None);
        assert_eq!(it.next(), None);
        assert_eq!(it.consumed(), 20);
        assert_eq!(it.remainder(), &partial[..7]);
    }

    #[test]
    fn frames_stops_after_error() {
        let mut buf = frame(b'1', b"");
        buf.extend_from_slice(b"Z\0\0\0\x02I");
        let mut it = Frames::new(&buf, MAX);
        assert_eq!(it.next(), Some(Ok((b'1', &b""[..]))));
        assert_eq!(it.next(), Some(Err(ProtoError::BadLength(2))));
        assert_eq!(it.next(), None);
        assert_eq!(it.consumed(), 5);
    }

    #[test]
    fn scan_reports_last_ready_and_interesting() {
        let mut buf = frame(b'S', b"TimeZone\0UTC\0");
        buf.extend(frame(b'Z', b"T"));
        buf.extend(frame(b'D', b"\0\x01\0\0\0\x011"));
        buf.extend(frame(b'C', b"SELECT 1\0"));
        buf.extend(frame(b'Z', b"I"));
        let end = buf.len();
        buf.extend_from_slice(b"N\0\0\0\x20");
        let scan = scan_backend(&buf, MAX).unwrap();
        assert_eq!(scan.complete, end);
        assert_eq!(scan.frames, 5);
        assert_eq!(scan.last_ready, Some(ReadyForQuery { end, status: b'I' }));
        assert!(scan.last_ready.unwrap().is_idle());
        assert_eq!(scan.next_len, Some(0x21));
        assert_eq!(scan.interesting(), TagSet::EMPTY.with(b'S'));
        assert!(!scan.saw_copy());
        assert!(!scan.saw_error());
    }

    #[test]
    fn scan_flags_copy_and_errors() {
        let mut buf = frame(b'G', b"\0\0\0");
        buf.extend(frame(b'E', b"SERROR\0\0"));
        let scan = scan_backend(&buf, MAX).unwrap();
        assert!(scan.saw_copy());
        assert!(scan.saw_error());
        assert_eq!(scan.last_ready, None);
        assert_eq!(scan.next_len, None);
        assert_eq!(scan.interesting().iter().collect::<Vec<_>>(), b"EG");
    }

    #[test]
    fn scan_rejects_bad_ready_for_query() {
        for body in [&b""[..], b"X", b"II"] {
            let buf = frame(b'Z', body);
            assert_eq!(
                scan_backend(&buf, MAX),
                Err(ProtoError::Malformed("ReadyForQuery status"))
            );
        }
    }

    #[test]
    fn scan_of_empty_or_partial_buffer() {
        assert_eq!(scan_backend(b"", MAX), Ok(BackendScan::default()));
        let scan = scan_backend(b"Z\0\0", MAX).unwrap();
        assert_eq!((scan.complete, scan.next_len), (0, None));
        assert!(scan_backend(b"Z\xff\xff\xff\xfe", MAX).is_err());
    }

    #[test]
    fn tag_set_ignores_non_ascii() {
        let mut set = TagSet::EMPTY;
        set.insert(0xff);
        assert!(set.is_empty());
        assert!(!set.contains(0xff));
        set.insert(b'Z');
        assert!(set.contains(b'Z'));
        assert!(!set.intersects(TagSet::INTERESTING));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u32;
        for _ in 0..2000 {
            let len = (seed % 64) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            let _ = scan_backend(&buf, 64);
            let _ = Frames::new(&buf, 64).count();
        }
    }
}
