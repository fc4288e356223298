//! From PgBouncer's entries to pgsluice's tables: the `[pgbouncer]` settings, the defaults
//! that differ, and the driver that sends `[databases]` and `[users]` to `entries.rs`.

use super::entries;
use super::keys::{self, Kind, Rule};
use super::output::Doc;
use super::parser::Entry;
use super::report::{Outcome, Report};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use toml::Value;

/// The result of an import.
#[derive(Debug, Default)]
pub struct Imported {
    pub doc: Doc,
    pub report: Report,
}

/// Maps every entry; `userlist` replaces the `auth_file` path found in the ini.
pub fn import(ini: &Path, entries: &[Entry], userlist: Option<&Path>) -> Imported {
    let mut im = Imported::default();
    im.doc.preamble = vec![
        format!("pgsluice configuration imported from {}", ini.display()),
        "by `pgsluice import-pgbouncer`; check it with `pgsluice check-config -c FILE`.".into(),
    ];
    im.doc.table("pooler");
    let last = last_of_each(entries);
    let mut auth_file = None;
    let log_stats = !entries.iter().any(|e| {
        e.section == "pgbouncer" && e.key == "log_stats" && parse_bool(&e.value) == Some(false)
    });
    for (i, e) in entries.iter().enumerate() {
        if let Some(&later) = last.get(&(e.section.as_str(), e.key.as_str())) {
            if later != i {
                let by = entries[later].at();
                im.report.add(
                    e.at(),
                    &e.section,
                    &e.key,
                    &e.value,
                    Outcome::Overridden { by },
                );
                continue;
            }
        }
        let outcome = match e.section.as_str() {
            "pgbouncer" => match e.key.as_str() {
                "auth_file" => {
                    auth_file = Some((e.clone(), absolute(ini, &e.value)));
                    continue;
                }
                "log_stats" if log_stats => {
                    Outcome::mapped("nothing to write: a stats line every pooler.stats_period")
                }
                "log_stats" => Outcome::mapped("pooler.stats_period = 0"),
                "stats_period" if !log_stats => Outcome::mapped_note(
                    "pooler.stats_period = 0",
                    "log_stats = 0 turns the periodic stats line off",
                ),
                _ => setting(&mut im.doc, &e.key, &e.value),
            },
            "databases" => {
                entries::database(&mut im.doc, &mut im.report, e);
                continue;
            }
            "users" => {
                entries::user(&mut im.doc, &mut im.report, e);
                continue;
            }
            other => Outcome::unsupported(format!("pgsluice has no [{other}] section"), "drop it"),
        };
        im.report.add(e.at(), &e.section, &e.key, &e.value, outcome);
    }
    if !log_stats {
        im.doc
            .table("pooler")
            .set("stats_period", Value::Integer(0));
    }
    defaults(&mut im, entries);
    auth_query_default(&mut im, entries);
    entries::auth_file(&mut im, auth_file, userlist);
    im
}

/// For each (section, key), the index of its last entry.
fn last_of_each(entries: &[Entry]) -> HashMap<(&str, &str), usize> {
    let mut last = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        last.insert((e.section.as_str(), e.key.as_str()), i);
    }
    last
}

/// One `[pgbouncer]` setting.
fn setting(doc: &mut Doc, key: &str, value: &str) -> Outcome {
    match keys::rule(key) {
        None => Outcome::unsupported(
            "not a PgBouncer 1.2x setting the importer knows",
            "check its meaning in PgBouncer's documentation and docs/configuration.md",
        ),
        Some(Rule::No(why, todo)) => Outcome::unsupported(why, todo),
        Some(Rule::Same(to, kind)) => setting_as(doc, to, kind, value),
        Some(Rule::Special) => special(doc, key, value),
    }
}

/// Writes `[pooler] k = "v"`; returns how the report shows it.
fn put(doc: &mut Doc, k: &str, v: &str) -> String {
    doc.table("pooler").set(k, Value::String(v.to_string()));
    format!("pooler.{k} = {v:?}")
}

/// The settings whose value needs more than a conversion.
fn special(doc: &mut Doc, key: &str, value: &str) -> Outcome {
    match (key, value) {
        ("listen_addr", v) => listen_addr(doc, v),
        ("unix_socket_dir", "") => Outcome::mapped("no Unix socket (pgsluice's default)"),
        ("unix_socket_dir", v) => Outcome::mapped(put(doc, "unix_socket_dir", v)),
        ("pool_mode", v @ ("session" | "transaction" | "statement")) => {
            Outcome::mapped(put(doc, "pool_mode", v))
        }
        ("auth_type", v @ ("md5" | "scram-sha-256" | "trust")) => {
            Outcome::mapped(put(doc, "auth_type", v))
        }
        ("auth_type", "plain") => Outcome::mapped_note(
            put(doc, "auth_type", "md5"),
            "clients answer an md5 challenge instead of sending the password in clear",
        ),
        ("auth_type", "any") => Outcome::mapped_note(
            put(doc, "auth_type", "trust"),
            "pgsluice logs in to the server as the client's user unless the database sets user=",
        ),
        ("auth_type", "hba") => {
            Outcome::mapped("nothing to write: pgsluice follows auth_hba_file whenever it is set")
        }
        ("auth_type", v @ ("cert" | "pam" | "peer")) => Outcome::unsupported(
            format!("auth_type {v} is not implemented"),
            "use md5 or scram-sha-256 (and client_tls_sslmode = verify-ca for client certificates)",
        ),
        ("server_lifetime", v) if v.trim().parse::<f64>() == Ok(0.0) => Outcome::unsupported(
            "PgBouncer's 0 means use each connection once; pgsluice's 0 means never close",
            "use a short server_lifetime, e.g. 1",
        ),
        ("server_lifetime", v) => setting_as(doc, "server_lifetime", Kind::Secs, v),
        ("client_tls_sslmode", "verify-full") => {
            put(doc, "client_tls_sslmode", "verify-full");
            Outcome::unsupported(
                "client_tls_sslmode verify-full (a check of the client certificate's name) is not implemented; it is written anyway so that check-config refuses the file rather than run with weaker TLS",
                "choose verify-ca (or require) in the written file",
            )
        }
        ("client_tls_sslmode", v) => Outcome::mapped(put(doc, "client_tls_sslmode", v)),
        (_, v) => Outcome::unsupported(
            format!("{v:?} is not a value pgsluice knows for {key}"),
            "fix the value",
        ),
    }
}

