//! The pooler's workers: one thread each, each running its own current-thread tokio runtime
//! (its own I/O reactor and timers, no work stealing). Worker 0 is the daemon's main thread;
//! accepted clients are dealt out to the workers in turn, and a client's session, the sockets
//! of the server connections it uses and its timers stay on its worker.

use crate::backend::SessionStarter;
use crate::net::stream::{ClientStream, Peer};
use crate::net::worker;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Workers 1..n (worker 0 runs the daemon itself); stopped by [`Workers::stop`].
pub struct Workers {
    others: Vec<Handle>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
    next: AtomicUsize,
}

/// An accepted client on its way to another worker's reactor.
enum Moving {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Moving {
    /// Registers the socket with the reactor of the runtime running the caller.
    fn register(self) -> std::io::Result<ClientStream> {
        Ok(match self {
            Self::Tcp(s) => ClientStream::Tcp(tokio::net::TcpStream::from_std(s)?),
            Self::Unix(s) => ClientStream::Unix(tokio::net::UnixStream::from_std(s)?),
        })
    }
}

impl Workers {
    /// Starts `count - 1` worker threads beside the caller's (worker 0).
    pub fn start(count: usize) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let mut others = Vec::new();
        let mut threads = Vec::new();
        for index in 1..count.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            others.push(rt.handle().clone());
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("pgsluice-w{index}"))
                .spawn(move || {
                    worker::enter(index as u16);
                    rt.block_on(stop.cancelled());
                })?;
            threads.push(thread);
        }
        Ok(Self {
            others,
            threads: std::sync::Mutex::new(threads),
            stop,
            next: AtomicUsize::new(0),
        })
    }

    /// How many workers there are, the caller's included.
    pub fn count(&self) -> usize {
        self.others.len() + 1
    }

    /// Starts `client`'s session on the next worker in turn.
    pub fn deal(
        &self,
        client: ClientStream,
        peer: Peer,
        start: &SessionStarter,
        tracker: &TaskTracker,
    ) {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.count();
        let Some(handle) = index.checked_sub(1).and_then(|i| self.others.get(i)) else {
            return start(client, peer, tracker);
        };
        let moving = match client {
            ClientStream::Tcp(s) => s.into_std().map(Moving::Tcp),
            ClientStream::Unix(s) => s.into_std().map(Moving::Unix),
            other => return start(other, peer, tracker),
        };
        let moving = match moving {
            Ok(m) => m,
            Err(e) => return tracing::warn!(error = %e, %peer, "cannot hand a client over"),
        };
        let (start, inner) = (start.clone(), tracker.clone());
        tracker.spawn_on(
            async move {
                match moving.register() {
                    Ok(client) => start(client, peer, &inner),
                    Err(e) => tracing::warn!(error = %e, %peer, "cannot hand a client over"),
                }
            },
            handle,
        );
    }

    /// Stops the other workers once the daemon is done with them; tasks still on them are
    /// dropped with their runtimes.
    pub fn stop(&self) {
        self.stop.cancel();
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
