//! The `uring-multi` variant of `uring_relay`: one multishot receive per socket into a shared
//! ring of provided buffers and one send in flight per direction. A buffer is held only while
//! its bytes are on their way (an idle client holds none), and a direction whose peer falls
//! behind stops receiving until its queue drains.

use crate::ring::{
    new_ring, server_socket, user_data, ACCEPT, DOWN, OP_CONNECT, OP_RECV, OP_SEND, UP,
};
use io_uring::types::BufRingEntry;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use socket2::{SockAddr, SockRef, Socket};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};

const OP_CANCEL: u64 = 3;
/// The buffer group of the one provided-buffer ring.
const GROUP: u16 = 1;
/// Buffers in the shared ring (a power of two).
const BUFFERS: u16 = 1024;
/// A direction with this many received buffers waiting cancels its receive.
const MAX_QUEUED: usize = 4;

/// The provided-buffer ring: `BUFFERS` entries the kernel picks from, and their memory.
struct Provided {
    entries: *mut BufRingEntry,
    layout: Layout,
    data: Box<[u8]>,
    size: usize,
    tail: u16,
}

impl Provided {
    fn new(ring: &IoUring, size: usize) -> io::Result<Provided> {
        let layout = Layout::from_size_align(usize::from(BUFFERS) * 16, 4096)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout is non-zero; the memory is freed in Drop with the same layout.
        let entries = unsafe { alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut p = Provided {
            entries,
            layout,
            data: vec![0; usize::from(BUFFERS) * size].into_boxed_slice(),
            size,
            tail: 0,
        };
        // SAFETY: page-aligned, BUFFERS entries, alive as long as the ring (Relay drops the
        // ring first).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, BUFFERS, GROUP, 0)?;
        }
        for bid in 0..BUFFERS {
            p.give_back(bid);
        }
        Ok(p)
    }

    fn addr(&self, bid: u16) -> *const u8 {
        self.data[usize::from(bid) * self.size..].as_ptr()
    }

    /// Hands buffer `bid` back to the kernel.
    fn give_back(&mut self, bid: u16) {
        let addr = self.addr(bid) as u64;
        // SAFETY: the index is masked into the ring; the tail is the first entry's reserved
        // field, published with release ordering after the entry is written.
        unsafe {
            let e = &mut *self.entries.add(usize::from(self.tail & (BUFFERS - 1)));
            e.set_addr(addr);
            e.set_len(self.size as u32);
            e.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = BufRingEntry::tail(self.entries).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for Provided {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.entries.cast(), self.layout) }
    }
}

#[derive(Default)]
struct Direction {
    /// Received buffers (id, length) in order; the front one is being sent.
    queue: VecDeque<(u16, u32)>,
    /// Bytes of the front buffer already sent.
    sent: usize,
    sending: bool,
    armed: bool,
    cancelling: bool,
}

struct Pair {
    client: OwnedFd,
    server: Socket,
    dirs: [Direction; 2],
    /// Connect, armed receives and sends whose last completion is still to come.
    inflight: u32,
    closing: bool,
    generation: u32,
}

impl Pair {
    fn fd(&self, dir: usize, source: bool) -> types::Fd {
        let from_client = (dir == UP) == source;
        types::Fd(if from_client {
            self.client.as_raw_fd()
        } else {
            self.server.as_raw_fd()
        })
    }
}

struct Relay {
    ring: IoUring,
    bufs: Provided,
    listener: TcpListener,
    server: SockAddr,
    pairs: Vec<Option<Box<Pair>>>,
    free: Vec<usize>,
    generation: u32,
    done: Vec<(u64, i32, u32)>,
    /// Directions whose receive ran out of buffers, re-armed once some come back.
    starved: Vec<(usize, u32, usize)>,
}

