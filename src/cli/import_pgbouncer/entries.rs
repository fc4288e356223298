//! `[databases]` and `[users]` entries (connection strings) and the `auth_file` userlist.

use super::keys::Kind;
use super::mapping::{convert, Imported};
use super::output::{header, Doc, Table};
use super::parser::{conn_string, Entry};
use super::report::{Outcome, Report};
use crate::auth::userlist::parse_userlist;
use crate::auth::Secret;
use std::path::{Path, PathBuf};
use toml::Value;

/// One `[databases]` entry: `name = host=... dbname=... pool_size=...`.
pub fn database(doc: &mut Doc, report: &mut Report, e: &Entry) {
    let name = e.key.as_str();
    let pairs = match conn_string(&e.value) {
        Ok(p) => p,
        Err(why) => {
            let todo = "fix the entry and import again";
            report.add(
                e.at(),
                "databases",
                name,
                "(unreadable)",
                Outcome::unsupported(why, todo),
            );
            return;
        }
    };
    if name == "*" {
        return wildcard(doc, report, e, &pairs);
    }
    if name.eq_ignore_ascii_case("pgsluice") || name.eq_ignore_ascii_case("pgbouncer") {
        let why = "the name of pgsluice's admin console (pgsluice or pgbouncer)";
        let todo = "rename the database entry";
        report.add(
            e.at(),
            "databases",
            name,
            &e.value,
            Outcome::unsupported(why, todo),
        );
        return;
    }
    let table = doc.table(&header("databases", name));
    let mut has_host = false;
    for (k, v) in &pairs {
        has_host |= k == "host";
        let outcome = database_key(table, name, k, v);
        report.add(e.at(), "databases", &format!("{name} {k}"), v, outcome);
    }
    if !has_host {
        table.set("host", Value::String("127.0.0.1".into()));
        let outcome = Outcome::Default {
            to: format!("databases.{name}.host = \"127.0.0.1\" written"),
            note: "PgBouncer's default is the local Unix socket in a directory compiled into it; set host to that directory (\"/var/run/postgresql\" on Debian) to use the socket, or keep TCP, for which pg_hba.conf must allow host connections from 127.0.0.1".into(),
        };
        report.add(
            e.at(),
            "databases",
            &format!("{name} host"),
            "(not set)",
            outcome,
        );
    }
}

/// One key of a database's connection string.
fn database_key(t: &mut Table, name: &str, k: &str, v: &str) -> Outcome {
    let to = |key: &str| format!("databases.{name}.{key}");
    match k {
        "dbname" | "user" | "password" => put(t, k, Value::String(v.into()), to(k)),
        "host" => host(t, v, to("host")),
        "port" | "pool_size" | "min_pool_size" | "max_db_connections" => int(t, k, v, to(k)),
        "reserve_pool" | "reserve_pool_size" => {
            int(t, "reserve_pool_size", v, to("reserve_pool_size"))
        }
        "pool_mode" => pool_mode(t, v, to("pool_mode")),
        "auth_user" | "auth_query" | "auth_dbname" => Outcome::unsupported(
            format!("pgsluice has one {k}, in [pooler], not one per database"),
            format!("set [pgbouncer] {k} if every database can share it"),
        ),
        "client_encoding" | "datestyle" | "timezone" | "application_name" => Outcome::unsupported(
            format!("no {k} forced per database"),
            format!("ALTER DATABASE ... SET {k} = '{v}' on the server, or set it in the client"),
        ),
        "connect_query" => Outcome::unsupported(
            "no query run on new server connections",
            "ALTER ROLE / ALTER DATABASE ... SET for settings",
        ),
        "server_lifetime" | "max_db_client_connections" => Outcome::unsupported(
            format!("no {k} per database"),
            "use the [pgbouncer] setting if there is one",
        ),
        "load_balance_hosts" => Outcome::unsupported(
            "no load balancing between hosts of one entry",
            "describe the servers as [[cluster.nodes]] and use policy = \"read-only\" for reads",
        ),
        _ => Outcome::unsupported(
            format!("{k} is not a database setting the importer knows"),
            "check PgBouncer's documentation",
        ),
    }
}

fn put(t: &mut Table, key: &str, value: Value, shown: String) -> Outcome {
    let shown = if super::report::is_secret(key) {
        format!("{shown} = (hidden)")
    } else {
        format!("{shown} = {value}")
    };
    t.set(key, value);
    Outcome::mapped(shown)
}

fn int(t: &mut Table, key: &str, v: &str, shown: String) -> Outcome {
    match convert(Kind::Int, v) {
        Ok(value) => put(t, key, value, shown),
        Err(why) => Outcome::unsupported(why, "fix the value"),
    }
}

fn pool_mode(t: &mut Table, v: &str, shown: String) -> Outcome {
    match v {
        "session" | "transaction" | "statement" => {
            put(t, "pool_mode", Value::String(v.into()), shown)
        }
        _ => Outcome::unsupported(format!("{v:?} is not a pool mode"), "fix the value"),
    }
}

