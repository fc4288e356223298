//! Shared fixture of the pooler tests: one PostgreSQL cluster and one pooler process for the
//! whole test binary, plus client helpers (tokio-postgres, psql, pgbench).

use pgsluice::cluster::{ClusterSpec, LocalCluster};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Password of every test role.
pub const PASSWORD: &str = "pw-secret";

/// A cluster with the pooler in front of it.
pub struct Fixture {
    pub cluster: LocalCluster,
    pub pooler: Child,
    pub port: u16,
    pub metrics_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.pooler.kill();
        let _ = self.pooler.wait();
    }
}

impl Fixture {
    /// Starts a primary (no standbys) and a pooler with one database per pool mode.
    pub fn start() -> Fixture {
        let mut spec = ClusterSpec::new(0)
            .user("app", PASSWORD)
            .user("md5user", PASSWORD)
            .user("cleartext", PASSWORD)
            .database("app", Some("app"))
            .conf("max_connections = 100");
        // PostgreSQL asks this role for its password in clear text (tests/pooler/upstream.rs).
        spec.extra_hba
            .push("host all cleartext 127.0.0.1/32 password".into());
        let cluster = LocalCluster::start(spec).expect("cluster starts");
        cluster
            .primary()
            .psql(
                "postgres",
                "set password_encryption = 'md5'; alter role md5user password 'pw-secret'",
            )
            .expect("md5 role");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = pgsluice::cluster::ports::free_port().expect("port");
        let metrics_port = pgsluice::cluster::ports::free_port().expect("port");
        let pg = cluster.primary().port();
        let sock = cluster.primary().socket_dir().display().to_string();
        let userlist = dir.path().join("userlist.txt");
        std::fs::write(
            &userlist,
            format!(
                "\"md5user\" \"{}\"\n",
                pgsluice::auth::md5_hex(PASSWORD, "md5user")
            ),
        )
        .expect("userlist");
        // md5user's secret is MD5: its rule says md5 (under scram-sha-256 it could not log in).
        let hba = dir.path().join("hba.conf");
        std::fs::write(
            &hba,
            "host all md5user 127.0.0.1/32 md5\n\
             host all all 127.0.0.1/32 scram-sha-256\n\
             host all all ::1/128 scram-sha-256\n",
        )
        .expect("hba");
        let config = format!(
            r#"
[pooler]
listen_port = {port}
auth_type = "scram-sha-256"
auth_file = "{userlist}"
auth_hba_file = "{hba}"
default_pool_size = 4
workers = 2
max_client_conn = 200
query_wait_timeout = "5s"
server_check_delay = "1s"
stats_period = 0
admin_users = ["app"]
stats_users = ["md5user"]
[databases.ops]
host = "127.0.0.1"
port = {pg}
dbname = "app"
[databases.paused]
host = "127.0.0.1"
port = {pg}
dbname = "app"
[databases.local]
host = "{sock}"
port = {pg}
dbname = "app"
[databases.app]
host = "127.0.0.1"
port = {pg}
[databases.app_session]
host = "127.0.0.1"
port = {pg}
dbname = "app"
pool_mode = "session"
[databases.app_statement]
host = "127.0.0.1"
port = {pg}
dbname = "app"
pool_mode = "statement"
[databases.tiny]
host = "127.0.0.1"
port = {pg}
dbname = "app"
pool_size = 1
[databases.solo]
host = "127.0.0.1"
port = {pg}
dbname = "app"
pool_size = 1
[databases.solo_session]
host = "127.0.0.1"
port = {pg}
dbname = "app"
pool_size = 1
pool_mode = "session"
[databases.app_strict]
host = "127.0.0.1"
port = {pg}
dbname = "app"
session_features = "error"
[databases.forced]
host = "127.0.0.1"
port = {pg}
dbname = "app"
user = "app"
password = "{PASSWORD}"
[users.app]
password = "{PASSWORD}"
[users.trusty]
[metrics]
listen = "127.0.0.1:{metrics_port}"
"#,
            userlist = userlist.display(),
            hba = hba.display()
        );
        let config_path = dir.path().join("pgsluice.toml");
        std::fs::File::create(&config_path)
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .expect("config");
        let log = std::fs::File::create(dir.path().join("pooler.log")).expect("log");
        let pooler = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
            .args(["pooler", "-c"])
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("pooler starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pgsluice::cluster::ports::is_listening(port) {
            assert!(Instant::now() < deadline, "pooler did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Fixture {
            cluster,
            pooler,
            port,
            metrics_port,
            _dir: dir,
        }
    }

    /// Runs one console command through psql as `user`; returns (success, stdout, stderr).
    pub fn console(&self, user: &str, sql: &str) -> (bool, String, String) {
        psql_at(self.port, "pgsluice", user, &["-c", sql])
    }

    /// libpq connection string through the pooler.
    pub fn url(&self, db: &str, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={PASSWORD} dbname={db}",
            self.port
        )
    }

