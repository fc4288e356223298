//! Cancel keys: each client gets a pooler-issued BackendKeyData; a CancelRequest carrying it is
//! forwarded to the server session running that client's query, and to nothing else.

use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
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

/// One client's slot: set while a server is attached.
#[derive(Debug, Default)]
pub struct CancelSlot(Mutex<Option<CancelTarget>>);

impl CancelSlot {
    /// Records the attached server (or `None` when released).
    pub fn set(&self, t: Option<CancelTarget>) {
        match self.0.lock() {
            Ok(mut g) => *g = t,
            Err(p) => *p.into_inner() = t,
        }
    }

    fn get(&self) -> Option<CancelTarget> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
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
                .and_then(|(_, slot)| slot.get()),
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
