//! Tests of the key table: every default parses within its bounds, every raw serde field has
//! an entry (and every entry a field), and `docs/configuration.md` lists every entry with its
//! default and what changes it.

use super::*;
use crate::config::raw::*;
use crate::config::ServerTlsMode;
use crate::config::{parse_bytes, parse_duration, AuthType, LogFormat, PoolMode, PrewarmMode};
use serde::de::{self, Deserialize, Visitor};
use std::collections::{BTreeMap, BTreeSet};

/// A deserializer that only records the field names a struct asks for.
struct FieldNames(&'static [&'static str]);

impl<'de> de::Deserializer<'de> for &mut FieldNames {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields;
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The serde field names of `T` (as written in the file).
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut names = FieldNames(&[]);
    let _ = T::deserialize(&mut names);
    names.0
}

/// Every key the raw structs accept, as full table names; sub-tables are left out.
fn raw_keys() -> BTreeSet<String> {
    let sections: [(&str, &[&str]); 8] = [
        ("pooler.", fields::<RawPooler>()),
        ("databases.*.", fields::<RawDatabase>()),
        ("users.*.", fields::<RawUser>()),
        ("cluster.", fields::<RawCluster>()),
        ("cluster.nodes[].", fields::<RawNode>()),
        ("agent.", fields::<RawAgent>()),
        ("metrics.", fields::<RawMetrics>()),
        ("control.", fields::<RawControl>()),
    ];
    let mut out = BTreeSet::new();
    for (prefix, names) in sections {
        assert!(!names.is_empty(), "no fields found for {prefix}");
        for name in names {
            if format!("{prefix}{name}") != "cluster.nodes" {
                out.insert(format!("{prefix}{name}"));
            }
        }
    }
    out
}

#[test]
fn every_raw_field_has_an_entry_and_every_entry_a_field() {
    let top = fields::<RawConfig>();
    assert_eq!(
        top,
        [
            "pooler",
            "databases",
            "users",
            "cluster",
            "agent",
            "metrics",
            "control"
        ],
        "a new section needs its prefix in raw_keys()"
    );
    let raw = raw_keys();
    let table: BTreeSet<String> = KEYS.iter().map(|k| k.name.to_string()).collect();
    let missing: Vec<_> = raw.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "raw fields without a table entry: {missing:?}"
    );
    let extra: Vec<_> = table.difference(&raw).collect();
    assert!(
        extra.is_empty(),
        "table entries that are no raw field: {extra:?}"
    );
    assert_eq!(table.len(), KEYS.len(), "a key is declared twice");
}

/// Whether the table's default of `key` parses as its kind and lies within its bounds.
fn default_fits(key: &Key, v: &str) -> bool {
    match key.kind {
        Kind::Duration => parse_duration(v).is_some(),
        Kind::Size { min } => parse_bytes(v).is_some_and(|n| n >= min),
        Kind::Count { min, max } => v.parse::<i64>().is_ok_and(|n| (min..=max).contains(&n)),
        Kind::Port => v.parse::<u16>().is_ok_and(|n| n > 0),
        Kind::Bool => v.parse::<bool>().is_ok(),
        Kind::Choice { of, .. } => of.contains(&v),
        Kind::Socket => v.parse::<std::net::SocketAddr>().is_ok(),
        Kind::Address => v == "*" || v.parse::<std::net::IpAddr>().is_ok(),
        Kind::Fraction { zero_ok } => v
            .parse::<f64>()
            .is_ok_and(|x| x <= 1.0 && (x > 0.0 || (zero_ok && x == 0.0))),
        Kind::Rate => v.parse::<f64>().is_ok_and(|x| x > 0.0),
        Kind::NonEmpty => !v.is_empty(),
        Kind::Urls { .. } => v
            .split(',')
            .all(|u| u.is_empty() || u.starts_with("http://")),
        Kind::Text | Kind::Secret | Kind::Path | Kind::List => true,
    }
}

