//! The key table's types: what a key is ([`Key`]), what it holds ([`Kind`]), what an unset key
//! means ([`Unset`]) and what can change it at run time ([`Change`]); the entries are in
//! [`table`].
//!
//! Every configuration key is declared once, in [`table::KEYS`]: its full name, its kind
//! with bounds, its default, whether RELOAD or SET can change it, a one-line doc, and (for
//! `[pooler]` keys) how `SHOW CONFIG` prints its value. Validation (`config/validate/`) reads
//! defaults and bounds from there, `SHOW CONFIG` and `SET` list and check keys from there,
//! `check-config` prints the doc line beside a problem, and tests check that every raw serde
//! field has an entry and that `docs/configuration.md` lists every entry with its default.
//!
//! # How to add a key
//! 1. Add the field to the raw struct in `config/raw.rs` and the typed field to `model.rs`.
//! 2. Add one entry to its section in `table/` (the file of its group; [`table::KEYS`] reads
//!    them all): `k(name, kind, unset, change, doc)`;
//!    for a `[pooler]` key also `.shown(|c| ...)` so that `SHOW CONFIG` lists it.
//! 3. In the section's file under `config/validate/`, read it with the checker method of its
//!    kind (`c.duration("pooler.x", &p.x)`, `c.count(..)`, ...): the default and the bounds
//!    come from the entry; cross-key checks stay there.
//! 4. Add a row to the section's table in `docs/configuration.md`: the default exactly as
//!    [`Key::doc_default`] spells it and the "changed by" cell as [`Change::doc`] (the test
//!    `docs_list_every_key_with_its_default` says what it expects when they differ).
//! 5. For a key `SET` may change (`Change::Set`), add its assignment in `admin/control.rs`
//!    `apply_set` (a test fails until it is there).
//!
//! `cargo test --lib config` then checks the entry against the raw struct, its default against
//! its kind and bounds, and the docs row against the entry.

pub mod table;

use super::Config;
pub use table::KEYS;

/// What a key holds, with its bounds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Seconds (`5`, `0.25`) or a humantime string (`"250ms"`), at least zero.
    Duration,
    /// Bytes or a string with a unit (`"16MB"`), at least `min`.
    Size { min: u64 },
    /// A whole number in `min..=max`.
    Count { min: i64, max: i64 },
    /// A TCP port, `1..=65535`.
    Port,
    /// `true` or `false`.
    Bool,
    /// Any string.
    Text,
    /// A string that must not be empty when given.
    NonEmpty,
    /// A password or other secret: never shown.
    Secret,
    /// A file or directory; empty means unset.
    Path,
    /// One of the spellings `of`; `what` names the thing in errors ("is not a pool mode").
    Choice {
        what: &'static str,
        of: &'static [&'static str],
    },
    /// A list of strings.
    List,
    /// A list of `http://` URLs; `example` is shown in the hint.
    Urls { example: &'static str },
    /// An IP address, or `"*"` for every IPv4 address.
    Address,
    /// `address:port`.
    Socket,
    /// A fraction: `0..=1` when `zero_ok`, else above 0 and at most 1.
    Fraction { zero_ok: bool },
    /// A rate above zero.
    Rate,
}

impl Kind {
    /// Whether the docs write a default of this kind without quotes (numbers, booleans).
    fn bare(self, value: &str) -> bool {
        match self {
            Self::Count { .. } | Self::Port | Self::Bool | Self::Fraction { .. } | Self::Rate => {
                true
            }
            Self::Duration | Self::Size { .. } => value.chars().all(|c| c.is_ascii_digit()),
            _ => false,
        }
    }
}