/// Serves `listener` until an error on the ring itself.
pub fn run(listener: TcpListener, server: SocketAddr, buf_size: usize) -> io::Result<()> {
    let ring = new_ring()?;
    let bufs = Provided::new(&ring, buf_size)?;
    let mut relay = Relay {
        ring,
        bufs,
        listener,
        server: SockAddr::from(server),
        pairs: Vec::new(),
        free: Vec::new(),
        generation: 0,
        done: Vec::with_capacity(1024),
        starved: Vec::new(),
    };
    let e = opcode::AcceptMulti::new(types::Fd(relay.listener.as_raw_fd()))
        .build()
        .user_data(ACCEPT);
    relay.push(&e)?;
    eprintln!("listening");
    relay.serve()
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
            let tail = self.bufs.tail;
            for &(ud, res, flags) in &done {
                self.complete(ud, res, flags)?;
            }
            self.done = done;
            if self.bufs.tail != tail {
                while let Some((slot, generation, dir)) = self.starved.pop() {
                    if self.pair(slot, generation).is_some() {
                        self.rearm(slot, dir)?;
                    }
                }
            }
        }
    }

    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: entries point into `self.bufs` or `self.server`, alive while the ring is.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn pair(&mut self, slot: usize, generation: u32) -> Option<&mut Pair> {
        let p = self.pairs.get_mut(slot)?.as_deref_mut()?;
        (p.generation == generation).then_some(p)
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32) -> io::Result<()> {
        if ud == ACCEPT {
            if res >= 0 {
                // SAFETY: a successful accept completion carries a new descriptor we own.
                let client = unsafe { OwnedFd::from_raw_fd(res) };
                if let Err(e) = self.open(client) {
                    eprintln!("server connection: {e}");
                }
            }
            if !cqueue::more(flags) {
                let fd = types::Fd(self.listener.as_raw_fd());
                self.push(&opcode::AcceptMulti::new(fd).build().user_data(ACCEPT))?;
            }
            return Ok(());
        }
        let (generation, slot) = ((ud >> 32) as u32, ((ud >> 4) & 0x0fff_ffff) as usize);
        let (op, dir) = ((ud >> 1) & 0x7, (ud & 1) as usize);
        let Some(pair) = self.pair(slot, generation) else {
            return Ok(());
        };
        match op {
            OP_CONNECT => {
                pair.inflight -= 1;
                if res < 0 || pair.closing {
                    return self.close(slot);
                }
                self.rearm(slot, UP)?;
                self.rearm(slot, DOWN)
            }
            OP_RECV => self.received(slot, dir, res, flags),
            OP_SEND => self.sent(slot, dir, res),
            _ => Ok(()), // OP_CANCEL: the receive it cancels reports itself
        }
    }

    fn received(&mut self, slot: usize, dir: usize, res: i32, flags: u32) -> io::Result<()> {
        let Some(pair) = self.pairs[slot].as_deref_mut() else {
            return Ok(());
        };
        let more = cqueue::more(flags);
        let d = &mut pair.dirs[dir];
        if !more {
            d.armed = false;
            d.cancelling = false;
            pair.inflight -= 1;
        }
        if let (true, Some(bid)) = (res > 0, cqueue::buffer_select(flags)) {
            if pair.closing {
                self.bufs.give_back(bid);
                return self.close(slot);
            }
            d.queue.push_back((bid, res as u32));
            let (sending, queued) = (d.sending, d.queue.len());
            if !sending {
                self.send_front(slot, dir)?;
            }
            if queued >= MAX_QUEUED {
                return self.stop_receiving(slot, dir);
            }
            return if more { Ok(()) } else { self.rearm(slot, dir) };
        }
        match -res {
            _ if pair.closing => self.close(slot),
            libc::ENOBUFS => {
                let generation = pair.generation;
                self.starved.push((slot, generation, dir));
                Ok(())
            }
            libc::ECANCELED => self.rearm(slot, dir),
            _ => self.close(slot), // end of stream or an error
        }
    }

    fn sent(&mut self, slot: usize, dir: usize, res: i32) -> io::Result<()> {
        let Some(pair) = self.pairs[slot].as_deref_mut() else {
            return Ok(());
        };
        pair.inflight -= 1;
        let d = &mut pair.dirs[dir];
        d.sending = false;
        if pair.closing || res < 0 {
            return self.close(slot);
        }
        d.sent += res as usize;
        let Some(&(bid, len)) = d.queue.front() else {
            return Ok(());
        };
        if d.sent >= len as usize {
            d.queue.pop_front();
            d.sent = 0;
            self.bufs.give_back(bid);
        }
        if !d.queue.is_empty() {
            self.send_front(slot, dir)?;
        }
        self.rearm(slot, dir)
    }

    /// Sends the rest of the front buffer of `dir`.
    fn send_front(&mut self, slot: usize, dir: usize) -> io::Result<()> {
        let Some(pair) = self.pairs[slot].as_deref_mut() else {
            return Ok(());
        };
        let fd = pair.fd(dir, false);
        let d = &mut pair.dirs[dir];
        let Some(&(bid, len)) = d.queue.front() else {
            return Ok(());
        };
        // SAFETY: `sent` < `len` <= the buffer's size.
        let data = unsafe { self.bufs.addr(bid).add(d.sent) };
        let e = opcode::Send::new(fd, data, len - d.sent as u32)
            .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(pair.generation, slot, OP_SEND, dir));
        d.sending = true;
        pair.inflight += 1;
        self.push(&e)
    }

    /// Arms the multishot receive of `dir` unless it is armed, closing or too far ahead.
    fn rearm(&mut self, slot: usize, dir: usize) -> io::Result<()> {
        let Some(pair) = self.pairs[slot].as_deref_mut() else {
            return Ok(());
        };
        let fd = pair.fd(dir, true);
        let d = &mut pair.dirs[dir];
        if pair.closing || d.armed || d.queue.len() >= MAX_QUEUED {
            return Ok(());
        }
        let e = opcode::RecvMulti::new(fd, GROUP)
            .build()
            .user_data(user_data(pair.generation, slot, OP_RECV, dir));
        d.armed = true;
        pair.inflight += 1;
        self.push(&e)
    }

    /// Cancels the receive of `dir` (its peer is not keeping up); `sent` re-arms it.
    fn stop_receiving(&mut self, slot: usize, dir: usize) -> io::Result<()> {
        let Some(pair) = self.pairs[slot].as_deref_mut() else {
            return Ok(());
        };
        let target = user_data(pair.generation, slot, OP_RECV, dir);
        let d = &mut pair.dirs[dir];
        if !d.armed || d.cancelling {
            return Ok(());
        }
        d.cancelling = true;
        let e = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data(pair.generation, slot, OP_CANCEL, dir));
        self.push(&e)
    }

    fn open(&mut self, client: OwnedFd) -> io::Result<()> {
        SockRef::from(&client).set_nodelay(true)?;
        let server = server_socket(&self.server)?;
        self.generation = self.generation.wrapping_add(1);
        let pair = Box::new(Pair {
            client,
            server,
            dirs: Default::default(),
            inflight: 1,
            closing: false,
            generation: self.generation,
        });
        let fd = types::Fd(pair.server.as_raw_fd());
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
            .user_data(user_data(self.generation, slot, OP_CONNECT, 0));
        self.push(&e)
    }

    /// Shuts both sockets down (ending the receives); once nothing is in flight the queued
    /// buffers go back to the kernel and the slot is freed.
    fn close(&mut self, slot: usize) -> io::Result<()> {
        let Some(pair) = self.pairs[slot].as_deref_mut() else {
            return Ok(());
        };
        if !pair.closing {
            pair.closing = true;
            let _ = SockRef::from(&pair.client).shutdown(Shutdown::Both);
            let _ = pair.server.shutdown(Shutdown::Both);
        }
        if pair.inflight > 0 {
            return Ok(());
        }
        for d in &mut pair.dirs {
            for (bid, _) in d.queue.drain(..) {
                self.bufs.give_back(bid);
            }
        }
        self.pairs[slot] = None;
        self.free.push(slot);
        Ok(())
    }
}
