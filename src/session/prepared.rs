//! Named prepared statements in transaction and statement modes: the pooler-wide registry of
//! server-side statements and each client's own names for them.
//!
//! A client's `Parse` of a named statement maps its name to a [`Stmt`] found (or created) in the
//! [`Registry`] by query text and parameter types, so every client preparing the same statement
//! shares one server-side name (`pgsl_<id>`). Whichever server connection serves the client's
//! transaction gets that statement prepared lazily (see [`super::prepared_flow`]); the set each
//! connection holds is [`crate::server::prepared::ServerStatements`].

use bytes::BufMut;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// One statement as the servers know it.
#[derive(Debug)]
pub struct Stmt {
    /// Registry id; the server-side name is derived from it.
    pub id: u64,
    /// Server-side name (ASCII, no NUL).
    pub name: Box<[u8]>,
    /// A whole Parse frame creating `name`, ready to inject.
    pub parse: Box<[u8]>,
}

impl Stmt {
    fn new(id: u64, key: &[u8]) -> Self {
        let name = format!("pgsl_{id}").into_bytes().into_boxed_slice();
        let mut parse = bytes::BytesMut::with_capacity(key.len() + name.len() + 6);
        parse.put_u8(crate::proto::tags::frontend::PARSE);
        let len = 4 + name.len() + 1 + key.len();
        parse.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
        parse.put_slice(&name);
        parse.put_u8(0);
        parse.put_slice(key);
        Self {
            id,
            name,
            parse: parse.to_vec().into_boxed_slice(),
        }
    }
}

/// Counters over all clients (read by the console and metrics).
#[derive(Debug, Default)]
pub struct PreparedTotals {
    /// Parse messages the pooler sent because a server lacked a statement.
    pub prepares: AtomicU64,
    /// Uses of a named statement that the server already had (no Parse needed).
    pub hits: AtomicU64,
    /// Statements closed on a server to stay within `max_prepared_statements`.
    pub evictions: AtomicU64,
    /// Executions retried after `cached plan must not change result type`.
    pub retries: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Box<[u8]>, Weak<Stmt>>,
    /// Prune dead entries when the map grows past this.
    prune_at: usize,
}

/// Every statement some client has prepared, keyed by query text and parameter types.
///
/// Entries live as long as a client maps a name to them; the lock is taken once per client
/// `Parse`, never per execution.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    pub totals: PreparedTotals,
}

impl Registry {
    /// The statement for `key`: the bytes of a Parse body after the statement name (query text,
    /// NUL, parameter count and type oids);
    /// `None` when `key` is new and `max` statements are in use.
    pub fn try_get_or_create(&self, key: &[u8], max: usize) -> Option<Arc<Stmt>> {
        let mut inner = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(s) = inner.map.get(key).and_then(Weak::upgrade) {
            return Some(s);
        }
        if inner.map.len() >= max {
            inner.map.retain(|_, w| w.strong_count() > 0);
            if inner.map.len() >= max {
                return None;
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let stmt = Arc::new(Stmt::new(id, key));
        inner.map.insert(key.into(), Arc::downgrade(&stmt));
        if inner.map.len() > inner.prune_at {
            inner.map.retain(|_, w| w.strong_count() > 0);
            inner.prune_at = (inner.map.len() * 2).max(1024);
        }
        Some(stmt)
    }

    /// Statements some client still uses.
    pub fn len(&self) -> usize {
        match self.inner.lock() {
            Ok(g) => g.map.values().filter(|w| w.strong_count() > 0).count(),
            Err(_) => 0,
        }
    }

    /// Whether no client uses any statement.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A client's named statements: its names mapped to shared statements.
#[derive(Debug, Default)]
pub struct ClientStatements {
    map: HashMap<Box<[u8]>, Arc<Stmt>>,
}

impl ClientStatements {
    /// The statement the client calls `name`.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Stmt>> {
        self.map.get(name)
    }

    /// Maps `name` (which must be new) to `stmt`.
    pub fn insert(&mut self, name: &[u8], stmt: Arc<Stmt>) {
        self.map.insert(name.into(), stmt);
    }

    /// Forgets `name`, returning what it meant.
    pub fn remove(&mut self, name: &[u8]) -> Option<Arc<Stmt>> {
        self.map.remove(name)
    }

    /// Forgets every name (`DEALLOCATE ALL`, `DISCARD ALL`).
    pub fn clear(&mut self) {
        self.map = HashMap::new();
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the client has no named statement.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_and_types_share_a_statement() {
        let r = Registry::default();
        let a = r
            .try_get_or_create(b"select $1\0\0\x01\0\0\0\x17", usize::MAX)
            .unwrap();
        let b = r
            .try_get_or_create(b"select $1\0\0\x01\0\0\0\x17", usize::MAX)
            .unwrap();
        let c = r
            .try_get_or_create(b"select $1\0\0\x01\0\0\0\x14", usize::MAX)
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_ne!(a.id, c.id);
        assert_eq!(&*a.name, format!("pgsl_{}", a.id).as_bytes());
        let parse = crate::proto::views::parse_msg(&a.parse[5..]).unwrap();
        assert_eq!(parse.name.as_bytes(), &*a.name);
        assert_eq!(parse.query, "select $1");
        assert_eq!(parse.param_types.collect::<Vec<_>>(), vec![23]);
        assert_eq!(r.len(), 2);
        drop((a, b));
        assert_eq!(r.len(), 1);
        let again = r
            .try_get_or_create(b"select $1\0\0\x01\0\0\0\x17", usize::MAX)
            .unwrap();
        assert_ne!(again.id, c.id);
    }

    #[test]
    fn the_total_cap_counts_statements_in_use() {
        let r = Registry::default();
        let a = r.try_get_or_create(b"select 1\0\0\0", 2).unwrap();
        let b = r.try_get_or_create(b"select 2\0\0\0", 2).unwrap();
        // A third distinct statement is refused; a known one is still found.
        assert!(r.try_get_or_create(b"select 3\0\0\0", 2).is_none());
        assert!(r.try_get_or_create(b"select 1\0\0\0", 2).is_some());
        // Once a statement is no longer used, its place is free.
        drop(b);
        assert!(r.try_get_or_create(b"select 3\0\0\0", 2).is_some());
        drop(a);
    }
}
