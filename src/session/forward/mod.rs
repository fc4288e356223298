//! The forwarding fast path: bytes flow both ways between a client and its server session,
//! with only frame headers looked at, until the transaction (or statement) ends.
//!
//! Each direction is a [`Pipe`]: bytes read but not yet written, how much of them is decided
//! (whole frames, or the streamed part of a large one), and how much of a large frame body is
//! still to come. Reads go straight into the pipe's buffer, and everything decided after a read
//! leaves in one write, so a burst costs one read and one write per side. Large rows and COPY
//! data stream through with backpressure: a pipe stops reading while it has bytes to write.
//!
//! In transaction and statement modes with `max_prepared_statements` > 0 a run carries a
//! [`Flow`]: client Parse/Bind/Describe/Close/Execute/Sync/Flush frames are then read whole and
//! may be rewritten, and the server's answers are matched against the requests in flight
//! (see [`super::prepared_flow`]). Session mode never looks inside a frame.

mod pipe;

use pipe::{read_in, write_out};
pub use pipe::{Pipe, Pipes};

use super::buffers;
use super::effects;
use super::prepared_flow::{Flow, Out, Verdict};
use crate::proto::{frame_len, tags, views, HEADER_LEN};
use bytes::BytesMut;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

/// `max_inspected_message` unless configured.
pub const DEFAULT_MAX_INSPECTED: usize = 1 << 20;

/// A message that had to be read whole is larger than `max_inspected_message`.
#[derive(Debug, thiserror::Error)]
#[error("a message of type '{tag}' of {len} bytes exceeds max_inspected_message ({limit} bytes)")]
pub struct Oversized {
    pub tag: char,
    pub len: usize,
    pub limit: usize,
}

impl Oversized {
    pub(crate) fn err(tag: u8, len: usize, limit: usize) -> io::Error {
        let tag = char::from(tag);
        io::Error::new(io::ErrorKind::InvalidData, Oversized { tag, len, limit })
    }

    /// The limit an I/O error of a forwarding run reports, if that is what it is.
    pub fn from_io(e: &io::Error) -> Option<&Oversized> {
        e.get_ref().and_then(|r| r.downcast_ref::<Oversized>())
    }
}

/// How a forwarding run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server is idle with nothing in flight: it may be released (transaction/statement mode).
    Boundary,
    /// Statement mode only: a statement left a transaction open.
    OpenTransaction,
    /// The client closed or sent Terminate; `clean` when the server has nothing in flight.
    ClientGone { clean: bool },
    /// The server closed or failed; `fatal_sent` when its FATAL error already reached the client.
    ServerGone { fatal_sent: bool },
}

/// Per-transaction forwarding state shared by both directions.
pub struct Forwarder {
    pub max_packet: usize,
    /// Largest message read whole to be inspected (`max_inspected_message`).
    pub max_inspected: usize,
    /// Transaction-ending requests (Query, Sync, FunctionCall) sent minus ReadyForQuery received.
    pub outstanding: u32,
    /// Status of the last ReadyForQuery.
    pub status: u8,
    pub statement_mode: bool,
    /// Release at a boundary (transaction and statement modes).
    pub release_at_boundary: bool,
    client_gone: bool,
    server_fatal: bool,
    /// Tracked settings the server reported during the run, for the session's view.
    pub reported: Vec<(String, String)>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub queries: u64,
    /// Named prepared statements (transaction and statement modes), lent for the run.
    pub flow: Option<Box<Flow>>,
    /// Transaction and statement modes: CommandComplete tags are read whole and their
    /// [`effects`] gathered here.
    pub watch: bool,
    /// [`effects`] flags of this run.
    pub effects: u8,
    /// No boundary before the client's first request (a pinned client's idle wait, during
    /// which notifications still flow to it).
    pub wait_for_request: bool,
    /// Where a run that waits for the rest of a client message says since when (ms on
    /// `now_ms`'s clock; 0 = none): the janitor closes a client stalled past
    /// `client_message_timeout`, so that no timer is armed per transaction.
    pub stall: Option<std::sync::Arc<crate::backend::clients::ClientInfo>>,
}

