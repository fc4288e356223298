//! A scripted PostgreSQL: a small model of a server session's extended and simple query
//! protocol (named statements and portals, errors that skip to Sync, explicit transactions),
//! answering the frames written to it. Whether a statement fails is decided by its text (one
//! containing `fail`), so that the same client gets the same answers through the pooler and
//! without it.

use crate::proto::{builders, frame_len, views, HEADER_LEN};
use bytes::BytesMut;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The model server; what it was sent is parsed as it arrives.
#[derive(Debug)]
pub struct ScriptedPg {
    input: Vec<u8>,
    out: BytesMut,
    statements: HashMap<Vec<u8>, String>,
    portals: HashMap<Vec<u8>, String>,
    skipping: bool,
    /// ReadyForQuery status: `I`, `T` or `E`.
    status: u8,
    /// Bytes accepted per write (at least 1).
    write_max: usize,
    /// Everything written to it, for the harness's checks.
    pub written: Vec<u8>,
    /// A Terminate or a malformed frame ended the session.
    pub ended: bool,
}

impl ScriptedPg {
    /// A fresh server session accepting at most `write_max` bytes per write.
    pub fn new(write_max: usize) -> Self {
        Self {
            input: Vec::new(),
            out: BytesMut::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            skipping: false,
            status: b'I',
            write_max: write_max.max(1),
            written: Vec::new(),
            ended: false,
        }
    }

    /// Answers every whole frame received so far.
    pub fn answer_all(&mut self) {
        while !self.ended {
            let Ok(Some(total)) = frame_len(&self.input, usize::MAX) else {
                if frame_len(&self.input, usize::MAX).is_err() {
                    self.ended = true;
                }
                return;
            };
            if total > self.input.len() {
                return;
            }
            let frame: Vec<u8> = self.input.drain(..total).collect();
            self.frame(frame[0], &frame[HEADER_LEN..]);
        }
    }

    /// Answers still to be read.
    pub fn take_output(&mut self) -> BytesMut {
        std::mem::take(&mut self.out)
    }

    fn error(&mut self, code: &str) {
        builders::error_response(&mut self.out, "ERROR", code, "scripted error");
        if self.status == b'T' {
            self.status = b'E';
        }
    }

    fn frame(&mut self, tag: u8, body: &[u8]) {
        if tag == b'X' {
            self.ended = true;
            return;
        }
        if self.skipping && tag != b'S' {
            return;
        }
        let ok = match tag {
            b'P' => self.parse(body),
            b'B' => self.bind(body),
            b'D' => self.describe(body),
            b'E' => self.execute(body),
            b'C' => self.close(body),
            b'S' => {
                self.skipping = false;
                self.sync();
                Ok(())
            }
            b'H' => Ok(()),
            b'Q' => {
                match views::query_text(body) {
                    Ok(sql) => {
                        let sql = sql.to_string();
                        if self.run(&sql).is_err() {
                            self.error("42000");
                        }
                    }
                    Err(_) => self.error("08P01"),
                }
                self.sync();
                Ok(())
            }
            _ => Err("08P01"),
        };
        if let Err(code) = ok {
            self.error(code);
            self.skipping = true;
        }
    }

    fn sync(&mut self) {
        if self.status == b'I' {
            self.portals.clear();
            self.statements.remove(&b""[..]);
        }
        builders::ready_for_query(&mut self.out, self.status);
    }

    fn parse(&mut self, body: &[u8]) -> Result<(), &'static str> {
        let p = views::parse_msg(body).map_err(|_| "08P01")?;
        let name = p.name.as_bytes().to_vec();
        if !name.is_empty() && self.statements.contains_key(&name) {
            return Err("42P05");
        }
        self.statements.insert(name, p.query.to_string());
        self.out.extend_from_slice(&[b'1', 0, 0, 0, 4]);
        Ok(())
    }

    fn bind(&mut self, body: &[u8]) -> Result<(), &'static str> {
        let (portal, stmt) = views::bind_names(body).map_err(|_| "08P01")?;
        let text = self.statements.get(stmt.as_bytes()).ok_or("26000")?.clone();
        if !portal.is_empty() && self.portals.contains_key(portal.as_bytes()) {
            return Err("42P03");
        }
        self.portals.insert(portal.as_bytes().to_vec(), text);
        self.out.extend_from_slice(&[b'2', 0, 0, 0, 4]);
        Ok(())
    }

    fn describe(&mut self, body: &[u8]) -> Result<(), &'static str> {
        let (kind, name) = views::describe_or_close(body).map_err(|_| "08P01")?;
        let text = if kind == b'S' {
            let t = self.statements.get(name.as_bytes()).ok_or("26000")?;
            self.out.extend_from_slice(&[b't', 0, 0, 0, 6, 0, 0]);
            t
        } else {
            self.portals.get(name.as_bytes()).ok_or("34000")?
        };
        if text.starts_with("select") {
            builders::row_description(&mut self.out, &["c"]);
        } else {
            self.out.extend_from_slice(&[b'n', 0, 0, 0, 4]);
        }
        Ok(())
    }

    fn execute(&mut self, body: &[u8]) -> Result<(), &'static str> {
        let nul = body.iter().position(|&b| b == 0).ok_or("08P01")?;
        let text = self.portals.get(&body[..nul]).ok_or("34000")?.clone();
        self.run(&text)
    }

    fn close(&mut self, body: &[u8]) -> Result<(), &'static str> {
        let (kind, name) = views::describe_or_close(body).map_err(|_| "08P01")?;
        if kind == b'S' {
            self.statements.remove(name.as_bytes());
        } else {
            self.portals.remove(name.as_bytes());
        }
        self.out.extend_from_slice(&[b'3', 0, 0, 0, 4]);
        Ok(())
    }

    /// Runs a statement's text: `begin`, `commit`, `rollback`, `fail...`, or a `select`.
    fn run(&mut self, text: &str) -> Result<(), &'static str> {
        if self.status == b'E' && !matches!(text, "commit" | "rollback") {
            return Err("25P02");
        }
        match text {
            "begin" => self.status = b'T',
            "commit" | "rollback" => self.status = b'I',
            t if t.contains("fail") => return Err("42000"),
            _ => builders::data_row(&mut self.out, &[Some("1")]),
        }
        let tag = if text.starts_with("select") {
            "SELECT 1"
        } else {
            "OK"
        };
        builders::command_complete(&mut self.out, tag);
        Ok(())
    }
}

impl AsyncRead for ScriptedPg {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.answer_all();
        if self.out.is_empty() {
            // Ended: end of stream; otherwise nothing to say until more arrives.
            return if self.ended {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        }
        let n = self.out.len().min(buf.remaining());
        let chunk = self.out.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ScriptedPg {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = b.len().min(self.write_max);
        self.input.extend_from_slice(&b[..n]);
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
