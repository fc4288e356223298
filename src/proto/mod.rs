//! Sans-IO codec for PostgreSQL protocol v3: pure functions over byte slices and `BytesMut`.
//!
//! Nothing here does IO or knows about tokio: the session and server layers read bytes into
//! their own buffers and ask this module what those bytes mean.
//!
//! | file | job |
//! |---|---|
//! | [`tags`] | message type bytes per direction, transaction status and auth codes |
//! | [`frame`] | the hot path: header peek ([`frame_len`]), [`Frames`] iterator, [`scan_backend`] |
//! | [`startup`] | the untagged first packets: SSLRequest, GSSENCRequest, CancelRequest, StartupMessage |
//! | [`builders`] | free functions appending messages to a `BytesMut` with a back-patched length |
//! | [`views`] | lazy, zero-copy, never-panicking decoders of the bodies the pooler acts on |
//!
//! Every decoder returns [`ProtoError`] on bad input instead of panicking, whatever the bytes:
//! the input comes from the network and is hostile until proven otherwise.

pub mod builders;
pub mod frame;
pub mod startup;
pub mod tags;
pub mod views;

pub use frame::{frame_len, scan_backend, BackendScan, Frames, ReadyForQuery, TagSet, HEADER_LEN};
pub use startup::{parse_initial, Initial};

/// Why bytes could not be decoded as a PostgreSQL protocol message.
///
/// A value of this type means the peer broke the protocol: the connection should be closed
/// (after an ErrorResponse where one can still be sent). "Need more bytes" is never an
/// error; functions return `Ok(None)` for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A frame (tag + length + body) is longer than the configured limit.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Total size the header announced, in bytes.
        len: usize,
        /// Configured limit, in bytes.
        max: usize,
    },
    /// The length field is impossible (below its own size, or negative).
    #[error("invalid message length {0}")]
    BadLength(i32),
    /// The body does not have the layout its type requires.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A string field is not valid UTF-8.
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),
    /// A startup packet asked for a protocol or request code we do not speak.
    #[error("unsupported protocol version {}.{}", .0 >> 16, .0 & 0xffff)]
    UnsupportedProtocol(u32),
}
