//! Session parameters: interned sets, and the SQL that brings a server session in line with a client.
//!
//! Clients with the same parameters share one `Arc<ParamSet>`, so an idle client costs a pointer
//! and the common check-out case (same set as the server already has) is a pointer comparison.

use crate::quote::{sql_ident, sql_literal};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Reported parameters the pooler keeps in step between a client and its server sessions.
pub const TRACKED_REPORTED: &[&str] = &[
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "standard_conforming_strings",
    "application_name",
];

/// An immutable, sorted set of `name = value` settings.
#[derive(Debug, Default, PartialEq, Eq, Hash, Clone)]
pub struct ParamSet {
    entries: Vec<(Box<str>, Box<str>)>,
}

impl ParamSet {
    /// Builds a set; later duplicates of a name (case-insensitive) win.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut entries: Vec<(Box<str>, Box<str>)> = Vec::new();
        for (k, v) in pairs {
            match entries.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&k)) {
                Some(e) => e.1 = v.into(),
                None => entries.push((k.into(), v.into())),
            }
        }
        entries.sort_by_key(|(k, _)| k.to_ascii_lowercase());
        Self { entries }
    }

    /// The value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    /// Every entry in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (&**k, &**v))
    }

    /// This set with `name` set to `value`.
    pub fn with(&self, name: &str, value: &str) -> Self {
        let pairs = self.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Self::new(pairs.chain(std::iter::once((name.to_string(), value.to_string()))))
    }

    /// Interns the set: equal sets share one allocation while any holder lives.
    pub fn intern(self) -> Arc<ParamSet> {
        static TABLE: OnceLock<Mutex<HashMap<ParamSet, Weak<ParamSet>>>> = OnceLock::new();
        let table = TABLE.get_or_init(Default::default);
        let mut map = match table.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(existing) = map.get(&self).and_then(Weak::upgrade) {
            return existing;
        }
        if map.len() > 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let arc = Arc::new(self.clone());
        map.insert(self, Arc::downgrade(&arc));
        arc
    }
}

/// Appends to `sql` the statements that move a server session from `have` to `want`.
///
/// Uses `set_config()` so that list-valued settings such as `search_path` are parsed as they
/// would be from a startup packet; names the client never set are `RESET`.
pub fn sync_sql(have: &ParamSet, want: &ParamSet, sql: &mut String) {
    // Timeouts last, so that a client's short statement_timeout cannot cut the sync itself.
    let timeout = |k: &str| k.to_ascii_lowercase().ends_with("_timeout");
    let ordered = want
        .iter()
        .filter(|(k, _)| !timeout(k))
        .chain(want.iter().filter(|(k, _)| timeout(k)));
    for (k, v) in ordered {
        if have.get(k) != Some(v) {
            let _ = write!(
                sql,
                "SELECT pg_catalog.set_config({}, {}, false);",
                sql_literal(k),
                sql_literal(v)
            );
        }
    }
    for (k, _) in have.iter() {
        if want.get(k).is_none() {
            let _ = write!(sql, "RESET {};", sql_ident(k));
        }
    }
}

/// Splits a startup `options` value (`-c a=b --c=d`, backslash escapes spaces) into settings.
pub fn parse_options(options: &str) -> Result<Vec<(String, String)>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()
                .ok_or_else(|| "\"-c\" without a setting".to_string())?
        } else if let Some(rest) = w.strip_prefix("-c").or_else(|| w.strip_prefix("--")) {
            rest.to_string()
        } else {
            return Err(format!("invalid command-line argument {w:?}"));
        };
        let (k, v) = setting
            .split_once('=')
            .ok_or_else(|| format!("setting {setting:?} has no value"))?;
        out.push((k.replace('-', "_"), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_shares_equal_sets() {
        let a = ParamSet::new([("TimeZone".into(), "UTC".into())]).intern();
        let b = ParamSet::new([("TimeZone".into(), "UTC".into())]).intern();
        let c = ParamSet::new([("TimeZone".into(), "CET".into())]).intern();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn sync_sets_changes_and_resets_extras() {
        let have = ParamSet::new([("a".into(), "1".into()), ("b".into(), "2".into())]);
        let want = ParamSet::new([("a".into(), "1".into()), ("c".into(), "it's".into())]);
        let mut sql = String::new();
        sync_sql(&have, &want, &mut sql);
        assert_eq!(
            sql,
            "SELECT pg_catalog.set_config('c', 'it''s', false);RESET \"b\";"
        );
        let mut none = String::new();
        sync_sql(&want, &want, &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn options_are_split() {
        let o =
            parse_options(r"-c statement_timeout=5s --search-path=a\ b -cwork_mem=4MB").unwrap();
        assert_eq!(
            o,
            vec![
                ("statement_timeout".into(), "5s".into()),
                ("search_path".into(), "a b".into()),
                ("work_mem".into(), "4MB".into())
            ]
        );
        assert!(parse_options("-x").is_err());
        assert!(parse_options("-c").is_err());
        assert!(parse_options("-c novalue").is_err());
    }

    #[test]
    fn sync_quotes_names_and_values() {
        let have = ParamSet::new([("work_mem".to_string(), "4MB".to_string())]);
        let want = ParamSet::new([("application_name".to_string(), r"it's a\b".to_string())]);
        let mut sql = String::new();
        sync_sql(&have, &want, &mut sql);
        assert_eq!(
            sql,
            r"SELECT pg_catalog.set_config('application_name',  E'it''s a\\b', false);RESET "
                .to_string()
                + "\"work_mem\";"
        );
    }
}
