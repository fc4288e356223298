//! The client side of a flow: Parse, Bind, Describe and Close renamed or answered, and the
//! requests queued in stream order.

use super::{ascii, fake_answer, Flow, Out, Req, Retry, ABSENT};
use crate::proto::tags::frontend;
use crate::proto::{builders, ProtoError, HEADER_LEN};
use crate::session::forward::Pipe;
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
        o.put_u8(frontend::BIND);
        let len = frame.len() - 1 - name.len() + stmt.name.len();
        o.put_i32(i32::try_from(len).map_err(|_| ProtoError::Malformed("Bind"))?);
        o.put_slice(portal);
        o.put_u8(0);
        o.put_slice(&stmt.name);
        o.put_u8(0);
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
            let mut err = BytesMut::new();
            builders::error_response(&mut err, "ERROR", "42P05", &text);
            builders::describe_statement(out.replace(), ascii(ABSENT));
            self.push(Req::FakeError(err.to_vec().into_boxed_slice()), s2c);
            return Ok(());
        }
        let stmt = self.registry.get_or_create(key);
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
        let p = self.server.prepare(stmt.id, self.max);
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
            self.skipped_requests += 1;
            return;
        }
        self.unsynced = !matches!(req, Req::Sync | Req::Query | Req::Call);
        if matches!(req, Req::Sync) {
            self.skipping = false;
            self.server.segment += 1;
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
