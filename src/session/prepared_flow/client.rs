//! The client side of a flow: Parse, Bind, Describe and Close renamed or answered, and the
//! requests queued in stream order.

use super::{ascii, fake_answer, Flow, Out, Req, Retry, ABSENT};
use crate::proto::tags::frontend;
use crate::proto::{builders, ProtoError, HEADER_LEN};
use crate::session::forward::{Oversized, Pipe};
use crate::session::prepared::Stmt;
use bytes::{BufMut, BytesMut};

impl Flow {
    /// Handles a whole Parse, Bind, Describe or Close frame from the client.
    pub fn client_frame(
        &mut self,
        tag: u8,
        frame: &[u8],
        out: &mut Out<'_>,
        s2c: &mut Pipe,
        idle: bool,
    ) -> Result<(), ProtoError> {
        let body = frame.get(HEADER_LEN..).unwrap_or_default();
        match tag {
            frontend::PARSE => self.parse(body, out, s2c),
            frontend::BIND => self.bind(frame, body, out, s2c, idle),
            frontend::DESCRIBE => {
                let (kind, name) = kind_name(body)?;
                self.capture(tag, kind == b'P', frame);
                let stmt = match self.statements.get(name) {
                    Some(s) if kind == b'S' && !name.is_empty() => s.clone(),
                    _ => {
                        self.push(Req::Describe, s2c);
                        return Ok(());
                    }
                };
                self.ensure(&stmt, out, s2c);
                builders::describe_statement(out.replace(), ascii(&stmt.name));
                self.push(Req::Describe, s2c);
                Ok(())
            }
            _ => {
                let (kind, name) = kind_name(body)?;
                self.capture(tag, false, frame);
                let removed = (kind == b'S' && !name.is_empty())
                    .then(|| self.statements.remove(name))
                    .flatten();
                match removed {
                    Some(stmt) => {
                        out.replace();
                        let name = name.into();
                        self.push(Req::FakeClose { name, stmt }, s2c);
                    }
                    None => self.push(Req::Close, s2c),
                }
                Ok(())
            }
        }
    }

    /// A Bind: a named statement's name replaced by its server-side name, the statement
    /// prepared first where the server lacks it; a single-statement transaction is kept for a
    /// retry when it runs on a cached plan.
    fn bind(
        &mut self,
        frame: &[u8],
        body: &[u8],
        out: &mut Out<'_>,
        s2c: &mut Pipe,
        idle: bool,
    ) -> Result<(), ProtoError> {
        self.capture(frontend::BIND, false, frame);
        let (portal, rest) = cstr(body, "Bind")?;
        let (name, _) = cstr(rest, "Bind")?;
        let stmt = match self.statements.get(name) {
            Some(s) if !name.is_empty() => s.clone(),
            _ => {
                self.push(Req::Bind, s2c);
                return Ok(());
            }
        };
        let hit = self.ensure(&stmt, out, s2c);
        let o = out.replace();
        let start = o.len();
        bind_head(o, frame.len(), portal, name, &stmt.name)?;
        o.put_slice(rest.get(name.len() + 1..).unwrap_or_default());
        if hit && idle && self.queue.is_empty() {
            let mut bytes = crate::session::buffers::take();
            bytes.extend_from_slice(&o[start..]);
            self.retry = Some(Retry {
                stmt,
                bytes,
                complete: false,
                fired: false,
            });
        }
        self.push(Req::Bind, s2c);
        Ok(())
    }

    /// A Parse or Bind of `total` bytes, more than `limit`, too large to read whole; `avail`
    /// is what has arrived of it, at `at` in the scan. An unnamed Parse and a Bind are handled
    /// from their head (header and names: a Bind's statement name is rewritten) and the rest
    /// streams unchanged: returns the head's length, or `None` until the head has arrived.
    /// Anything else (a named Parse is keyed by its whole text) is refused.
    pub fn oversized(
        &mut self,
        tag: u8,
        avail: &[u8],
        at: usize,
        (total, limit): (usize, usize),
        out: &mut Out<'_>,
        s2c: &mut Pipe,
    ) -> std::io::Result<Option<usize>> {
        let refuse = || Oversized::err(tag, total, limit);
        let body = avail.get(HEADER_LEN..).unwrap_or_default();
        // Where each of the first `names` NUL-terminated strings of the body ends.
        let names = |n: usize| -> std::io::Result<Option<usize>> {
            let seen = &body[..body.len().min(limit)];
            let mut end = 0;
            for _ in 0..n {
                match seen[end..].iter().position(|&b| b == 0) {
                    Some(i) => end += i + 1,
                    None if seen.len() >= limit => return Err(refuse()),
                    None => return Ok(None),
                }
            }
            Ok(Some(HEADER_LEN + end))
        };
        match tag {
            frontend::PARSE => {
                let Some(head) = names(1)? else {
                    return Ok(None);
                };
                if head != HEADER_LEN + 1 {
                    return Err(refuse());
                }
                self.capture(tag, false, &[]);
                self.push(Req::Parse, s2c);
                Ok(Some(head))
            }
            frontend::BIND => {
                let Some(head) = names(2)? else {
                    return Ok(None);
                };
                (out.start, out.end) = (at, at + head);
                self.bind_streamed(&avail[HEADER_LEN..head], total, out, s2c)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                Ok(Some(head))
            }
            _ => Err(refuse()),
        }
    }