#[test]
fn every_default_parses_within_its_bounds() {
    for key in KEYS {
        assert!(!key.doc.is_empty(), "{} has no doc line", key.name);
        match key.unset {
            Unset::Value(v) => assert!(default_fits(key, v), "{}: default {v:?}", key.name),
            Unset::Inherit(other) => {
                let o = find(other).unwrap_or_else(|| panic!("{}: no {other}", key.name));
                assert!(matches!(o.unset, Unset::Value(_)), "{other} has no value");
            }
            Unset::Absent | Unset::Derived(_) | Unset::Required => {}
        }
        assert!(
            matches!(key.kind, Kind::Secret) <= key.show.is_none(),
            "{} is a secret shown by SHOW CONFIG",
            key.name
        );
        let pooler = key.name.starts_with("pooler.");
        assert_eq!(
            pooler,
            key.show.is_some(),
            "{}: SHOW CONFIG lists [pooler] keys",
            key.name
        );
        assert!(
            pooler || key.change != Change::Set,
            "{}: SET is for [pooler]",
            key.name
        );
    }
}

#[test]
fn choices_are_the_models_spellings() {
    let of = |name: &str| match find(name).map(|k| k.kind) {
        Some(Kind::Choice { of, .. }) => of,
        other => panic!("{name}: {other:?}"),
    };
    for s in of("pooler.pool_mode") {
        assert_eq!(PoolMode::parse(s).map(PoolMode::as_str), Some(*s));
    }
    for s in of("pooler.auth_type") {
        assert_eq!(AuthType::parse(s).map(AuthType::as_str), Some(*s));
    }
    for s in of("pooler.server_tls_sslmode") {
        assert!(ServerTlsMode::parse(s).is_some(), "{s}");
    }
    for s in of("agent.prewarm_mode") {
        assert_eq!(PrewarmMode::parse(s).map(PrewarmMode::as_str), Some(*s));
    }
    for s in of("pooler.log_format") {
        assert!(LogFormat::parse(s).is_some(), "{s}");
    }
    assert_eq!(of("databases.*.pool_mode"), of("users.*.pool_mode"));
}

#[test]
fn paths_in_a_file_find_their_entry() {
    for (path, name) in [
        ("pooler.listen_port", "pooler.listen_port"),
        ("databases.app.pool_size", "databases.*.pool_size"),
        ("databases.a.b.policy", "databases.*.policy"),
        ("users.bob.pool_mode", "users.*.pool_mode"),
        ("cluster.nodes[12].port", "cluster.nodes[].port"),
        ("agent.poolers[3]", "agent.poolers"),
    ] {
        assert_eq!(find(path).map(|k| k.name), Some(name), "{path}");
    }
    assert!(find("pooler.nope").is_none());
    assert!(find("databases.app").is_none());
    assert_eq!(
        pooler_key("listen_port").map(|k| k.name),
        Some("pooler.listen_port")
    );
    assert!(pooler_key("pool_size").is_none());
}

/// `(full key name, (default cell, changed-by cell))` of every row of the docs' key tables.
fn documented(text: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let mut prefix = None;
    for line in text.lines() {
        if let Some(head) = line.strip_prefix("## ") {
            // "## `[pooler]`", "## `[databases.NAME]`", "## `[[cluster.nodes]]`"
            prefix = head.split('`').nth(1).map(|s| {
                let nodes = s.starts_with("[[");
                let s = s
                    .trim_matches(|c| c == '[' || c == ']')
                    .replace(".NAME", ".*");
                format!("{s}{}.", if nodes { "[]" } else { "" })
            });
            continue;
        }
        let (Some(prefix), Some(row)) = (&prefix, line.strip_prefix("| `")) else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        let (Some(name), Some(default), Some(change)) =
            (cells[0].strip_suffix('`'), cells.get(1), cells.get(2))
        else {
            panic!("row without a single key, a default and what changes it: {line}");
        };
        let full = format!("{prefix}{name}");
        let cells = (default.to_string(), change.to_string());
        assert!(out.insert(full.clone(), cells).is_none(), "{full} twice");
    }
    out
}