/// `[pooler] to` converted as `kind`.
fn setting_as(doc: &mut Doc, to: &str, kind: Kind, value: &str) -> Outcome {
    match convert(kind, value) {
        Ok(v) => {
            let shown = format!("pooler.{to} = {v}");
            doc.table("pooler").set(to, v);
            Outcome::mapped(shown)
        }
        Err(why) => Outcome::unsupported(why, "fix the value and import again"),
    }
}

/// `listen_addr`: one address (pgsluice listens on one), `localhost` as the loopback address.
fn listen_addr(doc: &mut Doc, value: &str) -> Outcome {
    let all: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let Some(first) = all.first() else {
        return Outcome::unsupported(
            "PgBouncer listens on no TCP address; pgsluice always listens on one",
            "keep pgsluice's 127.0.0.1, or firewall its port",
        );
    };
    let (addr, mut note) = match *first {
        "*" => ("*".to_string(), None),
        "localhost" => (
            "127.0.0.1".to_string(),
            Some("localhost as 127.0.0.1".to_string()),
        ),
        a if a.parse::<IpAddr>().is_ok() => (a.to_string(), None),
        a => {
            return Outcome::unsupported(
                format!("{a:?} is a host name; pgsluice listens on an IP address"),
                "write the address it resolves to",
            )
        }
    };
    if all.len() > 1 {
        note = Some(format!(
            "only {first}: pgsluice listens on one address (or \"*\"); {} dropped",
            all[1..].join(", ")
        ));
    }
    doc.table("pooler")
        .set("listen_addr", Value::String(addr.clone()));
    match note {
        Some(n) => Outcome::mapped_note(format!("pooler.listen_addr = {addr:?}"), n),
        None => Outcome::mapped(format!("pooler.listen_addr = {addr:?}")),
    }
}

/// Settings the source leaves unset whose defaults differ: PgBouncer's is written, or the
/// report says pgsluice's stays.
fn defaults(im: &mut Imported, entries: &[Entry]) {
    for (key, theirs, ours, write) in keys::DEFAULTS {
        let set = entries
            .iter()
            .any(|e| e.section == "pgbouncer" && e.key == *key);
        if set {
            continue;
        }
        let outcome = match write {
            Some(v) => {
                let value = v
                    .parse::<i64>()
                    .map_or_else(|_| Value::String(v.to_string()), Value::Integer);
                let to = format!("pooler.{key} = {value} written");
                im.doc.table("pooler").set(key, value);
                Outcome::Default {
                    to,
                    note: format!("PgBouncer's default is {theirs}, pgsluice's {ours}"),
                }
            }
            None => Outcome::Default {
                to: "pgsluice's default kept".into(),
                note: format!("PgBouncer's default is {theirs}, pgsluice's {ours}"),
            },
        };
        im.report
            .add("(not set)".into(), "pgbouncer", key, theirs, outcome);
    }
}

/// With `auth_user` set and `auth_query` not: the default queries differ.
fn auth_query_default(im: &mut Imported, entries: &[Entry]) {
    let set = |k: &str| {
        entries
            .iter()
            .any(|e| e.section == "pgbouncer" && e.key == k)
    };
    if !set("auth_user") || set("auth_query") {
        return;
    }
    let outcome = Outcome::Default {
        to: "pgsluice's default kept".into(),
        note: "PgBouncer 1.21+ reads pg_authid (rolname, rolpassword, rolvaliduntil); pgsluice's default reads pg_shadow (usename, passwd) like PgBouncer 1.20 and older; both need a superuser or a SECURITY DEFINER function".into(),
    };
    im.report.add(
        "(not set)".into(),
        "pgbouncer",
        "auth_query",
        "(PgBouncer's default)",
        outcome,
    );
}

/// Converts a PgBouncer value to the TOML value pgsluice reads.
pub fn convert(kind: Kind, value: &str) -> Result<Value, String> {
    let v = value.trim();
    match kind {
        Kind::Int => v
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("{v:?} is not a whole number")),
        Kind::Bool => parse_bool(v)
            .map(Value::Boolean)
            .ok_or_else(|| format!("{v:?} is not a boolean")),
        Kind::Secs => match v.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 && s.fract() == 0.0 => Ok(Value::Integer(s as i64)),
            Ok(s) if s.is_finite() && s >= 0.0 => Ok(Value::Float(s)),
            _ if crate::config::parse_duration(v).is_some() => Ok(Value::String(v.to_string())),
            _ => Err(format!("{v:?} is not a number of seconds")),
        },
        Kind::Text => Ok(Value::String(value.to_string())),
        Kind::List => Ok(Value::Array(
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
    }
}

/// PgBouncer's booleans.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Some(true),
        "0" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

/// A path from the ini, absolute: relative ones are taken from the ini's directory.
pub fn absolute(ini: &Path, value: &str) -> PathBuf {
    let p = Path::new(value);
    match ini.parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}
