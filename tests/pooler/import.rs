//! Round trip of `pgsluice import-pgbouncer`: a PgBouncer configuration for the shared
//! cluster is imported, the written file passes `check-config`, and a pooler started from it
//! serves the same databases to the same users (and refuses a wrong password).

use crate::util::{psql_at, rt, scalar, Fixture, PASSWORD};
use libtest_mimic::Failed;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[("import_pgbouncer_round_trip", round_trip)];

/// Kills the pooler on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The PgBouncer side: databases with connection strings, per-database and per-user pool
/// settings, a `*` fallback, md5 auth with a userlist; `server_tls_sslmode` left to
/// PgBouncer's default.
fn ini(pg: u16, port: u16) -> String {
    format!(
        "[databases]\n\
         imp_app = host=127.0.0.1 port={pg} dbname=app\n\
         imp_pg = host=127.0.0.1 port={pg} dbname=postgres pool_size=2\n\
         imp_session = host=127.0.0.1 port={pg} dbname=app pool_mode=session\n\
         imp_forced = host=127.0.0.1 port={pg} dbname=app user=app password={PASSWORD}\n\
         * = host=127.0.0.1 port={pg}\n\
         [users]\n\
         imp_user = pool_mode=session max_user_connections=4\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = md5\n\
         auth_file = userlist.txt\n\
         pool_mode = transaction\n\
         default_pool_size = 3\n\
         admin_users = app\n\
         logfile = /var/log/pgbouncer.log\n"
    )
}

fn round_trip(fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let port = pgsluice::cluster::ports::free_port()?;
    std::fs::write(
        dir.path().join("pgbouncer.ini"),
        ini(fx.cluster.primary().port(), port),
    )?;
    // A role of this test only; the server stores SCRAM, the userlist a plain password.
    fx.cluster.primary().psql(
        "postgres",
        &format!(
            "do $$ begin create role imp_user login password '{PASSWORD}'; \
             exception when duplicate_object then null; end $$"
        ),
    )?;
    // md5user has an md5 secret (client md5 login) and reaches the server only through
    // imp_forced, which logs in as app.
    let md5 = pgsluice::auth::md5_hex(PASSWORD, "md5user");
    let userlist =
        format!("\"app\" \"{PASSWORD}\"\n\"imp_user\" \"{PASSWORD}\"\n\"md5user\" \"{md5}\"\n");
    std::fs::write(dir.path().join("userlist.txt"), userlist)?;
    let toml = dir.path().join("pgsluice.toml");
    let bin = env!("CARGO_BIN_EXE_pgsluice");
    let out = Command::new(bin)
        .arg("import-pgbouncer")
        .arg(dir.path().join("pgbouncer.ini"))
        .arg("-o")
        .arg(&toml)
        .output()?;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("[databases] * = host=127.0.0.1"),
        "{report}"
    );
    let check = Command::new(bin)
        .arg("check-config")
        .arg("-c")
        .arg(&toml)
        .output()?;
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "ok");
    let log = std::fs::File::create(dir.path().join("pooler.log"))?;
    let _pooler = Running(
        Command::new(bin)
            .args(["pooler", "-c"])
            .arg(&toml)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pgsluice::cluster::ports::is_listening(port) {
        assert!(
            Instant::now() < deadline,
            "the imported pooler did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // (database asked for, user, expected current_user, expected current_database)
    let cases = [
        ("imp_app", "app", "app", "app"),
        ("imp_app", "imp_user", "imp_user", "app"),
        ("imp_pg", "app", "app", "postgres"),
        ("imp_pg", "imp_user", "imp_user", "postgres"),
        ("imp_session", "app", "app", "app"),
        ("imp_session", "imp_user", "imp_user", "app"),
        ("imp_forced", "md5user", "app", "app"),
    ];
    rt().block_on(async {
        for (db, user, want_user, want_db) in cases {
            let url =
                format!("host=127.0.0.1 port={port} user={user} password={PASSWORD} dbname={db}");
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("{db} as {user}: {e:?}"))?;
            let task = tokio::spawn(conn);
            let got = scalar(&c, "select current_user || '/' || current_database()")
                .await
                .map_err(|e| format!("{db} as {user}: {e:?}"))?;
            assert_eq!(got, format!("{want_user}/{want_db}"), "{db} as {user}");
            drop(c);
            let _ = task.await;
        }
        let wrong = format!("host=127.0.0.1 port={port} user=app password=wrong dbname=imp_app");
        let err = tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
            .await
            .err()
            .ok_or("a wrong password was accepted")?;
        let message = err.as_db_error().map(|d| d.message().to_string());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("password authentication failed")),
            "{err:?}"
        );
        Ok::<_, Failed>(())
    })?;
    // The admin console answers the imported admin user and lists the imported databases.
    let (ok, out, err) = psql_at(port, "pgsluice", "app", &["-c", "show databases"]);
    assert!(ok, "{err}");
    for db in ["imp_app", "imp_pg", "imp_session", "imp_forced"] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{db}|"))),
            "{db} in:\n{out}"
        );
    }
    Ok(())
}
