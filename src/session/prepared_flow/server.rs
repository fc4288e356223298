//! The server side of a flow: each answer matched to the request it completes, the pooler's
//! own requests swallowed, skipped requests undone, and a stale cached plan retried.

use super::{ascii, fake_answer, Flow, Out, Req, Retry, Verdict};
use crate::proto::tags::frontend;
use crate::proto::{builders, views};
use crate::session::forward::Pipe;

impl Flow {
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
        crate::session::buffers::give(r.bytes);
        if let Some(o) = out.out.take() {
            crate::session::buffers::give(o);
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
    pub(super) fn skipped(&mut self, req: Req) {
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
