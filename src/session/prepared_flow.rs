//! Named prepared statements on the wire: client frames renamed and completed with injected
//! Parse/Close, and the server's answers matched back so that the client sees exactly what
//! PostgreSQL alone would have sent.
//!
//! Every request that gets an answer (Parse, Bind, Describe, Execute, Close, Sync, Query,
//! FunctionCall) is queued in stream order; each server message that completes a request pops
//! it. Requests the pooler added ([`Req::InjectedParse`], [`Req::InjectedClose`]) have their
//! ParseComplete/CloseComplete swallowed; requests the pooler answers itself ([`Req::FakeParse`]
//! when the server already holds the statement, [`Req::FakeClose`]: the shared statement stays)
//! are answered when they reach the front of the queue. After an ErrorResponse to an extended
//! request the server skips everything up to the next Sync: the skipped requests are popped and
//! their effects undone.
//!
//! # Cancellation safety
//! All state lives in [`Flow`] and the pipes; nothing is held across a `Poll::Pending`.

use super::forward::Pipe;
use super::prepared::{ClientStatements, Registry, Stmt};
use crate::proto::tags::frontend;
use crate::proto::{builders, views, ProtoError, HEADER_LEN};
use crate::server::prepared::ServerStatements;
use bytes::{BufMut, BytesMut};
use std::collections::VecDeque;
use std::sync::Arc;

const PARSE_COMPLETE: [u8; 5] = [b'1', 0, 0, 0, 4];
const CLOSE_COMPLETE: [u8; 5] = [b'3', 0, 0, 0, 4];
/// A statement name no client uses: describing it makes the server fail (and skip to Sync)
/// where the pooler must answer an error of its own.
const ABSENT: &[u8] = b"pgsluice_absent_statement";

/// A request sent to the server whose answer is still to come.
#[derive(Debug)]
enum Req {
    Parse,
    Bind,
    Describe,
    Execute,
    Close,
    Sync,
    Query,
    Call,
    /// The pooler's Parse of a shared statement: ParseComplete swallowed.
    InjectedParse {
        id: u64,
        gen: u32,
    },
    /// The pooler's Close (eviction or re-prepare): CloseComplete swallowed.
    InjectedClose {
        id: u64,
        gen: u32,
    },
    /// The client's Parse, renamed; `name` is forgotten if it fails.
    ClientParse {
        id: u64,
        gen: u32,
        name: Box<[u8]>,
    },
    /// ParseComplete the pooler answers itself; `name` is forgotten if skipped.
    FakeParse {
        name: Box<[u8]>,
    },
    /// CloseComplete the pooler answers itself; `name` comes back if skipped.
    FakeClose {
        name: Box<[u8]>,
        stmt: Arc<Stmt>,
    },
    /// The server's error to a probe, replaced by this ErrorResponse frame.
    FakeError(Box<[u8]>),
    /// Where the client's CopyDone/CopyFail was, while an Execute may still start a COPY FROM
    /// STDIN (the server ignores the Syncs sent before it in copy-in mode).
    CopyEnd,
}

/// A single-statement implicit transaction kept until its answer, in case the server says the
/// cached plan changed result type.
#[derive(Debug)]
struct Retry {
    stmt: Arc<Stmt>,
    bytes: BytesMut,
    complete: bool,
    fired: bool,
}

/// Per-run counters, folded into [`super::prepared::PreparedTotals`] at the boundary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub prepares: u64,
    pub hits: u64,
    pub evictions: u64,
    pub retries: u64,
}

/// What to do with one server message.
#[derive(Debug)]
pub enum Verdict {
    Pass,
    Swallow,
    Replace(Box<[u8]>),
}

/// A client's prepared-statement state, lent to the forwarder for each transaction.
#[derive(Debug)]
pub struct Flow {
    pub statements: ClientStatements,
    /// The serving connection's statements (swapped in for the run).
    pub server: ServerStatements,
    registry: Arc<Registry>,
    max: usize,
    queue: VecDeque<Req>,
    /// The server skips until the next Sync.
    skipping: bool,
    /// Extended-protocol messages were sent since the last Sync: the server is inside an
    /// extended query (an implicit transaction) and cannot be released yet.
    unsynced: bool,
    /// The server is in extended-protocol copy-in mode and ignores Sync until CopyDone/Fail.
    copy_in: bool,
    retry: Option<Retry>,
    /// Client frames wait while a retry is being arranged.
    pub hold: bool,
    /// Query/FunctionCall requests the server skipped (no ReadyForQuery will come for them).
    pub skipped_requests: u32,
    pub counts: Counts,
}

