//! Cancel keys: each client gets a pooler-issued BackendKeyData; a CancelRequest carrying it is
//! forwarded to the server session running that client's query, and to nothing else.

use crate::pool::Pool;
use arc_swap::ArcSwapOption;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

/// The server session a client is using now.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    /// Where the server lives (shared with the pool: no allocation per transaction).
    pub spec: Arc<crate::server::ConnectSpec>,
    pub pid: i32,
    pub secret: i32,
}

impl CancelTarget {
    /// Sends a CancelRequest for this server session.
    pub async fn send(&self) {
        let packet = crate::proto::startup::cancel_request(self.pid, self.secret);
        let (host, port) = (self.spec.host.as_str(), self.spec.port);
        match tokio::net::TcpStream::connect((host, port)).await {
            Ok(mut s) => {
                let _ = s.write_all(&packet).await;
            }
            Err(e) => tracing::warn!(host, port, error = %e, "cannot forward cancel request"),
        }
    }
}

/// One client's slot: set while a server is attached. Lock-free: a transaction stores the
/// server's key in one atomic and the server's place only when it differs from the last one
/// (normally never), so attaching costs no lock and no reference count.
#[derive(Debug, Default)]
pub struct CancelSlot {
    /// Backend pid (high half) and secret (low half) of the attached server; 0 when none.
    key: AtomicU64,
    /// Where the attached server lives (the pool's connect spec).
    spec: ArcSwapOption<crate::server::ConnectSpec>,
}

impl CancelSlot {
    /// Records the server `(pid, secret)` of pool `pool` as attached.
    pub fn attach(&self, pool: &Pool, pid: i32, secret: i32) {
        let same = self.spec.load().as_deref().is_some_and(|s| pool.spec_is(s));
        if !same {
            self.spec.store(Some(pool.spec()));
        }
        let key = ((pid as u32 as u64) << 32) | secret as u32 as u64;
        self.key.store(key, Ordering::Release);
    }

    /// The server was released.
    pub fn detach(&self) {
        self.key.store(0, Ordering::Release);
    }

    /// The attached server, if any.
    pub fn target(&self) -> Option<CancelTarget> {
        let key = self.key.load(Ordering::Acquire);
        if key == 0 {
            return None;
        }
        Some(CancelTarget {
            spec: self.spec.load_full()?,
            pid: (key >> 32) as u32 as i32,
            secret: key as u32 as i32,
        })
    }
}

/// All clients' keys.
#[derive(Debug, Default)]
pub struct CancelMap {
    slots: Mutex<HashMap<i32, (i32, Arc<CancelSlot>)>>,
    next_pid: AtomicI32,
}

/// Removes a client's key when its session ends.
pub struct CancelKey {
    map: Arc<CancelMap>,
    pub pid: i32,
    pub secret: i32,
    pub slot: Arc<CancelSlot>,
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.slots.lock() {
            m.remove(&self.pid);
        }
    }
}

impl CancelMap {
    /// Issues a fresh key for a client.
    pub fn register(self: &Arc<Self>) -> CancelKey {
        let secret: i32 = rand::thread_rng().gen();
        let slot = Arc::new(CancelSlot::default());
        let pid = loop {
            let pid = self
                .next_pid
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1)
                & 0x7fff_ffff;
            if pid == 0 {
                continue;
            }
            if let Ok(mut m) = self.slots.lock() {
                if m.contains_key(&pid) {
                    continue;
                }
                m.insert(pid, (secret, slot.clone()));
            }
            break pid;
        };
        CancelKey {
            map: self.clone(),
            pid,
            secret,
            slot,
        }
    }

    /// Forwards a cancel for `(pid, secret)`; unknown or forged keys are ignored.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let target = match self.slots.lock() {
            Ok(m) => m
                .get(&pid)
                .filter(|(s, _)| *s == secret)
                .and_then(|(_, slot)| slot.target()),
            Err(_) => None,
        };
        let Some(t) = target else {
            tracing::debug!(client_id = pid, "cancel request with unknown key ignored");
            return;
        };
        t.send().await;
    }

    /// Clients registered now.
    pub fn len(&self) -> usize {
        self.slots.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