/// What a key left out of the file means.
#[derive(Debug, Clone, Copy)]
pub enum Unset {
    /// This value, spelled as in the file (lists: items separated by `,`).
    Value(&'static str),
    /// Nothing: the feature is off or the value absent.
    Absent,
    /// The value of that other key.
    Inherit(&'static str),
    /// Worked out from other settings, as this text says.
    Derived(&'static str),
    /// The key must be given.
    Required,
}

/// What can change a key while the daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Read at start: changing it needs a restart.
    Restart,
    /// A reload (SIGHUP, `RELOAD`) applies it.
    Reload,
    /// A reload, and the console's `SET`.
    Set,
}

impl Change {
    /// The "changed by" cell of `docs/configuration.md`.
    pub fn doc(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Reload => "reload",
            Self::Set => "SET",
        }
    }
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Full name: `pooler.listen_port`, `databases.*.pool_size`, `cluster.nodes[].port`.
    pub name: &'static str,
    pub kind: Kind,
    pub unset: Unset,
    pub change: Change,
    /// One line saying what it does.
    pub doc: &'static str,
    /// How `SHOW CONFIG` prints the value in force (`[pooler]` keys).
    pub show: Option<fn(&Config) -> String>,
}

/// An entry without a `SHOW CONFIG` value.
pub const fn k(
    name: &'static str,
    kind: Kind,
    unset: Unset,
    change: Change,
    doc: &'static str,
) -> Key {
    Key {
        name,
        kind,
        unset,
        change,
        doc,
        show: None,
    }
}

impl Key {
    /// The same entry, listed by `SHOW CONFIG` with this value.
    pub const fn shown(self, show: fn(&Config) -> String) -> Key {
        Key {
            show: Some(show),
            ..self
        }
    }

    /// The name without its section (`listen_port`, `pool_size`, `nodes[].port`).
    pub fn short(&self) -> &'static str {
        let rest = self.name.split_once('.').map_or(self.name, |(_, r)| r);
        rest.strip_prefix("*.").unwrap_or(rest)
    }

    /// The default as `docs/configuration.md` writes it: `` `6432` ``, `` `"5s"` ``,
    /// `` `["search_path"]` ``, `none`, `required`, `` `pooler.x` `` or the derivation text.
    pub fn doc_default(&self) -> String {
        match self.unset {
            Unset::Value(v) if matches!(self.kind, Kind::List | Kind::Urls { .. }) => {
                let items: Vec<String> = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| format!("\"{s}\""))
                    .collect();
                format!("`[{}]`", items.join(", "))
            }
            Unset::Value(v) if self.kind.bare(v) => format!("`{v}`"),
            Unset::Value(v) => format!("`\"{v}\"`"),
            Unset::Absent => "none".into(),
            Unset::Inherit(other) => format!("`{other}`"),
            Unset::Derived(text) => text.into(),
            Unset::Required => "required".into(),
        }
    }
}

/// The entry of `name`, given as a full name (`pooler.x`) or as a path in a file
/// (`databases.app.pool_size`, `cluster.nodes[2].port`, `agent.poolers[1]`).
pub fn find(name: &str) -> Option<&'static Key> {
    let generic = generic_name(name);
    KEYS.iter().find(|k| k.name == generic)
}

/// `databases.app.pool_size` -> `databases.*.pool_size`; `cluster.nodes[2].port` ->
/// `cluster.nodes[].port`; `agent.poolers[1]` -> `agent.poolers`.
fn generic_name(name: &str) -> String {
    for section in ["databases.", "users."] {
        if let Some(rest) = name.strip_prefix(section) {
            if let Some((_, field)) = rest.rsplit_once('.') {
                return format!("{section}*.{field}");
            }
        }
    }
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(ch) = chars.next() {
        out.push(ch);
        if ch == '[' {
            for c in chars.by_ref() {
                if c == ']' {
                    break;
                }
            }
            out.push(']');
        }
    }
    if out.ends_with("[]") && !out.contains("nodes[]") {
        out.truncate(out.len() - 2);
    }
    out
}

/// The `[pooler]` key `SHOW CONFIG` and `SET` know as `short` (`max_client_conn`).
pub fn pooler_key(short: &str) -> Option<&'static Key> {
    KEYS.iter()
        .find(|k| k.show.is_some() && k.name.strip_prefix("pooler.") == Some(short))
}

#[cfg(test)]
mod test;