impl Flow {
    /// A client's state, empty.
    pub fn new(registry: Arc<Registry>, max: usize) -> Self {
        Self {
            statements: ClientStatements::default(),
            server: ServerStatements::default(),
            registry,
            max,
            queue: VecDeque::new(),
            skipping: false,
            unsynced: false,
            copy_in: false,
            retry: None,
            hold: false,
            skipped_requests: 0,
            counts: Counts::default(),
        }
    }

    /// The registry this flow maps names with.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Whether no answer is awaited and the server is not inside an extended query.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.hold && !self.unsynced
    }

    /// Forgets requests in flight (the run ended without reaching a boundary).
    pub fn reset_queue(&mut self) {
        self.queue.clear();
        self.skipping = false;
        self.unsynced = false;
        self.copy_in = false;
        self.retry = None;
        self.hold = false;
        if self.queue.capacity() > 64 {
            self.queue.shrink_to(16);
        }
    }

    /// Whether the client has no named statement and nothing is in flight.
    pub fn is_unused(&self) -> bool {
        self.statements.is_empty() && self.queue.is_empty()
    }

    // ------------------------------------------------------------------ client side

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
            frontend::BIND => {
                self.capture(tag, false, frame);
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
                    let mut bytes = super::buffers::take();
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

    fn drop_retry(&mut self) {
        if let Some(r) = self.retry.take() {
            super::buffers::give(r.bytes);
        }
    }

    fn push(&mut self, req: Req, s2c: &mut Pipe) {
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

    // ------------------------------------------------------------------ server side

    /// Answers the pooler owes at the front of the queue, written where `s2c` is decided up to.
    pub fn emit_due(&mut self, s2c: &mut Pipe) {
        while let Some(bytes) = self.queue.front().and_then(fake_answer) {
            s2c.insert(bytes);
            self.queue.pop_front();
        }
    }

    /// Handles one whole server message (`body` after the header) in a tracked run.
    pub fn server_frame(&mut self, tag: u8, body: &[u8], c2s: &mut Pipe) -> Verdict {
        match tag {
            b'1' => match self.pop_if(|r| {
                matches!(
                    r,
                    Req::Parse | Req::InjectedParse { .. } | Req::ClientParse { .. }
                )
            }) {
                Some(Req::InjectedParse { id, gen }) => {
                    self.server.parsed(id, gen);
                    Verdict::Swallow
                }
                Some(Req::ClientParse { id, gen, .. }) => {
                    self.server.parsed(id, gen);
                    Verdict::Pass
                }
                _ => Verdict::Pass,
            },
            b'3' => match self.pop_if(|r| matches!(r, Req::Close | Req::InjectedClose { .. })) {
                Some(Req::InjectedClose { id, gen }) => {
                    self.server.closed(id, gen);
                    Verdict::Swallow
                }
                _ => Verdict::Pass,
            },
            b'2' => self.pass_if(|r| matches!(r, Req::Bind)),
            b'T' | b'n' => self.pass_if(|r| matches!(r, Req::Describe)),
            b'I' | b's' => self.pass_if(|r| matches!(r, Req::Execute)),
            b'C' => {
                self.command_tag(body);
                self.pass_if(|r| matches!(r, Req::Execute))
            }
            b'Z' => self.ready(c2s),
            b'G' => {
                self.copy_in_started();
                Verdict::Pass
            }
            b'E' => self.error(body),
            _ => Verdict::Pass,
        }
    }

    /// The header of a message that completes a request but is streamed, not read whole.
    pub fn server_streamed(&mut self, tag: u8) {
        match tag {
            b'2' => self.pop_if(|r| matches!(r, Req::Bind)),
            b'T' | b'n' => self.pop_if(|r| matches!(r, Req::Describe)),
            b'I' | b's' => self.pop_if(|r| matches!(r, Req::Execute)),
            _ => None,
        };
    }

    fn pass_if(&mut self, f: impl Fn(&Req) -> bool) -> Verdict {
        self.pop_if(f);
        Verdict::Pass
    }

    fn pop_if(&mut self, f: impl Fn(&Req) -> bool) -> Option<Req> {
        if self.queue.front().is_some_and(f) {
            self.queue.pop_front()
        } else {
            None
        }
    }

    /// CopyInResponse: Syncs the client sent after the Execute and before its CopyDone (or
    /// all of them, and those still to come, when it has not ended the copy yet) are ignored.
    fn copy_in_started(&mut self) {
        if !matches!(self.queue.front(), Some(Req::Execute)) {
            return;
        }
        let mut i = 1;
        while i < self.queue.len() {
            match self.queue.get(i) {
                Some(Req::Sync) => {
                    self.queue.remove(i);
                    self.skipped_requests += 1;
                }
                Some(Req::CopyEnd) => {
                    self.queue.remove(i);
                    return;
                }
                _ => i += 1,
            }
        }
        self.copy_in = true;
    }

    fn command_tag(&mut self, body: &[u8]) {
        match body {
            b"DISCARD ALL\0" | b"DEALLOCATE ALL\0" => {
                self.server.clear();
                self.statements.clear();
                self.server.settings_reset |= body == b"DISCARD ALL\0";
            }
            b"RESET\0" => self.server.settings_reset = true,
            b"PREPARE\0" => self.server.sql_prepared = true,
            _ => {}
        }
    }

    fn ready(&mut self, c2s: &mut Pipe) -> Verdict {
        if self.retry.as_ref().is_some_and(|r| r.fired) {
            self.pop_if(|r| matches!(r, Req::Sync));
            if let Some(r) = self.retry.take() {
                self.resend(r, c2s);
            }
            return Verdict::Swallow;
        }
        while let Some(r) = self.queue.pop_front() {
            if matches!(r, Req::Sync | Req::Query | Req::Call) {
                break;
            }
        }
        if self.retry.as_ref().is_some_and(|r| r.complete) {
            self.drop_retry();
        }
        Verdict::Pass
    }

    /// Re-prepares the retried statement and sends the kept frames again.
    fn resend(&mut self, r: Retry, c2s: &mut Pipe) {
        self.hold = false;
        self.counts.retries += 1;
        let mut out = Out::detached();
        let mut dummy = Pipe::default();
        let p = self.server.prepare(r.stmt.id, self.max);
        for victim in p.evict {
            builders::close_statement(out.replace(), &format!("pgsl_{victim}"));
            let gen = self.server.closing_gen(victim);
            self.push(Req::InjectedClose { id: victim, gen }, &mut dummy);
        }
        builders::close_statement(out.replace(), ascii(&r.stmt.name));
        let (id, gen) = (r.stmt.id, p.gen);
        self.push(
            Req::InjectedClose {
                id,
                gen: gen.wrapping_sub(1),
            },
            &mut dummy,
        );
        out.replace().extend_from_slice(&r.stmt.parse);
        self.push(Req::InjectedParse { id, gen }, &mut dummy);
        for frame in crate::proto::Frames::new(&r.bytes, usize::MAX).flatten() {
            let req = match frame.0 {
                frontend::BIND => Req::Bind,
                frontend::DESCRIBE => Req::Describe,
                frontend::EXECUTE => Req::Execute,
                frontend::SYNC => Req::Sync,
                _ => continue,
            };
            self.push(req, &mut dummy);
        }
        let o = out.replace();
        o.extend_from_slice(&r.bytes);
        c2s.insert(o);
        super::buffers::give(r.bytes);
        if let Some(o) = out.out.take() {
            super::buffers::give(o);
        }
    }

    fn error(&mut self, body: &[u8]) -> Verdict {
        let extended = self
            .queue
            .front()
            .is_some_and(|r| !matches!(r, Req::Sync | Req::Query | Req::Call));
        if !extended {
            return Verdict::Pass;
        }
        let mut verdict = Verdict::Pass;
        match self.queue.pop_front() {
            Some(Req::FakeError(frame)) => verdict = Verdict::Replace(frame),
            Some(Req::Bind) if self.retry_wanted(body) => verdict = Verdict::Swallow,
            Some(r) => self.skipped(r),
            None => {}
        }
        while let Some(r) = self.queue.front() {
            if matches!(r, Req::Sync) {
                break;
            }
            if let Some(r) = self.queue.pop_front() {
                self.skipped(r);
            }
        }
        if self.queue.is_empty() {
            self.skipping = true;
        }
        if matches!(verdict, Verdict::Swallow) {
            if let Some(r) = self.retry.as_mut() {
                r.fired = true;
                self.hold = true;
            }
        } else {
            self.drop_retry();
        }
        verdict
    }

    /// Whether the error to a kept single-statement transaction is a stale cached plan.
    fn retry_wanted(&self, body: &[u8]) -> bool {
        let Some(r) = self.retry.as_ref().filter(|r| r.complete) else {
            return false;
        };
        // The kept transaction ends the queue: nothing else was sent after its Sync.
        let tail_ok = self
            .queue
            .iter()
            .all(|q| matches!(q, Req::Describe | Req::Execute | Req::Sync))
            && matches!(self.queue.back(), Some(Req::Sync))
            && self.queue.iter().filter(|q| matches!(q, Req::Sync)).count() == 1;
        let stale = views::ErrorFields::new(body)
            .ok()
            .and_then(|f| f.sqlstate().map(|c| c == "0A000"))
            .unwrap_or(false);
        tail_ok && stale && !r.fired
    }

    /// Undoes what a request the server skipped (or failed) would have done.
    fn skipped(&mut self, req: Req) {
        match req {
            Req::InjectedParse { id, gen } => self.server.parse_lost(id, gen),
            Req::ClientParse { id, gen, name } => {
                self.server.parse_lost(id, gen);
                self.statements.remove(&name);
            }
            Req::FakeParse { name } => {
                self.statements.remove(&name);
            }
            Req::FakeClose { name, stmt } => self.statements.insert(&name, stmt),
            Req::Query | Req::Call => self.skipped_requests += 1,
            _ => {}
        }
    }
}

/// The answer the pooler gives itself for a request it did not send.
fn fake_answer(req: &Req) -> Option<&'static [u8]> {
    match req {
        Req::FakeParse { .. } => Some(&PARSE_COMPLETE),
        Req::FakeClose { .. } => Some(&CLOSE_COMPLETE),
        _ => None,
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

/// Server-side names are ASCII by construction.
fn ascii(name: &[u8]) -> &str {
    std::str::from_utf8(name).unwrap_or_default()
}

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

    fn detached() -> Out<'static> {
        Out::new(&[])
    }

    /// The current frame is replaced: returns the buffer to write its replacement to.
    pub fn replace(&mut self) -> &mut BytesMut {
        let o = self.out.get_or_insert_with(super::buffers::take);
        if self.copied < self.start {
            o.extend_from_slice(&self.src[self.copied..self.start]);
        }
        self.copied = self.copied.max(self.end);
        o
    }
}

