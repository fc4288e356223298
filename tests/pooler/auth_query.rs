//! `auth_query` (users known only to the server) and SCRAM pass-through (a SCRAM secret is
//! all the pooler knows, no plaintext anywhere), each on a pooler of its own.

use crate::util::{ExtraPooler, Fixture};
use libtest_mimic::Failed;
use std::time::Duration;

pub const TESTS: &[(&str, crate::Body)] = &[
    ("auth_query::password_changed_on_server", password_changed),
    (
        "auth_query::scram_pass_through_from_auth_file",
        pass_through,
    ),
];

/// psql as `user` with `password` on `port`; (success, stdout, stderr).
fn psql(
    port: u16,
    user: &str,
    password: &str,
    sql: &str,
) -> Result<(bool, String, String), Failed> {
    let bin = pgsluice::cluster::PgBin::find(None)?;
    let out = std::process::Command::new(bin.path("psql"))
        .env_remove("PGPASSWORD")
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!(
            "host=127.0.0.1 port={port} user={user} password={password} dbname=app"
        ))
        .args(["-c", sql])
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

fn password_changed(fx: &Fixture) -> Result<(), Failed> {
    let pg = fx.cluster.primary();
    pg.psql(
        "app",
        "drop role if exists aq_user; create role aq_user login password 'first-pw';\n\
         create or replace function aq_lookup(u text, out usename name, out passwd text)\n\
         returns setof record language sql security definer\n\
         as $$ select rolname, rolpassword from pg_authid where rolname = u $$;\n\
         revoke all on function aq_lookup(text) from public;\n\
         grant execute on function aq_lookup(text) to app;",
    )?;
    let p = ExtraPooler::start(
        fx,
        "auth_user = \"app\"\nauth_query = \"select * from aq_lookup($1)\"\nauth_cache_ttl = \"1s\"",
        "",
    );
    let sql = "select current_user, 40 + 2";
    let (ok, out, err) = psql(p.port, "aq_user", "first-pw", sql)?;
    assert!(ok && out == "aq_user|42", "{out} {err}");
    let (ok, _, err) = psql(p.port, "aq_user", "wrong", sql)?;
    assert!(
        !ok && err.contains("password authentication failed"),
        "{err}"
    );
    let (ok, _, err) = psql(p.port, "nobody_here", "first-pw", sql)?;
    assert!(
        !ok && err.contains("password authentication failed"),
        "{err}"
    );
    pg.psql("app", "alter role aq_user password 'second-pw'")?;
    std::thread::sleep(Duration::from_millis(1300));
    let (ok, out, err) = psql(p.port, "aq_user", "second-pw", sql)?;
    assert!(ok && out == "aq_user|42", "new password: {out} {err}");
    let (ok, _, err) = psql(p.port, "aq_user", "first-pw", sql)?;
    assert!(
        !ok && err.contains("password authentication failed"),
        "old password: {err}"
    );
    Ok(())
}

fn pass_through(fx: &Fixture) -> Result<(), Failed> {
    let pg = fx.cluster.primary();
    pg.psql(
        "postgres",
        "drop role if exists pt_user; set password_encryption = 'scram-sha-256';\n\
         create role pt_user login password 'only-in-the-client';\n\
         grant connect on database app to pt_user;",
    )?;
    let secret = pg.psql(
        "postgres",
        "select rolpassword from pg_authid where rolname = 'pt_user'",
    )?;
    let secret = secret.trim();
    assert!(secret.starts_with("SCRAM-SHA-256$"), "{secret}");
    let files = tempfile::tempdir()?;
    let userlist = files.path().join("users.txt");
    std::fs::write(&userlist, format!("\"pt_user\" \"{secret}\"\n"))?;
    let p = ExtraPooler::start(fx, &format!("auth_file = \"{}\"", userlist.display()), "");
    for path in [&p.config_path, &userlist] {
        let text = std::fs::read_to_string(path)?;
        assert!(!text.contains("only-in-the-client"), "{}", path.display());
    }
    let sql = "select current_user, count(*) from generate_series(1, 5)";
    for _ in 0..2 {
        let (ok, out, err) = psql(p.port, "pt_user", "only-in-the-client", sql)?;
        assert!(ok && out == "pt_user|5", "{out} {err}");
    }
    let (ok, _, err) = psql(p.port, "pt_user", "guess", sql)?;
    assert!(
        !ok && err.contains("password authentication failed"),
        "{err}"
    );
    Ok(())
}
