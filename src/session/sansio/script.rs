//! Client scripts decoded from arbitrary bytes (a fuzzer's input): mostly well-formed
//! extended and simple query traffic over a few statement and portal names, optionally with
//! raw bytes mixed in, cut into chunks as a network would.

use crate::proto::builders;
use bytes::{BufMut, BytesMut};

/// What a fuzz input asks for.
#[derive(Debug, Clone)]
pub struct Script {
    /// The client's bytes, in the chunks they arrive in.
    pub chunks: Vec<Vec<u8>>,
    /// Only protocol-valid frames were generated (no raw bytes).
    pub well_formed: bool,
    /// Named prepared statements tracked (else plain forwarding).
    pub tracked: bool,
    /// Statements kept per server connection.
    pub per_server: usize,
    pub max_inspected: usize,
    /// Bytes accepted per write, both peers.
    pub write_max: usize,
    /// Which of two server connections serves each transaction (bit i: transaction i).
    pub servers: u64,
}

const TEXTS: [&str; 6] = [
    "select 1", "select 2", "fail", "begin", "commit", "rollback",
];
const NAMES: [&str; 4] = ["", "s1", "s2", "s3"];
const PORTALS: [&str; 2] = ["", "p1"];

/// Reads bytes off the front of the input; zeros once it is used up.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }
}

impl Script {
    /// Decodes `data`: a header of settings, then one operation per byte group.
    pub fn decode(data: &[u8]) -> Script {
        let mut b = Bytes(data);
        let flags = b.byte();
        let mut s = Script {
            chunks: Vec::new(),
            well_formed: true,
            tracked: flags & 1 == 0,
            per_server: usize::from(b.byte() % 4) + 1,
            max_inspected: 64 + usize::from(b.byte()) * 4,
            write_max: if flags & 2 == 0 {
                usize::MAX
            } else {
                usize::from(b.byte()) + 1
            },
            servers: u64::from(b.byte()) | u64::from(b.byte()) << 8,
        };
        let mut all = BytesMut::new();
        let mut cuts = Vec::new();
        while !b.0.is_empty() {
            s.op(&mut b, &mut all);
            if b.byte() & 3 == 0 {
                cuts.push(all.len());
            }
        }
        let mut from = 0;
        for cut in cuts.into_iter().chain([all.len()]) {
            // Sometimes mid-frame: a cut one to three bytes early.
            let at = cut.saturating_sub(usize::from(b.byte() % 4)).max(from);
            if at > from {
                s.chunks.push(all[from..at].to_vec());
                from = at;
            }
        }
        if all.len() > from {
            s.chunks.push(all[from..].to_vec());
        }
        s
    }

    fn op(&mut self, b: &mut Bytes<'_>, out: &mut BytesMut) {
        match b.byte() % 12 {
            0 | 1 => builders::parse(out, b.pick(&NAMES), b.pick(&TEXTS), &[]),
            2 | 3 => builders::bind_text(out, b.pick(&PORTALS), b.pick(&NAMES), &[]),
            4 => {
                let kind = if b.byte() & 1 == 0 { b'S' } else { b'P' };
                let name = if kind == b'S' {
                    b.pick(&NAMES)
                } else {
                    b.pick(&PORTALS)
                };
                describe_or_close(out, b'D', kind, name);
            }
            5 | 6 => builders::execute(out, b.pick(&PORTALS), 0),
            7 => {
                let kind = if b.byte() & 1 == 0 { b'S' } else { b'P' };
                let name = if kind == b'S' {
                    b.pick(&NAMES)
                } else {
                    b.pick(&PORTALS)
                };
                describe_or_close(out, b'C', kind, name);
            }
            8 => builders::sync(out),
            9 => builders::flush(out),
            10 => builders::query(out, b.pick(&TEXTS)),
            _ => {
                self.well_formed = false;
                for _ in 0..b.byte() % 16 {
                    out.put_u8(b.byte());
                }
            }
        }
    }
}

fn describe_or_close(out: &mut BytesMut, tag: u8, kind: u8, name: &str) {
    out.put_u8(tag);
    out.put_i32(i32::try_from(4 + 1 + name.len() + 1).unwrap_or(i32::MAX));
    out.put_u8(kind);
    out.put_slice(name.as_bytes());
    out.put_u8(0);
}
