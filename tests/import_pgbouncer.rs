//! `pgsluice import-pgbouncer` on PgBouncer configurations: Debian's shipped pgbouncer.ini,
//! transaction pooling (with `%include` and `*`), session pooling with TLS, and auth_query.
//! Each imported file must pass `check-config`, hold the mapped values, and the report must
//! name every source line. The round trip against a real cluster is in tests/pooler/import.rs.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/import_pgbouncer");

struct Imported {
    ok: bool,
    report: String,
    stderr: String,
    toml: toml::Table,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// Copies the fixtures into a fresh directory (replacing `{dir}` by it), imports `ini` there.
fn import(ini: &str, extra: &[&str]) -> Imported {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(FIXTURES).unwrap() {
        let f = f.unwrap().path();
        let text = std::fs::read_to_string(&f).unwrap();
        let text = text.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(dir.path().join(f.file_name().unwrap()), text).unwrap();
    }
    let path = dir.path().join("pgsluice.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .arg("import-pgbouncer")
        .arg(dir.path().join(ini))
        .args(extra)
        .arg("-o")
        .arg(&path)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    Imported {
        ok: out.status.success(),
        report: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        toml: toml::from_str(&text).unwrap_or_else(|e| panic!("not TOML ({e}):\n{text}")),
        path,
        _dir: dir,
    }
}

fn check_config(path: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .args(["check-config", "-c"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
    )
}

impl Imported {
    fn get(&self, path: &str) -> &toml::Value {
        let mut v = self
            .toml
            .get(path.split('.').next().unwrap())
            .unwrap_or_else(|| {
                panic!("no {path} in {:#?}", self.toml);
            });
        for part in path.split('.').skip(1) {
            v = v
                .get(part)
                .unwrap_or_else(|| panic!("no {path} in {:#?}", self.toml));
        }
        v
    }

    fn str(&self, path: &str) -> &str {
        self.get(path).as_str().unwrap()
    }

    fn int(&self, path: &str) -> i64 {
        self.get(path).as_integer().unwrap()
    }

    /// The report's outcome line for the source line starting with `source`.
    fn outcome(&self, source: &str) -> &str {
        let mut lines = self.report.lines();
        while let Some(l) = lines.next() {
            if l.contains(source) {
                return lines.next().unwrap_or_default().trim();
            }
        }
        panic!("no {source:?} in the report:\n{}", self.report)
    }

    /// Every `key = value` line of the imported files has a report line with its place.
    fn reports_every_line(&self, files: &[&str]) {
        let dir = self.path.parent().unwrap();
        for f in files {
            let p = dir.join(f);
            for (i, line) in std::fs::read_to_string(&p).unwrap().lines().enumerate() {
                let t = line.trim();
                let setting = !(t.is_empty()
                    || t.starts_with(';')
                    || t.starts_with('#')
                    || t.starts_with('[')
                    || t.starts_with('%'));
                if setting {
                    let at = format!("{}:{} [", p.display(), i + 1);
                    assert!(
                        self.report.contains(&at),
                        "line {t:?} ({at}) not reported:\n{}",
                        self.report
                    );
                }
            }
        }
    }

    fn passes_check_config(&self) {
        assert!(self.ok, "import failed: {}\n{}", self.stderr, self.report);
        let (ok, out) = check_config(&self.path);
        assert!(ok && out.trim() == "ok", "check-config: {out}");
    }
}

#[test]
fn debian_shipped_ini() {
    // The ini names /etc/pgbouncer/userlist.txt; the fixture's copy stands in for it.
    let userlist = fixture("debian-userlist.txt");
    let im = import("debian.ini", &["--userlist", userlist.to_str().unwrap()]);
    im.passes_check_config();
    im.reports_every_line(&["debian.ini"]);
    assert_eq!(im.str("pooler.listen_addr"), "127.0.0.1");
    assert_eq!(im.int("pooler.listen_port"), 6432);
    assert_eq!(im.str("pooler.unix_socket_dir"), "/var/run/postgresql");
    assert_eq!(im.str("pooler.auth_type"), "md5");
    assert_eq!(im.str("pooler.auth_file"), userlist.to_str().unwrap());
    // PgBouncer's defaults where pgsluice's differ.
    assert_eq!(im.str("pooler.pool_mode"), "session");
    assert_eq!(im.int("pooler.max_client_conn"), 100);
    assert_eq!(im.str("pooler.server_tls_sslmode"), "prefer");
    assert!(im
        .outcome("[pgbouncer] logfile =")
        .starts_with("NOT SUPPORTED: pgsluice logs to stderr"));
    assert!(im
        .outcome("[pgbouncer] pidfile =")
        .starts_with("NOT SUPPORTED"));
    assert!(im
        .outcome("[pgbouncer] listen_addr = localhost")
        .contains("localhost as 127.0.0.1"));
    assert!(im
        .outcome("(not set) [pgbouncer] pool_mode")
        .contains("PgBouncer's default is session, pgsluice's transaction"));
    assert!(im
        .outcome("--userlist [pgbouncer] auth_file")
        .contains("0 users"));
    assert!(im
        .outcome("[pgbouncer] auth_file = /etc")
        .starts_with("overridden: --userlist"));
    assert!(
        im.toml.get("databases").is_none(),
        "Debian's file lists no database"
    );
}

#[test]
fn transaction_pooling_with_include_and_fallback() {
    let im = import("transaction.ini", &[]);
    im.passes_check_config();
    im.reports_every_line(&["transaction.ini", "transaction-databases.ini"]);
    assert_eq!(im.str("pooler.listen_addr"), "*");
    assert_eq!(im.str("pooler.pool_mode"), "transaction");
    assert_eq!(im.int("pooler.max_client_conn"), 5000);
    assert_eq!(im.int("pooler.reserve_pool_timeout"), 3);
    assert_eq!(im.int("pooler.stats_period"), 0, "log_stats = 0");
    assert_eq!(im.get("pooler.admin_users").as_array().unwrap().len(), 2);
    assert!(im.toml["pooler"].get("unix_socket_dir").is_none());
    assert_eq!(im.str("databases.shop.dbname"), "shop_prod");
    assert_eq!(im.int("databases.shop.pool_size"), 40);
    assert_eq!(im.int("databases.shop.reserve_pool_size"), 10);
    assert_eq!(im.int("databases.shop_ro.max_db_connections"), 30);
    assert_eq!(im.str("databases.billing.pool_mode"), "session");
    assert_eq!(im.str("users.reporting.pool_mode"), "session");
    assert_eq!(im.int("users.reporting.max_user_connections"), 5);
    assert!(im.toml["databases"].get("*").is_none());
    let text = std::fs::read_to_string(&im.path).unwrap();
    assert!(
        text.contains("# [databases.\"*\"]\n# host = \"10.0.0.5\"\n# port = 5432\n"),
        "{text}"
    );
    assert!(im
        .outcome("[databases] * =")
        .starts_with("NOT SUPPORTED: pgsluice has no fallback database"));
    assert!(im
        .outcome("[databases] billing client_encoding")
        .contains("ALTER DATABASE"));
    assert!(im
        .outcome("[pgbouncer] ignore_startup_parameters")
        .contains("not needed"));
    assert!(im
        .outcome("[pgbouncer] tcp_keepidle")
        .starts_with("NOT SUPPORTED"));
    assert!(im.outcome("[userlist] ops").contains("plain password"));
}

#[test]
fn session_pooling_with_tls() {
    let im = import("session.ini", &[]);
    let dir = im.path.parent().unwrap().to_path_buf();
    make_certs(&dir);
    im.passes_check_config();
    im.reports_every_line(&["session.ini"]);
    assert_eq!(im.str("pooler.pool_mode"), "session");
    assert_eq!(im.str("pooler.server_reset_query"), "DISCARD ALL");
    assert_eq!(im.str("pooler.listen_addr"), "127.0.0.1");
    assert!(im
        .outcome("[pgbouncer] listen_addr")
        .contains("10.1.2.3 dropped"));
    assert_eq!(im.str("pooler.client_tls_sslmode"), "require");
    assert_eq!(
        im.str("pooler.client_tls_cert_file"),
        dir.join("server.pem").to_str().unwrap()
    );
    assert_eq!(im.str("pooler.server_tls_sslmode"), "verify-ca");
    assert_eq!(im.int("pooler.query_timeout"), 600);
    assert_eq!(im.str("databases.app_admin.user"), "app_owner");
    assert_eq!(im.str("databases.app_admin.password"), "owner-secret");
    // A Unix-socket directory is kept: pgsluice connects to it as PgBouncer did.
    assert_eq!(im.str("databases.legacy.host"), "/var/run/postgresql");
    assert!(im
        .outcome("[databases] legacy host")
        .contains("/var/run/postgresql"));
    assert_eq!(im.int("users.app.pool_size"), 8);
    assert!(im
        .outcome("[pgbouncer] client_tls_ciphers")
        .starts_with("NOT SUPPORTED"));
    assert!(im
        .outcome("[pgbouncer] user = postgres")
        .contains("systemd"));
    // Secrets stay out of the report, and the file is private.
    assert!(!im.report.contains("owner-secret"), "{}", im.report);
    assert!(im.report.contains("app_admin password = (hidden)"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&im.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn auth_query_setup() {
    let im = import("auth_query.ini", &[]);
    im.passes_check_config();
    im.reports_every_line(&["auth_query.ini"]);
    assert_eq!(im.str("pooler.auth_user"), "pgbouncer_auth");
    assert_eq!(
        im.str("pooler.auth_query"),
        "SELECT usename, passwd FROM pgbouncer.get_auth($1)"
    );
    assert_eq!(im.str("pooler.auth_dbname"), "main");
    assert_eq!(im.str("pooler.auth_type"), "scram-sha-256");
    let extra = im.get("pooler.track_extra_parameters").as_array().unwrap();
    assert_eq!(extra.len(), 2);
    assert!(im
        .outcome("[databases] analytics auth_user")
        .contains("not one per database"));
    assert!(im
        .outcome("[userlist] pgbouncer_auth")
        .contains("from auth_file"));
    assert!(!im.report.contains("lookup-secret"));
}

#[test]
fn unsafe_or_unreadable_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("p.ini");
    std::fs::write(
        &ini,
        "[pgbouncer]\nclient_tls_sslmode = verify-full\nserver_lifetime = 0\nbogus = 1\n[peers]\n1 = host=x\n",
    )
    .unwrap();
    let out = dir.path().join("out.toml");
    let run = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .arg("import-pgbouncer")
        .arg(&ini)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    // verify-full is kept so that the file is refused rather than run with weaker TLS.
    assert_eq!(run.status.code(), Some(1), "{report}{stderr}");
    assert!(stderr.contains("pooler.client_tls_sslmode"), "{stderr}");
    assert!(
        report.contains(
            "server_lifetime = 0\n    NOT SUPPORTED: PgBouncer's 0 means use each connection once"
        ),
        "{report}"
    );
    assert!(
        report.contains("bogus = 1\n    NOT SUPPORTED: not a PgBouncer 1.2x setting"),
        "{report}"
    );
    assert!(
        report.contains("[peers] 1 = host=x\n    NOT SUPPORTED: pgsluice has no [peers] section"),
        "{report}"
    );
    std::fs::write(&ini, "[pgbouncer]\nlisten_port\n").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .arg("import-pgbouncer")
        .arg(&ini)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("p.ini:2: \"listen_port\" is not `key = value`"),
        "{stderr}"
    );
}

/// A CA (`ca.pem`) and a server certificate (`server.pem`, `server.key`) in `dir`.
fn make_certs(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

#[test]
fn overridden_and_unknown_entries_hide_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("p.ini");
    std::fs::write(
        &ini,
        "[databases]\napp = host=h1 password=first-secret\napp = host=h2 password=second-secret\n\
         [peers]\n1 = host=p password=peer-secret\n\
         [pgbouncer]\nlog_stats = 0\nlog_stats = 1\n",
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .arg("import-pgbouncer")
        .arg(&ini)
        .output()
        .unwrap();
    let toml_text = String::from_utf8_lossy(&run.stdout);
    let report = String::from_utf8_lossy(&run.stderr);
    for secret in ["first-secret", "second-secret", "peer-secret"] {
        assert!(
            !report.contains(secret),
            "{secret} in the report:\n{report}"
        );
    }
    assert!(
        report.contains("p.ini:2 [databases] app = host=h1 password=(hidden)\n    overridden"),
        "{report}"
    );
    let t: toml::Table = toml::from_str(&toml_text).unwrap();
    assert_eq!(t["databases"]["app"]["host"].as_str(), Some("h2"));
    assert_eq!(
        t["databases"]["app"]["password"].as_str(),
        Some("second-secret")
    );
    // The last log_stats wins: stats lines stay on.
    assert!(t["pooler"].get("stats_period").is_none(), "{toml_text}");
}