    /// A tokio-postgres client through the pooler.
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        self.connect_as(db, "app")
            .await
            .expect("connect through pooler")
    }

    /// A tokio-postgres client through the pooler as `user`.
    pub async fn connect_as(
        &self,
        db: &str,
        user: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) =
            tokio_postgres::connect(&self.url(db, user), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Runs psql through the pooler; returns (success, stdout, stderr).
    pub fn psql(&self, db: &str, sql: &str) -> (bool, String, String) {
        self.psql_many(db, &[sql])
    }

    /// Runs psql with one `-c` per command (each sent as its own query).
    pub fn psql_many(&self, db: &str, sqls: &[&str]) -> (bool, String, String) {
        let bin = pgsluice::cluster::PgBin::find(None).expect("pg binaries");
        let mut cmd = Command::new(bin.path("psql"));
        cmd.args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url(db, "app"));
        for sql in sqls {
            cmd.args(["-c", sql]);
        }
        let out = cmd.output().expect("psql runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }
}

/// Runs psql against `port` (unaligned, with a header row); returns (success, stdout, stderr).
pub fn psql_at(port: u16, db: &str, user: &str, args: &[&str]) -> (bool, String, String) {
    let bin = pgsluice::cluster::PgBin::find(None).expect("pg binaries");
    let out = Command::new(bin.path("psql"))
        .args(["-XAq", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!(
            "host=127.0.0.1 port={port} user={user} password={PASSWORD} dbname={db}"
        ))
        .args(args)
        .output()
        .expect("psql runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The value of `column` in the row whose first field is `key`, from psql `-A` output.
pub fn cell(output: &str, key: &str, column: &str) -> Option<String> {
    let mut lines = output.lines();
    let header: Vec<&str> = lines.next()?.split('|').collect();
    let i = header.iter().position(|h| *h == column)?;
    lines
        .map(|l| l.split('|').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&key))
        .and_then(|f| f.get(i).map(|v| v.to_string()))
}

/// A current-thread runtime for one test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A second pooler process with its own small configuration, killed on drop.
pub struct ExtraPooler {
    pub child: Child,
    pub port: u16,
    pub config_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for ExtraPooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ExtraPooler {
    /// Starts a pooler in front of the fixture's primary with `pooler_keys` added to
    /// `[pooler]` and a database `app` with `db_keys`.
    pub fn start(fx: &Fixture, pooler_keys: &str, db_keys: &str) -> ExtraPooler {
        Self::start_logging(fx, pooler_keys, db_keys, "warn")
    }

    /// [`ExtraPooler::start`] with `RUST_LOG` set to `rust_log`.
    pub fn start_logging(
        fx: &Fixture,
        pooler_keys: &str,
        db_keys: &str,
        rust_log: &str,
    ) -> ExtraPooler {
        let dir = tempfile::tempdir().expect("tempdir");
        let pooler_keys = pooler_keys.replace("{dir}", &dir.path().display().to_string());
        let port = pgsluice::cluster::ports::free_port().expect("port");
        let pg = fx.cluster.primary().port();
        let config = format!(
            "[pooler]\nlisten_port = {port}\nstats_period = 0\n{pooler_keys}\n\
             [databases.app]\nhost = \"127.0.0.1\"\nport = {pg}\n{db_keys}\n\
             [users.app]\npassword = \"{PASSWORD}\"\n[metrics]\nenabled = false\n"
        );
        let path = dir.path().join("extra.toml");
        std::fs::write(&path, config).expect("config");
        let log = std::fs::File::create(dir.path().join("pooler.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
            .args(["pooler", "-c"])
            .arg(&path)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("pooler starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pgsluice::cluster::ports::is_listening(port) {
            assert!(Instant::now() < deadline, "extra pooler did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        ExtraPooler {
            child,
            port,
            config_path: path,
            _dir: dir,
        }
    }

    /// What the pooler wrote on stderr so far (`pooler.log` in its directory).
    pub fn log(&self) -> Vec<u8> {
        std::fs::read(self._dir.path().join("pooler.log")).unwrap_or_default()
    }

    /// The pooler's private directory (config; usable as `unix_socket_dir`).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Connection string for user `app`.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=app password={PASSWORD} dbname=app",
            self.port
        )
    }
}

/// First column of the first row of a simple-protocol query, as text.
///
/// Simple protocol, so that these checks do not depend on the prepared-statement machinery
/// (which `tests/pooler/prepared.rs` covers on its own).
pub async fn scalar(
    c: &tokio_postgres::Client,
    sql: &str,
) -> Result<String, tokio_postgres::Error> {
    for m in c.simple_query(sql).await? {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            return Ok(r.get(0).unwrap_or_default().to_string());
        }
    }
    Ok(String::new())
}

/// Runs `select pg_sleep(secs)` on `c` (a client through the pooler), sends a cancel request
/// once the server shows the query running, and asserts that it ends with `57014` within
/// 10 s and that the cancel request was accepted.
pub async fn cancel_while_running(
    fx: &Fixture,
    c: &tokio_postgres::Client,
    secs: u32,
) -> Result<(), libtest_mimic::Failed> {
    let sql = format!("select pg_sleep({secs})");
    let token = c.cancel_token();
    let primary = fx.cluster.primary().clone();
    let running =
        format!("select count(*) from pg_stat_activity where query = '{sql}' and state = 'active'");
    let canceller = tokio::spawn(async move {
        for _ in 0..100 {
            if primary.psql("app", &running).unwrap_or_default() == "1" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = Instant::now();
    let err = c.batch_execute(&sql).await.expect_err("cancelled");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    canceller.await?.map_err(|e| format!("cancel: {e:?}"))?;
    Ok(())
}
