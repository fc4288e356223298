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
//!
//! # Files
//! This file holds the types and lending a flow to a run; [`client`] handles the client's
//! frames, [`server`] the server's answers, [`out`] the rewritten client bytes.

mod client;
mod out;
mod server;

pub use out::Out;

use super::prepared::{ClientStatements, Registry, Stmt};
use crate::server::prepared::ServerStatements;
use bytes::BytesMut;
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
}

/// The answer the pooler gives itself for a request it did not send.
fn fake_answer(req: &Req) -> Option<&'static [u8]> {
    match req {
        Req::FakeParse { .. } => Some(&PARSE_COMPLETE),
        Req::FakeClose { .. } => Some(&CLOSE_COMPLETE),
        _ => None,
    }
}

/// Server-side names are ASCII by construction.
fn ascii(name: &[u8]) -> &str {
    std::str::from_utf8(name).unwrap_or_default()
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