    /// The head of a Bind whose parameters stream (never kept for a retry).
    fn bind_streamed(
        &mut self,
        names: &[u8],
        total: usize,
        out: &mut Out<'_>,
        s2c: &mut Pipe,
    ) -> Result<(), ProtoError> {
        self.capture(frontend::BIND, false, &[]);
        let (portal, rest) = cstr(names, "Bind")?;
        let (name, _) = cstr(rest, "Bind")?;
        if let Some(stmt) = self.statements.get(name).filter(|_| !name.is_empty()) {
            let stmt = stmt.clone();
            self.ensure(&stmt, out, s2c);
            bind_head(out.replace(), total, portal, name, &stmt.name)?;
        }
        self.push(Req::Bind, s2c);
        Ok(())
    }

    fn parse(&mut self, body: &[u8], out: &mut Out<'_>, s2c: &mut Pipe) -> Result<(), ProtoError> {
        self.capture(frontend::PARSE, false, body);
        let (name, key) = cstr(body, "Parse")?;
        if name.is_empty() {
            self.push(Req::Parse, s2c);
            return Ok(());
        }
        check_parse_key(key)?;
        if self.statements.get(name).is_some() {
            let text = format!(
                "prepared statement \"{}\" already exists",
                String::from_utf8_lossy(name)
            );
            self.refuse_parse("42P05", &text, out, s2c);
            return Ok(());
        }
        if self.statements.len() >= self.limits.per_client {
            let text = format!(
                "too many prepared statements for this client (max_client_prepared_statements = {})",
                self.limits.per_client
            );
            self.refuse_parse("54000", &text, out, s2c);
            return Ok(());
        }
        let Some(stmt) = self.registry.try_get_or_create(key, self.limits.total) else {
            let text = format!(
                "too many distinct prepared statements in the pooler (max_tracked_prepared_statements = {})",
                self.limits.total
            );
            self.refuse_parse("54000", &text, out, s2c);
            return Ok(());
        };
        self.statements.insert(name, stmt.clone());
        let name: Box<[u8]> = name.into();
        if self.server.touch(stmt.id) {
            self.counts.hits += 1;
            out.replace();
            self.push(Req::FakeParse { name }, s2c);
            return Ok(());
        }
        let gen = self.prepare_on_server(&stmt, out, s2c);
        out.replace().extend_from_slice(&stmt.parse);
        let id = stmt.id;
        self.push(Req::ClientParse { id, gen, name }, s2c);
        Ok(())
    }

    /// Answers the client's Parse with an ERROR of the pooler's own instead of sending it: a
    /// Describe of a statement no client has makes the server fail and skip to Sync as it
    /// would have for the Parse, and its error is replaced by this one.
    fn refuse_parse(&mut self, code: &str, text: &str, out: &mut Out<'_>, s2c: &mut Pipe) {
        let mut err = BytesMut::new();
        builders::error_response(&mut err, "ERROR", code, text);
        builders::describe_statement(out.replace(), ascii(ABSENT));
        self.push(Req::FakeError(err.to_vec().into_boxed_slice()), s2c);
    }

    /// Makes sure the server holds `stmt` before the frame being handled; true when it already
    /// did (a cache hit).
    fn ensure(&mut self, stmt: &Stmt, out: &mut Out<'_>, s2c: &mut Pipe) -> bool {
        if self.server.touch(stmt.id) {
            self.counts.hits += 1;
            return true;
        }
        let gen = self.prepare_on_server(stmt, out, s2c);
        out.replace().extend_from_slice(&stmt.parse);
        self.counts.prepares += 1;
        self.push(Req::InjectedParse { id: stmt.id, gen }, s2c);
        false
    }

    /// Writes the Close messages needed before a Parse of `stmt`; returns the Parse's gen.
    fn prepare_on_server(&mut self, stmt: &Stmt, out: &mut Out<'_>, s2c: &mut Pipe) -> u32 {
        let p = self.server.prepare(stmt.id, self.limits.per_server);
        for victim in p.evict {
            let name = format!("pgsl_{victim}");
            builders::close_statement(out.replace(), &name);
            let gen = self.server.closing_gen(victim);
            self.counts.evictions += 1;
            self.push(Req::InjectedClose { id: victim, gen }, s2c);
        }
        if p.close_first {
            builders::close_statement(out.replace(), ascii(&stmt.name));
            let gen = p.gen.wrapping_sub(1);
            self.push(Req::InjectedClose { id: stmt.id, gen }, s2c);
        }
        p.gen
    }

