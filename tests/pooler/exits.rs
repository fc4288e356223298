//! Session mode resets its server on every exit: a client that vanishes (EOF, no Terminate)
//! inside a transaction, inside an extended-query batch, or in the middle of a COPY leaves
//! nothing to the next client of a pool of one: no named statement, no setting, no open
//! transaction (the connection was reset, or closed).

use crate::util::{ExtraPooler, Fixture};
use bytes::{BufMut, BytesMut};
use libtest_mimic::Failed;
use pgsluice::proto::builders;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub const TESTS: &[(&str, crate::Body)] = &[(
    "transparency::session_mode_resets_on_every_exit",
    resets_on_every_exit,
)];

/// A bare protocol client (trust login as `app`).
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(port: u16) -> Result<Raw, Failed> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut raw = Raw { s, buf: Vec::new() };
        let mut body = BytesMut::new();
        body.put_i32(196_608);
        for kv in ["user", "app", "database", "app"] {
            body.put_slice(kv.as_bytes());
            body.put_u8(0);
        }
        body.put_u8(0);
        let mut pkt = BytesMut::new();
        pkt.put_i32(body.len() as i32 + 4);
        pkt.put_slice(&body);
        raw.s.write_all(&pkt)?;
        raw.until(b'Z')?;
        Ok(raw)
    }

    /// Reads messages up to and including the first with `tag`; returns them.
    fn until(&mut self, tag: u8) -> Result<Vec<(u8, Vec<u8>)>, Failed> {
        let mut got = Vec::new();
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let len = len as usize;
                if self.buf.len() > len {
                    let frame: Vec<u8> = self.buf.drain(..len + 1).collect();
                    let t = frame[0];
                    got.push((t, frame[5..].to_vec()));
                    if t == tag {
                        return Ok(got);
                    }
                    continue;
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self.s.read(&mut chunk)?;
            if n == 0 {
                return Err(format!("connection closed; got {got:?}").into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn send(&mut self, out: &BytesMut) -> Result<(), Failed> {
        self.s.write_all(out)?;
        Ok(())
    }

    /// Simple query; the first column of each DataRow, or the error text.
    fn query(&mut self, sql: &str) -> Result<Vec<String>, Failed> {
        let mut out = BytesMut::new();
        builders::query(&mut out, sql);
        self.send(&out)?;
        let msgs = self.until(b'Z')?;
        Ok(msgs
            .iter()
            .filter(|(t, _)| matches!(t, b'D' | b'E'))
            .map(|(t, b)| match t {
                b'D' => String::from_utf8_lossy(&b[6..]).to_string(),
                _ => format!("error {}", String::from_utf8_lossy(b)),
            })
            .collect())
    }
}

/// What the next client of the pool of one must see: a clean session.
fn next_client_is_clean(port: u16, after: &str) -> Result<(), Failed> {
    let mut c = Raw::connect(port).map_err(|e| format!("after {after}: login: {e:?}"))?;
    let checks = [
        ("show work_mem", "4MB"),
        ("select count(*) from pg_prepared_statements", "0"),
        ("select count(*) from pg_cursors", "0"),
        ("select pg_current_xact_id_if_assigned() is null", "t"),
    ];
    for (sql, want) in checks {
        let got = c.query(sql)?;
        if got != [want] {
            return Err(format!("after {after}: {sql} gave {got:?}, want {want}").into());
        }
    }
    // The name the previous client used for its protocol-level statement is free.
    let mut out = BytesMut::new();
    builders::parse(&mut out, "s1", "select 2", &[]);
    builders::sync(&mut out);
    c.send(&out)?;
    let msgs = c.until(b'Z')?;
    if msgs.iter().any(|(t, _)| *t == b'E') {
        return Err(format!("after {after}: Parse of s1 failed: {msgs:?}").into());
    }
    Ok(())
}

fn resets_on_every_exit(fx: &Fixture) -> Result<(), Failed> {
    fx.cluster.primary().psql(
        "app",
        "create table if not exists tr_exit_copy (a int); grant all on tr_exit_copy to app",
    )?;
    let p = ExtraPooler::start(
        fx,
        "auth_type = \"trust\"",
        "pool_size = 1\npool_mode = \"session\"",
    );
    // EOF inside a transaction holding a named statement, a cursor and a setting.
    let mut c = Raw::connect(p.port)?;
    c.query("begin; set work_mem = '19MB'; declare cur cursor with hold for select 1")?;
    let mut out = BytesMut::new();
    builders::parse(&mut out, "s1", "select 1", &[]);
    builders::sync(&mut out);
    c.send(&out)?;
    c.until(b'Z')?;
    drop(c);
    next_client_is_clean(p.port, "EOF in a transaction")?;
    // EOF inside an extended-query batch (no Sync) that failed: the server skips to a Sync.
    let mut c = Raw::connect(p.port)?;
    c.query("set work_mem = '23MB'")?;
    let mut out = BytesMut::new();
    builders::parse(&mut out, "s1", "select 1", &[]);
    builders::parse(&mut out, "s2", "select 1/0", &[]);
    builders::bind_text(&mut out, "", "s2", &[]);
    builders::execute(&mut out, "", 0);
    c.send(&out)?;
    std::thread::sleep(Duration::from_millis(200));
    drop(c);
    next_client_is_clean(p.port, "EOF in an extended batch")?;
    // EOF in the middle of COPY FROM STDIN.
    let mut c = Raw::connect(p.port)?;
    c.query("begin; set local work_mem = '29MB'")?;
    let mut out = BytesMut::new();
    builders::query(&mut out, "copy tr_exit_copy from stdin");
    c.send(&out)?;
    c.until(b'G')?;
    c.s.write_all(&[b'd', 0, 0, 0, 6, b'1', b'\n'])?;
    drop(c);
    next_client_is_clean(p.port, "EOF in a COPY")?;
    Ok(())
}
