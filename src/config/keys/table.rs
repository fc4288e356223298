//! The table of every configuration key, one entry each (data: see the module doc of
//! [`super`] for how to add one), in one file per group of sections; this file holds the
//! kinds and renderings they share.

use super::Change::{Reload, Restart, Set};
use super::Kind::*;
use super::Unset::{Absent, Derived, Inherit, Required, Value};
use super::{k, Key, Kind};
use std::path::PathBuf;

/// Server connections of one pool.
const POOL_SIZE: Kind = Count {
    min: 1,
    max: 100_000,
};
/// Connections kept open, or in reserve.
const POOL_EXTRA: Kind = Count {
    min: 0,
    max: 100_000,
};
/// A connection cap; 0 = none.
const CAP: Kind = Count {
    min: 0,
    max: 1_000_000,
};
const POOL_MODES: Kind = Choice {
    what: "pool mode",
    of: &["session", "transaction", "statement"],
};
const SESSION_FEATURES: Kind = Choice {
    what: "session_features value",
    of: &["pin", "error", "ignore"],
};
const LOG_FORMATS: Kind = Choice {
    what: "log format",
    of: &["text", "json"],
};

/// PgBouncer's default `auth_query`: `pg_shadow` needs a superuser, or a `SECURITY DEFINER`
/// function.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1";

fn secs(d: std::time::Duration) -> String {
    format!("{}", d.as_secs_f64())
}

fn flag(b: bool) -> String {
    u8::from(b).to_string()
}

/// A model enum's configuration spelling from its variant name: `VerifyCa` -> `verify-ca`.
fn spelled(v: impl std::fmt::Debug) -> String {
    let mut out = String::new();
    for (i, ch) in format!("{v:?}").chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

fn path(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

mod agent;
mod objects;
mod pooler_front;
mod pooler_server;

/// Every key, by section.
pub static KEYS: Sections = Sections(&[
    pooler_front::POOLER_FRONT,
    pooler_server::POOLER_SERVER,
    objects::OBJECTS,
    agent::AGENT,
]);

/// The key table: groups of sections, read as one sequence of keys.
#[derive(Debug, Clone, Copy)]
pub struct Sections(&'static [&'static [Key]]);

impl Sections {
    /// Every key, in table order.
    pub fn iter(self) -> impl Iterator<Item = &'static Key> {
        self.0.iter().flat_map(|s| s.iter())
    }

    /// How many keys there are.
    pub fn len(self) -> usize {
        self.0.iter().map(|s| s.len()).sum()
    }

    /// Whether the table is empty (it never is).
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl IntoIterator for Sections {
    type Item = &'static Key;
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'static, &'static [Key]>,
        std::slice::Iter<'static, Key>,
        fn(&&'static [Key]) -> std::slice::Iter<'static, Key>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().flat_map(|s| s.iter())
    }
}
