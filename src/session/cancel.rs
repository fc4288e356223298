//! Cancel keys: each client gets a BackendKeyData whose secret the pooler issues; a
//! CancelRequest carrying it is forwarded to the server session running that client's query,
//! and to nothing else.
//!
//! The pid a client is told is the pooler's own client id, except in session mode, where it
//! is the backend's real pid (what `pg_backend_pid()` and a NOTIFY's sender show). Keys are
//! therefore looked up by (pid, secret): a backend pid may equal another client's id.

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
        let sent = if crate::server::stream::is_unix_host(host) {
            let path = crate::server::stream::unix_socket_path(host, port);
            match tokio::net::UnixStream::connect(path).await {
                Ok(mut s) => s.write_all(&packet).await,
                Err(e) => Err(e),
            }
        } else {
            match tokio::net::TcpStream::connect((host, port)).await {
                Ok(mut s) => s.write_all(&packet).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = sent {
            tracing::warn!(host, port, error = %e, "cannot forward cancel request");
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

    /// Records `t` as the attached server, or none (not for the hot path: it stores the
    /// place whether or not it changed).
    pub fn set(&self, t: Option<CancelTarget>) {
        match t {
            Some(t) => {
                self.spec.store(Some(t.spec));
                let key = ((t.pid as u32 as u64) << 32) | t.secret as u32 as u64;
                self.key.store(key, Ordering::Release);
            }
            None => self.detach(),
        }
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
    slots: Mutex<HashMap<(i32, i32), Arc<CancelSlot>>>,
    next_pid: AtomicI32,
}

/// Removes a client's key when its session ends.
pub struct CancelKey {
    map: Arc<CancelMap>,
    /// The pooler's id of the client (SHOW CLIENTS, KILL_CLIENT, logs).
    pub pid: i32,
    /// The pid the client was told in BackendKeyData.
    pub wire_pid: i32,
    pub secret: i32,
    pub slot: Arc<CancelSlot>,
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.slots.lock() {
            m.remove(&(self.wire_pid, self.secret));
        }
    }
}

impl CancelMap {
    /// Issues a fresh key for a client, told its pooler id as pid.
    pub fn register(self: &Arc<Self>) -> CancelKey {
        self.register_as(None)
    }

    /// Issues a fresh key; the client is told `wire_pid` (a backend's real pid) when given.
    pub fn register_as(self: &Arc<Self>, wire_pid: Option<i32>) -> CancelKey {
        let slot = Arc::new(CancelSlot::default());
        let pid = loop {
            let pid = self
                .next_pid
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1)
                & 0x7fff_ffff;
            if pid != 0 {
                break pid;
            }
        };
        let wire_pid = wire_pid.unwrap_or(pid);
        let secret = loop {
            let secret: i32 = rand::thread_rng().gen();
            let Ok(mut m) = self.slots.lock() else {
                break secret;
            };
            if let std::collections::hash_map::Entry::Vacant(e) = m.entry((wire_pid, secret)) {
                e.insert(slot.clone());
                break secret;
            }
        };
        CancelKey {
            map: self.clone(),
            pid,
            wire_pid,
            secret,
            slot,
        }
    }

    /// Forwards a cancel for `(pid, secret)`; unknown or forged keys are ignored.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let Some(t) = self.target(pid, secret) else {
            tracing::debug!(pid, "cancel request with unknown key ignored");
            return;
        };
        t.send().await;
    }

    /// The server session a key's client is using now, if the key is known.
    fn target(&self, pid: i32, secret: i32) -> Option<CancelTarget> {
        match self.slots.lock() {
            Ok(m) => m.get(&(pid, secret)).and_then(|slot| slot.target()),
            Err(_) => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(pid: i32) -> CancelTarget {
        let spec = crate::server::ConnectSpec {
            node: "n".into(),
            host: "127.0.0.1".into(),
            port: 1,
            user: "u".into(),
            database: "d".into(),
            credential: crate::server::Credential::None,
            connect_timeout: std::time::Duration::from_secs(1),
            keepalive: false,
            tls: Default::default(),
        };
        CancelTarget {
            spec: Arc::new(spec),
            pid,
            secret: 7,
        }
    }

    #[test]
    fn keys_are_told_apart_by_pid_and_secret() {
        let map = Arc::new(CancelMap::default());
        let issued = map.register();
        // A session-mode client told a backend pid equal to another client's id.
        let real = map.register_as(Some(issued.pid));
        assert_eq!(real.wire_pid, issued.pid);
        assert_ne!(real.pid, issued.pid, "client ids stay unique");
        issued.slot.set(Some(target(100)));
        real.slot.set(Some(target(200)));
        let hit = |k: &CancelKey| map.target(k.wire_pid, k.secret).map(|t| t.pid);
        assert_eq!(hit(&issued), Some(100));
        assert_eq!(hit(&real), Some(200));
        assert!(
            map.target(issued.pid, issued.secret ^ 1).is_none(),
            "forged secret"
        );
        drop(real);
        assert_eq!(hit(&issued), Some(100));
        assert_eq!(map.len(), 1);
    }
}
