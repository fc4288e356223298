//! The io_uring variant of `uring_relay`: one thread drives one ring; per direction, a receive
//! and then a send linked to the next receive, so one `io_uring_enter` submits a burst's send
//! and re-arms its receive together, and the send reports only if it fails.

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// user_data of the multishot accept; relay operations carry `generation << 32 | slot << 4 |
/// op << 1 | direction`.
pub const ACCEPT: u64 = u64::MAX;
pub const OP_CONNECT: u64 = 0;
pub const OP_RECV: u64 = 1;
pub const OP_SEND: u64 = 2;

/// Direction 0 is client to server, 1 server to client.
pub const UP: usize = 0;
pub const DOWN: usize = 1;

/// A client, its server connection and one buffer per direction. Boxed in the slot table so
/// that the buffers the kernel writes into never move.
struct Pair {
    client: OwnedFd,
    server: Socket,
    bufs: [Box<[u8]>; 2],
    /// Bytes received and not yet confirmed sent, per direction.
    len: [usize; 2],
    /// Where the send in flight started, per direction (a short send resumes after it).
    start: [usize; 2],
    /// Operations whose completion is still to come (connect, receives); sends linked before a
    /// receive complete before it, so the buffers are free once this reaches zero.
    inflight: u32,
    closing: bool,
    generation: u32,
}

impl Pair {
    fn fds(&self, dir: usize) -> (RawFd, RawFd) {
        let (c, s) = (self.client.as_raw_fd(), self.server.as_raw_fd());
        if dir == UP {
            (c, s)
        } else {
            (s, c)
        }
    }
}

struct Relay {
    ring: IoUring,
    listener: TcpListener,
    server: SockAddr,
    buf_size: usize,
    pairs: Vec<Option<Box<Pair>>>,
    free: Vec<usize>,
    generation: u32,
    /// Completions copied out of the ring before they are handled (reused, never shrunk).
    done: Vec<(u64, i32, u32)>,
}

/// Serves `listener` until an error on the ring itself.
pub fn run(listener: TcpListener, server: SocketAddr, buf_size: usize) -> io::Result<()> {
    let mut relay = Relay {
        ring: new_ring()?,
        listener,
        server: SockAddr::from(server),
        buf_size,
        pairs: Vec::new(),
        free: Vec::new(),
        generation: 0,
        done: Vec::with_capacity(1024),
    };
    relay.arm_accept()?;
    eprintln!("listening");
    relay.serve()
}

/// A ring for one thread: completions run in this thread when it waits (no interrupts for
/// task work), falling back to a plain ring on kernels without those flags.
pub fn new_ring() -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    b.setup_cqsize(8192)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun();
    match b.build(1024) {
        Ok(ring) => Ok(ring),
        Err(_) => IoUring::builder().setup_cqsize(8192).build(1024),
    }
}

/// An unconnected TCP socket (blocking: the ring polls it) for the server at `addr`.
pub fn server_socket(addr: &SockAddr) -> io::Result<Socket> {
    let domain = match addr.as_socket() {
        Some(SocketAddr::V6(_)) => Domain::IPV6,
        _ => Domain::IPV4,
    };
    let server = Socket::new(domain, Type::STREAM, None)?;
    server.set_nodelay(true)?;
    Ok(server)
}

pub fn user_data(generation: u32, slot: usize, op: u64, dir: usize) -> u64 {
    (u64::from(generation) << 32) | ((slot as u64) << 4) | (op << 1) | dir as u64
}

