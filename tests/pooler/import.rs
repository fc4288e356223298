//! Round trip of `pgsluice import-pgbouncer`: one PgBouncer configuration for the shared
//! cluster is served by PgBouncer itself and, imported, by pgsluice. The imported file passes
//! `check-config`; both poolers serve the same databases to the same users (and refuse a wrong
//! password); Munin's PgBouncer plugins give the same fields against both, none negative. The
//! one difference is the `*` fallback database, which pgsluice does not have yet.

use crate::console::{munin, munin_values};
use crate::util::{psql_at, rt, scalar, Fixture, PASSWORD};
use libtest_mimic::Failed;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[("import_pgbouncer_round_trip", round_trip)];

/// Kills the process on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The PgBouncer configuration: databases with connection strings, per-database and per-user
/// pool settings, a `*` fallback, md5 auth with a userlist; `server_tls_sslmode` left to
/// PgBouncer's default.
fn ini(pg: u16, port: u16, dir: &Path) -> String {
    format!(
        "[databases]\n\
         imp_app = host=127.0.0.1 port={pg} dbname=app\n\
         imp_pg = host=127.0.0.1 port={pg} dbname=postgres pool_size=2\n\
         imp_session = host=127.0.0.1 port={pg} dbname=app pool_mode=session\n\
         imp_forced = host=127.0.0.1 port={pg} dbname=app user=app password={PASSWORD}\n\
         * = host=127.0.0.1 port={pg}\n\
         [users]\n\
         imp_user = pool_mode=session\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = md5\n\
         auth_file = userlist.txt\n\
         pool_mode = transaction\n\
         default_pool_size = 3\n\
         admin_users = app\n\
         logfile = {}\n",
        dir.join("pgbouncer.log").display()
    )
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pgsluice::cluster::ports::is_listening(port) {
        assert!(Instant::now() < deadline, "{what} did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `current_user/current_database()` through the pooler on `port`, or the error's message.
fn ask(port: u16, db: &str, user: &str, password: &str) -> Result<String, String> {
    let url = format!("host=127.0.0.1 port={port} user={user} password={password} dbname={db}");
    let message = |e: tokio_postgres::Error| {
        e.as_db_error()
            .map_or(e.to_string(), |d| d.message().to_string())
    };
    rt().block_on(async {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .map_err(message)?;
        let task = tokio::spawn(conn);
        let got = scalar(&c, "select current_user || '/' || current_database()")
            .await
            .map_err(message);
        drop(c);
        let _ = task.await;
        got
    })
}

/// Writes the files (readable by PgBouncer, which runs as `postgres`) and the test role.
fn setup(fx: &Fixture, dir: &Path, port: u16, bport: u16) -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt;
    let pg = fx.cluster.primary().port();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::write(dir.join("pgbouncer.ini"), ini(pg, port, dir))?;
    std::fs::write(dir.join("bouncer.ini"), ini(pg, bport, dir))?;
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
    std::fs::write(
        dir.join("userlist.txt"),
        format!("\"app\" \"{PASSWORD}\"\n\"imp_user\" \"{PASSWORD}\"\n\"md5user\" \"{md5}\"\n"),
    )?;
    std::fs::write(dir.join("pgbouncer.log"), "")?;
    for f in [
        "pgbouncer.ini",
        "bouncer.ini",
        "userlist.txt",
        "pgbouncer.log",
    ] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o666))?;
    }
    Ok(())
}

/// PgBouncer itself on `bouncer.ini` (as `postgres` when run as root); missing, it fails
/// naming Debian's package.
fn start_pgbouncer(dir: &Path) -> Result<Running, Failed> {
    let mut cmd = Command::new("pgbouncer");
    if nix::unistd::geteuid().is_root() {
        cmd.args(["-u", "postgres"]);
    }
    let child = cmd
        .arg("-q")
        .arg(dir.join("bouncer.ini"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("pgbouncer cannot run ({e}): install Debian's pgbouncer package"))?;
    Ok(Running(child))
}

fn round_trip(fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let port = pgsluice::cluster::ports::free_port()?;
    let bport = pgsluice::cluster::ports::free_port()?;
    setup(fx, dir.path(), port, bport)?;
    let toml = dir.path().join("pgsluice.toml");
    let bin = env!("CARGO_BIN_EXE_pgsluice");
    let out = Command::new(bin)
        .arg("import-pgbouncer")
        .arg(dir.path().join("pgbouncer.ini"))
        .arg("-o")
        .arg(&toml)
        .output()?;
    let report = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}{stderr}");
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
    let _bouncer = start_pgbouncer(dir.path())?;
    wait_listening(port, "the imported pooler");
    wait_listening(bport, "pgbouncer");
    same_answers(port, bport)?;
    same_munin_shape(port, bport)?;
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

/// Every (database, user) answers the same through both poolers, as expected.
fn same_answers(port: u16, bport: u16) -> Result<(), Failed> {
    // (database asked for, user, expected current_user/current_database)
    let cases = [
        ("imp_app", "app", "app/app"),
        ("imp_app", "imp_user", "imp_user/app"),
        ("imp_pg", "app", "app/postgres"),
        ("imp_pg", "imp_user", "imp_user/postgres"),
        ("imp_session", "app", "app/app"),
        ("imp_session", "imp_user", "imp_user/app"),
        ("imp_forced", "md5user", "app/app"),
    ];
    for (db, user, want) in cases {
        let theirs = ask(bport, db, user, PASSWORD);
        let ours = ask(port, db, user, PASSWORD);
        assert_eq!(theirs.as_deref(), Ok(want), "PgBouncer: {db} as {user}");
        assert_eq!(ours.as_deref(), Ok(want), "pgsluice: {db} as {user}");
    }
    for p in [bport, port] {
        let err = ask(p, "imp_app", "app", "wrong").expect_err("a wrong password was accepted");
        assert!(err.contains("password authentication failed"), "{err}");
    }
    // The fallback database: PgBouncer serves any name, pgsluice (reported as not supported
    // by the import) refuses a database it does not list.
    assert_eq!(ask(bport, "app", "app", PASSWORD).as_deref(), Ok("app/app"));
    let err = ask(port, "app", "app", PASSWORD).expect_err("pgsluice has no \"*\" yet");
    assert!(err.contains("app"), "{err}");
    Ok(())
}

/// Munin's plugins give the same fields against both consoles, none negative.
fn same_munin_shape(port: u16, bport: u16) -> Result<(), Failed> {
    for plugin in ["pgbouncer_connections", "pgbouncer_requests"] {
        let mut fields = Vec::new();
        for p in [bport, port] {
            let values = munin(p, plugin, false)?;
            let config = munin(p, plugin, true)?;
            let mut seen = munin_values(plugin, &values, &config)?;
            // PgBouncer adds the databases its "*" entry created ("app" above).
            seen.retain(|f| f != "app");
            fields.push(seen);
        }
        assert_eq!(
            fields[0], fields[1],
            "{plugin}: PgBouncer's fields, then pgsluice's"
        );
    }
    Ok(())
}