#[test]
fn docs_list_every_key_with_its_default() {
    let docs = documented(include_str!("../../../docs/configuration.md"));
    let mut wrong = Vec::new();
    for key in KEYS {
        match docs.get(key.name) {
            None => wrong.push(format!("{} is missing", key.name)),
            Some((d, _)) if *d != key.doc_default() => wrong.push(format!(
                "{}: docs say {d}, the table says {}",
                key.name,
                key.doc_default()
            )),
            Some((_, c)) if c != key.change.doc() => wrong.push(format!(
                "{}: docs say changed by {c}, the table says {}",
                key.name,
                key.change.doc()
            )),
            Some(_) => {}
        }
    }
    for name in docs.keys() {
        if KEYS.iter().all(|k| k.name != name) {
            wrong.push(format!("{name} is documented but is no key"));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/configuration.md:\n{}",
        wrong.join("\n")
    );
}

/// The table's default of `key` as a TOML value of the type the raw struct reads.
fn toml_default(key: &Key, v: &str) -> toml::Value {
    use toml::Value as T;
    let num = |v: &str| v.parse::<i64>().expect("count");
    match key.kind {
        Kind::Count { .. } | Kind::Port => T::Integer(num(v)),
        Kind::Bool => T::Boolean(v == "true"),
        Kind::Fraction { .. } | Kind::Rate => T::Float(v.parse().expect("float")),
        Kind::List | Kind::Urls { .. } => T::Array(
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| T::String(s.into()))
                .collect(),
        ),
        _ => T::String(v.into()),
    }
}

#[test]
fn writing_every_default_explicitly_changes_nothing() {
    let base = r#"
[pooler]
auth_user = "bob"
[databases.app]
host = "127.0.0.1"
[users.bob]
password = "secret"
[cluster]
[[cluster.nodes]]
name = "a"
[agent]
state_store = "etcd"
etcd_endpoints = ["http://127.0.0.1:2379"]
[metrics]
[control]
"#;
    let mut full: toml::Table = toml::from_str(base).unwrap();
    let mut written = 0;
    for key in KEYS {
        let Unset::Value(v) = key.unset else { continue };
        let (section, field) = key.name.split_once('.').unwrap();
        let table = full[section].as_table_mut().unwrap();
        let table = match field.split_once('.') {
            Some(("*", f)) => {
                let (_, entry) = table.iter_mut().next().unwrap();
                (entry.as_table_mut().unwrap(), f)
            }
            Some(("nodes[]", f)) => {
                let nodes = table["nodes"].as_array_mut().unwrap();
                (nodes[0].as_table_mut().unwrap(), f)
            }
            _ => (table, field),
        };
        let (table, field) = table;
        if !table.contains_key(field) {
            table.insert(field.into(), toml_default(key, v));
            written += 1;
        }
    }
    let values = KEYS
        .iter()
        .filter(|k| matches!(k.unset, Unset::Value(_)))
        .count();
    assert_eq!(
        written,
        values - 1,
        "every default but agent.state_store (set in base)"
    );
    let text = toml::to_string(&full).unwrap();
    let explicit = crate::config::from_str(&text, "full").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let implicit = crate::config::from_str(base, "base").unwrap();
    assert_eq!(format!("{explicit:?}"), format!("{implicit:?}"), "{text}");
}

#[test]
fn show_config_prints_every_choice_as_spelled_in_the_file() {
    let files = "client_tls_cert_file = \"c\"\nclient_tls_key_file = \"k\"\n\
                 client_tls_ca_file = \"a\"\nserver_tls_ca_file = \"a\"\n";
    for key in KEYS {
        let (Some(show), Kind::Choice { of, .. }) = (key.show, key.kind) else {
            continue;
        };
        for choice in of {
            let text = format!("[pooler]\n{}{} = \"{choice}\"\n", files, key.short());
            let c = crate::config::from_str(&text, "t").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(show(&c), *choice, "{}", key.name);
        }
    }
}