impl Forwarder {
    /// A forwarder for a freshly attached, idle server.
    pub fn new(max_packet: usize, statement_mode: bool, release_at_boundary: bool) -> Self {
        Self {
            max_packet,
            max_inspected: DEFAULT_MAX_INSPECTED,
            outstanding: 0,
            status: tags::status::IDLE,
            statement_mode,
            release_at_boundary,
            client_gone: false,
            server_fatal: false,
            reported: Vec::new(),
            bytes_in: 0,
            bytes_out: 0,
            queries: 0,
            flow: None,
            watch: release_at_boundary,
            effects: 0,
            wait_for_request: false,
            stall: None,
        }
    }

    /// Forwards until an [`Outcome`].
    pub async fn run<C: AsyncRead + AsyncWrite + Unpin, S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        client: &mut C,
        server: &mut S,
        c2s: &mut Pipe,
        s2c: &mut Pipe,
    ) -> io::Result<Outcome> {
        poll_fn(|cx| self.poll(cx, client, server, c2s, s2c)).await
    }

    fn poll<C: AsyncRead + AsyncWrite + Unpin, S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut C,
        server: &mut S,
        c2s: &mut Pipe,
        s2c: &mut Pipe,
    ) -> Poll<io::Result<Outcome>> {
        loop {
            let mut progress = false;
            // Client -> server.
            if c2s.ready > 0 {
                match write_out(cx, server, c2s) {
                    Poll::Ready(Ok(n)) => progress |= n > 0,
                    Poll::Ready(Err(_)) => return Poll::Ready(Ok(self.server_gone())),
                    Poll::Pending => {}
                }
            }
            if c2s.ready == 0 && !self.client_gone {
                self.scan_client(c2s, s2c)?;
                // While a retry is arranged the client's frames wait: no more are read.
                let held = self.flow.as_ref().is_some_and(|f| f.hold);
                if c2s.ready == 0 && !self.client_gone && !held {
                    match read_in(cx, client, c2s) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => self.client_gone = true,
                        Poll::Ready(Ok(n)) => {
                            self.bytes_in += n as u64;
                            self.scan_client(c2s, s2c)?;
                            progress = true;
                        }
                        Poll::Pending => {}
                    }
                }
                if c2s.ready > 0 {
                    continue;
                }
            }
            // Server -> client.
            if s2c.ready > 0 {
                match write_out(cx, client, s2c) {
                    Poll::Ready(Ok(n)) => progress |= n > 0,
                    Poll::Ready(Err(_)) => self.client_gone = true,
                    Poll::Pending => {}
                }
            }
            if s2c.ready == 0 {
                if self.server_fatal {
                    return Poll::Ready(Ok(Outcome::ServerGone { fatal_sent: true }));
                }
                match read_in(cx, server, s2c) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(Ok(self.server_gone()))
                    }
                    Poll::Ready(Ok(n)) => {
                        self.bytes_out += n as u64;
                        self.scan_server(s2c, c2s)?;
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            if let Some(outcome) = self.outcome(c2s, s2c) {
                // What a TLS layer still holds must leave before the run ends (not to a
                // client that is gone: it may never read again).
                let gone = matches!(outcome, Outcome::ClientGone { .. });
                if !gone && flush_both(cx, client, server).is_pending() {
                    return Poll::Pending;
                }
                return Poll::Ready(Ok(outcome));
            }
            if !progress {
                // A TLS write may have left bytes in rustls when the socket was full; the
                // flush registers for writability so they leave without another write.
                let _ = flush_both(cx, client, server);
                if let Some(info) = &self.stall {
                    info.mark_partial(c2s.awaits_rest());
                }
                return Poll::Pending;
            }
        }
    }

    fn outcome(&self, c2s: &Pipe, s2c: &Pipe) -> Option<Outcome> {
        let quiet = self.outstanding == 0
            && c2s.is_empty()
            && s2c.is_empty()
            && self.flow.as_ref().is_none_or(|f| f.is_idle());
        if self.client_gone {
            // Flush what the server still owes? The client is gone: nothing to flush to.
            return Some(Outcome::ClientGone { clean: quiet });
        }
        if !quiet {
            return None;
        }
        if self.statement_mode && self.status != tags::status::IDLE {
            return Some(Outcome::OpenTransaction);
        }
        let asked = !self.wait_for_request || self.queries > 0;
        (self.release_at_boundary && self.status == tags::status::IDLE && asked)
            .then_some(Outcome::Boundary)
    }

    /// Counts a transaction-ending request sent to the server.
    fn request_sent(&mut self) -> io::Result<()> {
        self.outstanding = more_outstanding(self.outstanding)?;
        self.queries = self.queries.wrapping_add(1);
        Ok(())
    }

    fn server_gone(&self) -> Outcome {
        Outcome::ServerGone {
            fatal_sent: self.server_fatal,
        }
    }

    /// Decides client bytes: every frame flows at its header; Terminate ends the run.
    fn scan_client(&mut self, p: &mut Pipe, s2c: &mut Pipe) -> io::Result<()> {
        if self.flow.is_some() {
            return self.scan_client_tracked(p, s2c);
        }
        let Some(buf) = p.buf.as_mut() else {
            return Ok(());
        };
        loop {
            let avail = buf.len() - p.ready;
            if p.stream_left > 0 {
                let take = p.stream_left.min(avail);
                p.ready += take;
                p.stream_left -= take;
                if p.stream_left > 0 {
                    return Ok(());
                }
                continue;
            }
            let Some(total) = frame_len(&buf[p.ready..], self.max_packet).map_err(invalid)? else {
                return Ok(());
            };
            match buf[p.ready] {
                tags::frontend::TERMINATE => {
                    self.client_gone = true;
                    buf.truncate(p.ready);
                    return Ok(());
                }
                tags::frontend::QUERY | tags::frontend::SYNC | tags::frontend::FUNCTION_CALL => {
                    if self.watch && buf[p.ready] == tags::frontend::QUERY {
                        let end = (p.ready + total).min(buf.len());
                        let text = buf.get(p.ready + HEADER_LEN..end).unwrap_or_default();
                        self.effects |= effects::of_text(text, end == p.ready + total);
                    }
                    self.request_sent()?;
                }
                _ => {}
            }
            let take = total.min(avail);
            p.ready += take;
            p.stream_left = total - take;
        }
    }

    /// Decides client bytes of a tracked run: Parse, Bind, Describe, Close, Execute, Sync and
    /// Flush are read whole and handed to the [`Flow`], which may rewrite them.
    fn scan_client_tracked(&mut self, p: &mut Pipe, s2c: &mut Pipe) -> io::Result<()> {
        let (Some(flow), Some(buf)) = (self.flow.as_deref_mut(), p.buf.as_mut()) else {
            return Ok(());
        };
        let mut stream_left = p.stream_left;
        let (mut need, mut terminate) = (0, false);
        let mut out = Out::new(&buf[..]);
        let mut pos = p.ready;
        loop {
            let src = out.src();
            let avail = src.len() - pos;
            if stream_left > 0 {
                let take = stream_left.min(avail);
                pos += take;
                stream_left -= take;
                if stream_left > 0 {
                    break;
                }
                continue;
            }
            if flow.hold {
                break;
            }
            let Some(total) = frame_len(&src[pos..], self.max_packet).map_err(invalid)? else {
                break;
            };
            let tag = src[pos];
            let whole = matches!(tag, b'P' | b'B' | b'D' | b'C' | b'E' | b'S' | b'H');
            if tag == tags::frontend::TERMINATE {
                terminate = true;
                break;
            }
            if whole && total > self.max_inspected {
                // Too large to read whole: a Bind or an unnamed Parse streams after the part
                // the flow needs; anything else is refused before any of it is buffered.
                let limits = (total, self.max_inspected);
                match flow.oversized(tag, &src[pos..], pos, limits, &mut out, s2c) {
                    Ok(Some(head)) => {
                        let take = (total - head).min(avail - head);
                        pos += head + take;
                        stream_left = total - head - take;
                        continue;
                    }
                    Ok(None) => {
                        need = HEADER_LEN + 1;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if whole && avail < total {
                need = total - avail;
                break;
            }
            (out.start, out.end) = (pos, pos + total);
            let frame = &src[pos..pos + total.min(avail)];
            if self.watch && matches!(tag, b'Q' | b'P') {
                let text = frame.get(HEADER_LEN..).unwrap_or_default();
                self.effects |= effects::of_text(text, frame.len() == total);
            }
            match tag {
                b'P' | b'B' | b'D' | b'C' => {
                    let idle = self.outstanding == 0 && self.status == tags::status::IDLE;
                    flow.client_frame(tag, frame, &mut out, s2c, idle)
                        .map_err(invalid)?;
                }
                _ => {
                    if matches!(tag, b'Q' | b'S' | b'F') {
                        self.outstanding = more_outstanding(self.outstanding)?;
                        self.queries = self.queries.wrapping_add(1);
                    }
                    flow.client_other(tag, frame, s2c);
                    self.outstanding = less_outstanding(self.outstanding, flow)?;
                }
            }
            let take = total.min(avail);
            pos += take;
            stream_left = total - take;
        }
        p.stream_left = stream_left;
        let (copied, rewritten) = (out.copied, out.out.take());
        if let Some(mut o) = rewritten {
            o.extend_from_slice(&buf[copied.min(pos)..pos]);
            p.ready = o.len();
            o.extend_from_slice(&buf[pos..]);
            buffers::give(std::mem::replace(buf, o));
        } else {
            p.ready = pos;
        }
        if terminate {
            self.client_gone = true;
            buf.truncate(p.ready);
        }
        if need > 0 {
            // At most `max_inspected` (checked above) beyond what is buffered.
            buf.reserve(need);
        }
        Ok(())
    }

    /// Decides server bytes: ReadyForQuery, ParameterStatus and ErrorResponse are read whole;
    /// everything else streams. A tracked run also reads ParseComplete, CloseComplete and
    /// CommandComplete whole, and may swallow or replace messages.
    fn scan_server(&mut self, p: &mut Pipe, c2s: &mut Pipe) -> io::Result<()> {
        loop {
            let Some(buf) = p.buf.as_mut() else {
                return Ok(());
            };
            let avail = buf.len() - p.ready;
            if p.stream_left > 0 {
                let take = p.stream_left.min(avail);
                p.ready += take;
                p.stream_left -= take;
                if p.stream_left > 0 {
                    return Ok(());
                }
                continue;
            }
            if let Some(flow) = self.flow.as_deref_mut() {
                flow.emit_due(p);
            }
            let Some(buf) = p.buf.as_mut() else {
                return Ok(());
            };
            let start = p.ready;
            let avail = buf.len() - start;
            let Some(total) = frame_len(&buf[start..], self.max_packet).map_err(invalid)? else {
                return Ok(());
            };
            let tag = buf[start];
            let tracked = self.flow.is_some();
            let whole = matches!(tag, b'Z' | b'S' | b'E')
                || ((tracked || self.watch) && tag == b'C')
                || (tracked && matches!(tag, b'1' | b'3' | b'G'));
            if !whole {
                if let Some(flow) = self.flow.as_deref_mut() {
                    flow.server_streamed(tag);
                }
                let take = total.min(avail);
                p.ready += take;
                p.stream_left = total - take;
                continue;
            }
            if total > self.max_inspected {
                return Err(Oversized::err(tag, total, self.max_inspected));
            }
            if avail < total {
                buf.reserve(total - avail);
                return Ok(());
            }
            let body = &buf[start + HEADER_LEN..start + total];
            if let Some(flow) = self.flow.as_deref_mut() {
                let verdict = flow.server_frame(tag, body, c2s);
                self.outstanding = less_outstanding(self.outstanding, flow)?;
                match verdict {
                    Verdict::Pass => {}
                    Verdict::Swallow => {
                        p.remove(start, total);
                        continue;
                    }
                    Verdict::Replace(frame) => {
                        p.remove(start, total);
                        p.insert(&frame);
                        continue;
                    }
                }
            }
            let Some(buf) = p.buf.as_mut() else {
                return Ok(());
            };
            let body = &buf[start + HEADER_LEN..start + total];
            match tag {
                tags::backend::READY_FOR_QUERY => {
                    self.status = views::ready_for_query(body).map_err(invalid)?;
                    self.outstanding = self.outstanding.saturating_sub(1);
                }
                tags::backend::COMMAND_COMPLETE if self.watch => {
                    self.effects |= effects::of_tag(body);
                }
                tags::backend::PARAMETER_STATUS => {
                    if self.watch {
                        self.effects |= effects::SETTINGS;
                    }
                    if let Ok((k, v)) = views::parameter_status(body) {
                        self.reported.push((k.to_string(), v.to_string()));
                    }
                }
                tags::backend::ERROR_RESPONSE => {
                    let fatal = views::ErrorFields::new(body)
                        .ok()
                        .and_then(|f| f.severity().map(|s| s == "FATAL" || s == "PANIC"))
                        .unwrap_or(false);
                    if fatal {
                        self.server_fatal = true;
                        if self.outstanding > 0 {
                            // Keep the client: show the server's error as a plain ERROR and
                            // end its request with ReadyForQuery once the server is gone.
                            p.ready += downgrade_fatal(buf, start, total);
                            continue;
                        }
                    }
                }
                _ => {}
            }
            p.ready += total;
        }
    }

    /// Drives a forwarding run to completion of the client's pending output only (used after
    /// the server disappeared, to deliver what was decided).
    pub async fn flush_to_client<C: AsyncWrite + Unpin>(
        client: &mut C,
        s2c: &mut Pipe,
    ) -> io::Result<()> {
        while s2c.ready > 0 {
            poll_fn(|cx| write_out(cx, client, s2c)).await?;
        }
        poll_fn(|cx| Pin::new(&mut *client).poll_flush(cx)).await
    }
}

/// Rewrites the severity fields of an ErrorResponse in place from FATAL to ERROR (same length
/// is impossible, so the frame is rebuilt; this is the rare path).
fn downgrade_fatal(buf: &mut BytesMut, start: usize, total: usize) -> usize {
    let body = buf[start + HEADER_LEN..start + total].to_vec();
    let Ok(fields) = views::ErrorFields::new(&body) else {
        return total;
    };
    let mut rebuilt = BytesMut::new();
    let code = fields.sqlstate().unwrap_or("08006");
    let msg = fields.message().unwrap_or("server connection lost");
    crate::proto::builders::error_response(&mut rebuilt, "ERROR", code, msg);
    let tail = buf.split_off(start + total);
    buf.truncate(start);
    buf.extend_from_slice(&rebuilt);
    buf.extend_from_slice(&tail);
    rebuilt.len()
}

/// Flushes both sides (a no-op on plain sockets; over TLS, pushes out rustls' buffer).
/// Errors are left for the next read or write to find.
fn flush_both<C: AsyncWrite + Unpin, S: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    client: &mut C,
    server: &mut S,
) -> Poll<()> {
    let c = Pin::new(client).poll_flush(cx).is_pending();
    let s = Pin::new(server).poll_flush(cx).is_pending();
    if c || s {
        Poll::Pending
    } else {
        Poll::Ready(())
    }
}

/// `outstanding` plus one request; past `u32::MAX` requests in flight the client is broken.
fn more_outstanding(outstanding: u32) -> io::Result<u32> {
    outstanding
        .checked_add(1)
        .ok_or_else(|| invalid("more than 4294967295 requests in flight"))
}

/// `outstanding` less the requests the flow found skipped (no ReadyForQuery will answer
/// them); more skipped than in flight means the peers and the flow disagree.
fn less_outstanding(outstanding: u32, flow: &mut Flow) -> io::Result<u32> {
    let skipped = std::mem::take(&mut flow.skipped_requests);
    outstanding.checked_sub(skipped).ok_or_else(|| {
        invalid(format!(
            "{skipped} requests skipped with {outstanding} in flight"
        ))
    })
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests;