impl Relay {
    fn serve(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
            let mut done = std::mem::take(&mut self.done);
            done.clear();
            done.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(ud, res, flags) in &done {
                self.complete(ud, res, flags)?;
            }
            self.done = done;
        }
    }

    /// Queues one entry, submitting first if the submission queue is full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer in the entries built here refers to a boxed buffer of a
            // Pair (or to `self.server`), which stays alive until its operations complete.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm_accept(&mut self) -> io::Result<()> {
        let fd = types::Fd(self.listener.as_raw_fd());
        let e = opcode::AcceptMulti::new(fd).build().user_data(ACCEPT);
        self.push(&e)
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32) -> io::Result<()> {
        if ud == ACCEPT {
            if res >= 0 {
                // SAFETY: a successful accept completion carries a new descriptor we own.
                let client = unsafe { OwnedFd::from_raw_fd(res) };
                if let Err(e) = self.open(client) {
                    eprintln!("server connection: {e}");
                }
            } else {
                eprintln!("accept: {}", io::Error::from_raw_os_error(-res));
            }
            if !cqueue::more(flags) {
                self.arm_accept()?;
            }
            return Ok(());
        }
        let slot = ((ud >> 4) & 0x0fff_ffff) as usize;
        let (op, dir) = ((ud >> 1) & 0x7, (ud & 1) as usize);
        let Some(pair) = self.pairs.get_mut(slot).and_then(|p| p.as_mut()) else {
            return Ok(());
        };
        if u64::from(pair.generation) != ud >> 32 {
            return Ok(()); // a failed send's report for a pair already gone
        }
        match op {
            OP_CONNECT => {
                pair.inflight -= 1;
                if res < 0 || pair.closing {
                    return self.close(slot);
                }
                self.recv(slot, UP)?;
                self.recv(slot, DOWN)
            }
            OP_RECV => {
                pair.inflight -= 1;
                if pair.closing {
                    return self.close(slot);
                }
                if res == -libc::ECANCELED {
                    return Ok(()); // its linked send failed; that send's report re-queues
                }
                if res <= 0 {
                    return self.close(slot);
                }
                pair.len[dir] = res as usize;
                self.send_then_recv(slot, dir, 0)
            }
            OP_SEND => {
                // Only a failed or short send reports (the others skip their completion).
                if pair.closing || res < 0 {
                    return self.close(slot);
                }
                let resume = pair.start[dir] + res as usize;
                if resume >= pair.len[dir] {
                    return self.recv(slot, dir);
                }
                self.send_then_recv(slot, dir, resume)
            }
            _ => Ok(()),
        }
    }

    /// A new client: its server socket, connected through the ring.
    fn open(&mut self, client: OwnedFd) -> io::Result<()> {
        SockRef::from(&client).set_nodelay(true)?;
        let server = server_socket(&self.server)?;
        self.generation = self.generation.wrapping_add(1);
        let pair = Box::new(Pair {
            client,
            server,
            bufs: [
                vec![0; self.buf_size].into_boxed_slice(),
                vec![0; self.buf_size].into_boxed_slice(),
            ],
            len: [0; 2],
            start: [0; 2],
            inflight: 1,
            closing: false,
            generation: self.generation,
        });
        let fd = types::Fd(pair.server.as_raw_fd());
        let generation = pair.generation;
        let slot = match self.free.pop() {
            Some(s) => {
                self.pairs[s] = Some(pair);
                s
            }
            None => {
                self.pairs.push(Some(pair));
                self.pairs.len() - 1
            }
        };
        let e = opcode::Connect::new(fd, self.server.as_ptr().cast(), self.server.len())
            .build()
            .user_data(user_data(generation, slot, OP_CONNECT, 0));
        self.push(&e)
    }

    fn recv(&mut self, slot: usize, dir: usize) -> io::Result<()> {
        let Some(pair) = self.pairs[slot].as_mut() else {
            return Ok(());
        };
        let (src, _) = pair.fds(dir);
        let buf = &mut pair.bufs[dir];
        let e = opcode::Recv::new(types::Fd(src), buf.as_mut_ptr(), buf.len() as u32)
            .build()
            .user_data(user_data(pair.generation, slot, OP_RECV, dir));
        pair.inflight += 1;
        self.push(&e)
    }

    /// Sends `bufs[dir][from..len]` and, once it has all gone, receives again into the same
    /// buffer: the two entries are linked and submitted by the same `io_uring_enter`.
    fn send_then_recv(&mut self, slot: usize, dir: usize, from: usize) -> io::Result<()> {
        let Some(pair) = self.pairs[slot].as_mut() else {
            return Ok(());
        };
        let (_, dst) = pair.fds(dir);
        pair.start[dir] = from;
        let data = &pair.bufs[dir][from..pair.len[dir]];
        let e = opcode::Send::new(types::Fd(dst), data.as_ptr(), data.len() as u32)
            .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
            .build()
            .flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS)
            .user_data(user_data(pair.generation, slot, OP_SEND, dir));
        self.push(&e)?;
        self.recv(slot, dir)
    }

    /// Ends a pair: shutting both sockets down completes its pending receives; the slot (and
    /// the buffers) are released when the last of them has reported.
    fn close(&mut self, slot: usize) -> io::Result<()> {
        let Some(pair) = self.pairs[slot].as_mut() else {
            return Ok(());
        };
        if !pair.closing {
            pair.closing = true;
            let _ = SockRef::from(&pair.client).shutdown(Shutdown::Both);
            let _ = pair.server.shutdown(Shutdown::Both);
        }
        if pair.inflight == 0 {
            self.pairs[slot] = None;
            self.free.push(slot);
        }
        Ok(())
    }
}
