//! Whole-frame reads for the slow paths (login, server handshake, reset): not the forwarding loop.
//!
//! # Cancellation safety
//! [`read_frame`] keeps partial input in the caller's buffer, so it may be raced in `select!`.

use crate::proto::{frame_len, ProtoError, HEADER_LEN};
use bytes::{Buf, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Errors of a framed read.
#[derive(Debug, thiserror::Error)]
pub enum FrameIoError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// The peer sent something that is not a protocol frame.
    #[error("{0}")]
    Proto(#[from] ProtoError),
}

/// One decoded frame: its tag and its body.
pub struct Frame {
    /// Message type byte.
    pub tag: u8,
    /// Body without the header.
    pub body: BytesMut,
}

/// Reads one complete frame, leaving any following bytes in `buf`.
pub async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<Frame, FrameIoError> {
    loop {
        if let Some(total) = frame_len(buf, max_len)? {
            if buf.len() >= total {
                let mut frame = buf.split_to(total);
                let tag = frame[0];
                frame.advance(HEADER_LEN);
                return Ok(Frame { tag, body: frame });
            }
            buf.reserve(total - buf.len());
        } else {
            buf.reserve(512);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(FrameIoError::Closed);
        }
    }
}
