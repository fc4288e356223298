//! Forwarding runs over in-memory byte streams, without IO or a runtime: the fuzz target
//! (`fuzz/fuzz_targets/forwarding.rs`) and a property test drive the forwarder, the
//! prepared-statement flow and the read/write classifier with client scripts (see
//! [`Script`]) against scripted servers (see [`ScriptedPg`]) and check what must hold
//! ([`check`]).

mod pg;
mod script;

pub use pg::ScriptedPg;
pub use script::Script;

use super::forward::{Forwarder, Outcome, Pipe};
use super::prepared::Registry;
use super::prepared_flow::{self, Flow, Limits};
use crate::proto::frame_len;
use crate::server::prepared::ServerStatements;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A client sending its chunks, then waiting (`Pending`) until told to close.
#[derive(Debug, Default)]
struct Client {
    chunks: VecDeque<Vec<u8>>,
    closed: bool,
    written: Vec<u8>,
    write_max: usize,
}

impl AsyncRead for Client {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(mut chunk) = self.chunks.pop_front() else {
            return if self.closed {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        };
        let n = chunk.len().min(buf.remaining());
        buf.put_slice(&chunk[..n]);
        if n < chunk.len() {
            self.chunks.push_front(chunk.split_off(n));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Client {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = b.len().min(self.write_max.max(1));
        self.written.extend_from_slice(&b[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What a driven session did.
#[derive(Debug)]
pub struct Report {
    /// The outcome of each forwarding run, in order.
    pub outcomes: Vec<Result<Outcome, io::ErrorKind>>,
    /// Everything the client received.
    pub to_client: Vec<u8>,
    /// Largest buffer either direction held after a run.
    pub peak_buffer: usize,
    /// What each server connection received.
    pub to_servers: Vec<Vec<u8>>,
}

/// Polls allowed per run: over these peers every poll progresses, ends, or waits for the
/// client (which then closes).
const POLLS_PER_RUN: usize = 100_000;

/// Runs `script` as a session does: transactions (up to 64), each on one of two server
/// connections, each lent the client's flow and given it back; the client closes once it has
/// sent everything and the forwarder waits for it. The classifier sees each transaction's
/// first client bytes, as routing does.
///
/// # Panics
/// When a run neither ends nor progresses, or sends either peer bytes that are not
/// well-formed frames, or a buffer grows past what `max_inspected` allows.
pub fn drive(script: &Script) -> Report {
    let registry = Arc::new(Registry::default());
    let limits = Limits {
        per_server: if script.tracked { script.per_server } else { 0 },
        per_client: 64,
        total: 256,
    };
    let mut client = Client {
        chunks: script.chunks.iter().cloned().collect(),
        write_max: script.write_max,
        ..Client::default()
    };
    let mut servers = [
        ScriptedPg::new(script.write_max),
        ScriptedPg::new(script.write_max),
    ];
    let mut statements = [ServerStatements::default(), ServerStatements::default()];
    let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
    let mut slot: Option<Box<Flow>> = None;
    let mut report = Report {
        outcomes: Vec::new(),
        to_client: Vec::new(),
        peak_buffer: 0,
        to_servers: Vec::new(),
    };
    let bound = 2 * (script.max_inspected + crate::session::buffers::BUF_SIZE) + 64 * 1024;
    for i in 0..64 {
        if let Some(first) = client.chunks.front() {
            let _ = crate::router::classify(first);
        }
        let on = usize::from(script.servers >> (i % 64) & 1 == 1);
        let (server, stmts) = (&mut servers[on], &mut statements[on]);
        let mut fwd = Forwarder::new(1 << 30, false, true);
        fwd.max_inspected = script.max_inspected;
        fwd.flow = prepared_flow::lend(&mut slot, stmts, &registry, limits);
        let outcome = poll_run(&mut fwd, &mut client, server, (&mut c2s, &mut s2c));
        prepared_flow::give_back(fwd.flow.take(), &mut slot, stmts);
        report.peak_buffer = report.peak_buffer.max(c2s.capacity()).max(s2c.capacity());
        assert!(
            report.peak_buffer <= bound,
            "buffer {} > {bound}",
            report.peak_buffer
        );
        let boundary = matches!(outcome, Ok(Outcome::Boundary));
        report.outcomes.push(outcome.map_err(|e| e.kind()));
        if !boundary || client.chunks.is_empty() {
            break;
        }
    }
    for s in &servers {
        check_frames(&s.written, "to a server");
    }
    check_frames(&client.written, "to the client");
    report.to_client = client.written;
    report.to_servers = servers.into_iter().map(|s| s.written).collect();
    report
}

fn poll_run(
    fwd: &mut Forwarder,
    client: &mut Client,
    server: &mut ScriptedPg,
    (c2s, s2c): (&mut Pipe, &mut Pipe),
) -> io::Result<Outcome> {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..POLLS_PER_RUN {
        let polled = {
            let mut run = std::pin::pin!(fwd.run(&mut *client, &mut *server, c2s, s2c));
            run.as_mut().poll(&mut cx)
        };
        match polled {
            Poll::Ready(r) => return r,
            // Waiting for the client: it has sent everything, so it closes.
            Poll::Pending if client.chunks.is_empty() && !client.closed => client.closed = true,
            Poll::Pending => {}
        }
    }
    panic!("a run neither ends nor progresses");
}

/// Asserts that `bytes` are whole frames with valid lengths, the last one possibly cut short.
fn check_frames(bytes: &[u8], what: &str) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match frame_len(rest, usize::MAX) {
            Ok(Some(total)) if total <= rest.len() => rest = &rest[total..],
            Ok(_) => return,
            Err(e) => panic!(
                "malformed frame {what} at {}: {e}",
                bytes.len() - rest.len()
            ),
        }
    }
}

/// The client-visible answers: each message's tag, and an error's SQLSTATE.
pub fn answers(bytes: &[u8]) -> Vec<(u8, String)> {
    crate::proto::Frames::new(bytes, usize::MAX)
        .map_while(Result::ok)
        .map(|(tag, body)| {
            let code = if tag == b'E' {
                crate::proto::views::ErrorFields::new(body)
                    .ok()
                    .and_then(|f| f.sqlstate().map(str::to_string))
                    .unwrap_or_default()
            } else {
                String::new()
            };
            (tag, code)
        })
        .collect()
}

/// What the client would see from one server session without the pooler.
pub fn reference(script: &Script) -> Vec<u8> {
    let mut pg = ScriptedPg::new(usize::MAX);
    for c in &script.chunks {
        let mut rest = &c[..];
        while !rest.is_empty() {
            let n =
                match Pin::new(&mut pg).poll_write(&mut Context::from_waker(Waker::noop()), rest) {
                    Poll::Ready(Ok(n)) => n,
                    _ => break,
                };
            rest = &rest[n..];
        }
    }
    pg.answer_all();
    pg.take_output().to_vec()
}

/// Drives `script` and checks it: the invariants of [`drive`], and for a well-formed script
/// whose transactions all ended cleanly, that the client saw the same answers (message types
/// and SQLSTATEs) as it would from PostgreSQL alone, in the same order.
pub fn check(script: &Script) {
    let report = drive(script);
    let clean = report.outcomes.iter().all(|o| {
        matches!(
            o,
            Ok(Outcome::Boundary) | Ok(Outcome::ClientGone { clean: true })
        )
    });
    // Without tracking, a named statement lives on one server only.
    let comparable = script.tracked || script.servers == 0;
    if script.well_formed && clean && comparable {
        let mut want = answers(&reference(script));
        let mut got = answers(&report.to_client);
        // Known difference: a Bind or Describe pipelined past a Sync, naming a statement whose
        // Parse an error made the server skip, is renamed before the skip is known (the
        // pooler's statement exists on the server) and succeeds where PostgreSQL fails it.
        // Past the first error only the prefix is compared.
        if let Some(first) = want.iter().position(|(tag, _)| *tag == b'E') {
            want.truncate(first + 1);
            got.truncate(first + 1);
        }
        assert_eq!(
            got, want,
            "answers through the pooler differ; outcomes {:?}",
            report.outcomes
        );
    }
}