/// Lends a client's flow (made on first use) and the serving connection's statements to a
/// forwarding run; `None` when the feature is off (`max == 0`).
pub fn lend(
    slot: &mut Option<Box<Flow>>,
    server: &mut ServerStatements,
    registry: &Arc<Registry>,
    max: usize,
) -> Option<Box<Flow>> {
    if max == 0 {
        return None;
    }
    let mut flow = slot.take().unwrap_or_else(|| cache::take(registry, max));
    flow.max = max;
    std::mem::swap(&mut flow.server, server);
    Some(flow)
}

/// Takes a flow back from a run: statements to the connection, counters to the totals, and the
/// flow to the client (or to the thread cache when the client has no named statement).
pub fn give_back(
    flow: Option<Box<Flow>>,
    slot: &mut Option<Box<Flow>>,
    server: &mut ServerStatements,
) {
    let Some(mut flow) = flow else {
        return;
    };
    std::mem::swap(&mut flow.server, server);
    if !flow.is_idle() {
        flow.reset_queue();
    }
    let c = std::mem::take(&mut flow.counts);
    let t = &flow.registry.totals;
    use std::sync::atomic::Ordering::Relaxed;
    for (n, counter) in [
        (c.prepares, &t.prepares),
        (c.hits, &t.hits),
        (c.evictions, &t.evictions),
        (c.retries, &t.retries),
    ] {
        if n > 0 {
            counter.fetch_add(n, Relaxed);
        }
    }
    if flow.is_unused() {
        cache::give(flow);
    } else {
        *slot = Some(flow);
    }
}

/// Per-thread cache of empty flows, so that clients without named statements hold none while
/// idle and allocate none per transaction.
mod cache {
    use super::{Flow, Registry};
    use std::cell::RefCell;
    use std::sync::Arc;

    thread_local! {
        #[allow(clippy::vec_box)] // moved in and out of sessions as boxes
        static FLOWS: RefCell<Vec<Box<Flow>>> = const { RefCell::new(Vec::new()) };
    }

    pub fn take(registry: &Arc<Registry>, max: usize) -> Box<Flow> {
        FLOWS
            .with(|c| c.borrow_mut().pop())
            .filter(|f| Arc::ptr_eq(f.registry(), registry))
            .unwrap_or_else(|| Box::new(Flow::new(registry.clone(), max)))
    }

    pub fn give(flow: Box<Flow>) {
        FLOWS.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() < 256 {
                c.push(flow);
            }
        });
    }
}