    /// Handles an Execute, Sync, Flush, Query or FunctionCall frame from the client (`frame`
    /// whole except for Query and FunctionCall).
    pub fn client_other(&mut self, tag: u8, frame: &[u8], s2c: &mut Pipe) {
        self.capture(tag, true, frame);
        if matches!(tag, frontend::COPY_DONE | frontend::COPY_FAIL) {
            if self.copy_in {
                self.copy_in = false;
            } else if self.queue.iter().any(|r| matches!(r, Req::Execute)) {
                self.queue.push_back(Req::CopyEnd);
            }
            return;
        }
        let req = match tag {
            frontend::EXECUTE => Req::Execute,
            frontend::SYNC => Req::Sync,
            frontend::QUERY => Req::Query,
            frontend::FUNCTION_CALL => Req::Call,
            _ => return,
        };
        self.push(req, s2c);
    }

    /// Keeps the frames of a retry candidate until its Sync; anything else drops it.
    fn capture(&mut self, tag: u8, allowed: bool, frame: &[u8]) {
        let Some(r) = self.retry.as_mut().filter(|r| !r.complete) else {
            return;
        };
        let ok = allowed
            && matches!(
                tag,
                frontend::DESCRIBE | frontend::EXECUTE | frontend::SYNC | frontend::FLUSH
            );
        if !ok {
            self.drop_retry();
            return;
        }
        r.bytes.extend_from_slice(frame);
        r.complete = tag == frontend::SYNC;
    }

    pub(super) fn drop_retry(&mut self) {
        if let Some(r) = self.retry.take() {
            crate::session::buffers::give(r.bytes);
        }
    }

    pub(super) fn push(&mut self, req: Req, s2c: &mut Pipe) {
        if self.copy_in && matches!(req, Req::Sync) {
            // Ignored by the server in copy-in mode: no ReadyForQuery will answer it.
            self.skipped_requests = self.skipped_requests.saturating_add(1);
            return;
        }
        self.unsynced = !matches!(req, Req::Sync | Req::Query | Req::Call);
        if matches!(req, Req::Sync) {
            self.skipping = false;
            self.server.segment = self.server.segment.wrapping_add(1);
        } else if self.skipping {
            self.skipped(req);
            return;
        }
        if self.queue.is_empty() && s2c.stream_left == 0 {
            if let Some(bytes) = fake_answer(&req) {
                s2c.insert(bytes);
                return;
            }
        }
        self.queue.push_back(req);
    }
}

/// Writes a Bind's header, portal and server-side statement name for a client Bind of `total`
/// bytes (tag included) that named its statement `name`.
fn bind_head(
    o: &mut BytesMut,
    total: usize,
    portal: &[u8],
    name: &[u8],
    server_name: &[u8],
) -> Result<(), ProtoError> {
    let len = (total - 1)
        .checked_sub(name.len())
        .and_then(|l| l.checked_add(server_name.len()))
        .and_then(|l| i32::try_from(l).ok())
        .ok_or(ProtoError::Malformed("Bind"))?;
    o.put_u8(frontend::BIND);
    o.put_i32(len);
    o.put_slice(portal);
    o.put_u8(0);
    o.put_slice(server_name);
    o.put_u8(0);
    Ok(())
}

/// Splits a NUL-terminated byte string off the front of `b`.
fn cstr<'a>(b: &'a [u8], what: &'static str) -> Result<(&'a [u8], &'a [u8]), ProtoError> {
    let nul = b
        .iter()
        .position(|&c| c == 0)
        .ok_or(ProtoError::Malformed(what))?;
    Ok((&b[..nul], &b[nul + 1..]))
}

/// Decodes a Describe or Close body into (kind, name) without assuming an encoding.
fn kind_name(body: &[u8]) -> Result<(u8, &[u8]), ProtoError> {
    let (&kind, rest) = body
        .split_first()
        .ok_or(ProtoError::Malformed("Describe/Close"))?;
    let (name, tail) = cstr(rest, "Describe/Close")?;
    if !matches!(kind, b'S' | b'P') || !tail.is_empty() {
        return Err(ProtoError::Malformed("Describe/Close"));
    }
    Ok((kind, name))
}

/// Checks the part of a Parse body after the name: query, NUL, i16 count, the oids, nothing else.
fn check_parse_key(key: &[u8]) -> Result<(), ProtoError> {
    let (_, rest) = cstr(key, "Parse")?;
    let bad = ProtoError::Malformed("Parse");
    let (count, oids) = rest.split_first_chunk::<2>().ok_or(bad.clone())?;
    let count = usize::try_from(i16::from_be_bytes(*count)).map_err(|_| bad.clone())?;
    if oids.len() != count * 4 {
        return Err(bad);
    }
    Ok(())
}