/// `host=`: one TCP host or Unix-socket directory; an abstract socket or a list of hosts
/// becomes its nearest equivalent with a note.
fn host(t: &mut Table, v: &str, shown: String) -> Outcome {
    let first = v.split(',').next().unwrap_or_default().trim();
    if first.starts_with('@') {
        put(t, "host", Value::String("127.0.0.1".into()), shown.clone());
        return Outcome::mapped_note(
            format!("{shown} = \"127.0.0.1\""),
            format!("{v} is an abstract Unix socket, which pgsluice does not connect to; it connects over TCP, so pg_hba.conf must allow host connections from 127.0.0.1"),
        );
    }
    let out = put(t, "host", Value::String(first.into()), shown.clone());
    if v.contains(',') {
        return Outcome::mapped_note(
            format!("{shown} = {first:?}"),
            "only the first host: describe several servers as [[cluster.nodes]] instead",
        );
    }
    out
}

/// `* = ...`: kept as a comment; pgsluice has no fallback database yet.
fn wildcard(doc: &mut Doc, report: &mut Report, e: &Entry, pairs: &[(String, String)]) {
    doc.trailer.push(format!(
        "PgBouncer's fallback database \"*\" ({}) is not supported yet;",
        e.at()
    ));
    doc.trailer
        .push("list every database under [databases]. The entry as read:".into());
    doc.trailer.push("[databases.\"*\"]".into());
    for (k, v) in pairs {
        let shown = if super::report::is_secret(k) {
            "\"(hidden)\"".to_string()
        } else if let Ok(n) = v.parse::<i64>() {
            n.to_string()
        } else {
            Value::String(v.clone()).to_string()
        };
        doc.trailer.push(format!("{k} = {shown}"));
    }
    let why = "pgsluice has no fallback database \"*\" yet";
    let todo = "add a [databases.NAME] table for each database clients use (the entry is kept as a comment at the end of the file)";
    let shown = super::report::hide_secrets(pairs);
    report.add(
        e.at(),
        "databases",
        "*",
        &shown,
        Outcome::unsupported(why, todo),
    );
}

/// One `[users]` entry: `name = pool_mode=... max_user_connections=...`.
pub fn user(doc: &mut Doc, report: &mut Report, e: &Entry) {
    let name = e.key.as_str();
    let pairs = match conn_string(&e.value) {
        Ok(p) => p,
        Err(why) => {
            let todo = "fix the entry and import again";
            report.add(
                e.at(),
                "users",
                name,
                "(unreadable)",
                Outcome::unsupported(why, todo),
            );
            return;
        }
    };
    let table = doc.table(&header("users", name));
    for (k, v) in &pairs {
        let to = format!("users.{name}.{k}");
        let outcome = match k.as_str() {
            "pool_mode" => pool_mode(table, v, to),
            "pool_size" | "max_user_connections" => int(table, k, v, to),
            _ => Outcome::unsupported(
                format!("no {k} per user"),
                "use the [pgbouncer] setting if there is one",
            ),
        };
        report.add(e.at(), "users", &format!("{name} {k}"), v, outcome);
    }
}

/// `auth_file` (or `--userlist`): pgsluice reads the same format, so the file is named as is;
/// each user is reported, secrets hidden.
pub fn auth_file(im: &mut Imported, found: Option<(Entry, PathBuf)>, given: Option<&Path>) {
    let (at, path) = match (given, &found) {
        (Some(p), _) => ("--userlist".to_string(), absolute_now(p)),
        (None, Some((e, p))) => (e.at(), p.clone()),
        (None, None) => return,
    };
    if let (Some(_), Some((e, _))) = (given, &found) {
        let outcome = Outcome::Overridden {
            by: "--userlist".into(),
        };
        im.report
            .add(e.at(), "pgbouncer", "auth_file", &e.value, outcome);
    }
    let shown = path.display().to_string();
    im.doc
        .table("pooler")
        .set("auth_file", Value::String(shown.clone()));
    let users = std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| parse_userlist(&text).map_err(|e| e.to_string()));
    let users = match users {
        Ok(u) => u,
        Err(why) => {
            let outcome = Outcome::unsupported(
                format!("pooler.auth_file = {shown:?} written, but it cannot be read: {why}"),
                "fix the file (check-config reports it too)",
            );
            im.report.add(at, "pgbouncer", "auth_file", &shown, outcome);
            return;
        }
    };
    let outcome = Outcome::mapped_note(
        format!("pooler.auth_file = {shown:?}"),
        format!("{} users; pgsluice reads the same format", users.len()),
    );
    im.report.add(at, "pgbouncer", "auth_file", &shown, outcome);
    for (i, (user, secret)) in users.iter().enumerate() {
        let kind = match secret {
            Secret::Plain(_) => "plain password",
            Secret::Md5(_) => "md5 secret",
            Secret::Scram(_) => "SCRAM secret",
        };
        let outcome = Outcome::mapped(format!("logs in with its {kind} from auth_file"));
        let line = format!("{} entry {}", path.display(), i + 1);
        im.report.add(line, "userlist", user, "(hidden)", outcome);
    }
}

/// `p` made absolute against the current directory (the written file may be used elsewhere).
fn absolute_now(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
