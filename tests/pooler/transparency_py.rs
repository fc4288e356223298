//! The transparency suite's second driver: psycopg 3 (tests/drivers/transparency_psycopg.py)
//! compares client_encoding spellings, a driver-level prepared statement left mid-transaction
//! and settings between direct and pooled connections, and checks session mode's real backend
//! pid (BackendKeyData, NOTIFY sender, cancel). psql covers the same in `psql_sees_the_same`.

use crate::util::{Fixture, PASSWORD};
use libtest_mimic::Failed;
use std::process::Command;

pub const TESTS: &[(&str, crate::Body)] = &[
    ("transparency::psycopg_sees_the_same", psycopg_sees_the_same),
    ("transparency::psql_sees_the_same", psql_sees_the_same),
];

fn url(port: u16, db: &str) -> String {
    format!("postgresql://app:{PASSWORD}@127.0.0.1:{port}/{db}")
}

fn psycopg_sees_the_same(fx: &Fixture) -> Result<(), Failed> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/drivers/transparency_psycopg.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(url(fx.cluster.primary().port(), "app"))
        .arg(url(fx.port, "solo_session"))
        .arg(url(fx.port, "solo"))
        .arg(url(fx.port, "app_session"))
        .arg(url(fx.port, "app"))
        .output()
        .map_err(|e| format!("python3 (installed by .ci/run with psycopg): {e}"))?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.contains("psycopg transparency ok") {
        return Err(text.into());
    }
    Ok(())
}

/// psql with `PGCLIENTENCODING` spellings and a SET in one session, then a second session:
/// the output must equal a direct connection's.
fn psql_sees_the_same(fx: &Fixture) -> Result<(), Failed> {
    let bin = pgsluice::cluster::PgBin::find(None).map_err(|e| e.to_string())?;
    let run = |port: u16, db: &str, enc: &str, sql: &str| -> Result<String, Failed> {
        let out = Command::new(bin.path("psql"))
            .args(["-XAtq", "-d"])
            .arg(format!(
                "host=127.0.0.1 port={port} user=app password={PASSWORD} dbname={db}"
            ))
            .args(["-c", sql])
            .env("PGCLIENTENCODING", enc)
            .output()?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    };
    let steps = [
        ("utf-8", "show client_encoding"),
        ("euc-jp", "\\echo :ENCODING"),
        ("latin1", "show client_encoding"),
        ("UTF8", "set search_path = tr_psql_nowhere"),
        ("UTF8", "show search_path"),
        ("UTF8", "select 1/0"),
    ];
    let direct = fx.cluster.primary().port();
    for db in ["solo", "solo_session"] {
        for (enc, sql) in steps {
            let want = run(direct, "app", enc, sql)?;
            let have = run(fx.port, db, enc, sql)?;
            if want != have {
                return Err(format!("psql {sql:?} ({enc}) via {db}: {have:?} != {want:?}").into());
            }
        }
    }
    Ok(())
}
