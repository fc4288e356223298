//! TLS from the pooler to PostgreSQL (`server_tls_*`): the shared primary gets `ssl = on` with
//! a certificate for `localhost` only, signed by a test CA; poolers of their own connect with
//! `verify-full`, `verify-ca` and `require`, and `pg_stat_ssl` shows the session encrypted.

use crate::util::{rt, ExtraPooler, Fixture};
use libtest_mimic::Failed;
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[(
    "server_tls::verify_full_verify_ca_require_and_reload",
    server_tls,
)];

const SSL: &str = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";

/// A CA (`ca.pem`) and a certificate for `names` signed by it (`server.pem`, `server.key`).
fn make_certs(dir: &std::path::Path, ca_name: &str, names: &[&str]) -> Result<(), Failed> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    Ok(())
}

/// Runs `sql` through `url`; the first column of the first row, or the error text.
fn ask(url: &str, sql: &str) -> Result<String, String> {
    rt().block_on(async {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| {
                e.as_db_error()
                    .map_or(e.to_string(), |d| d.message().into())
            })?;
        tokio::spawn(conn);
        crate::util::scalar(&c, sql).await.map_err(|e| {
            e.as_db_error()
                .map_or(e.to_string(), |d| d.message().into())
        })
    })
}

/// Turns TLS on (or off) on the shared primary with the certificate in `certs`.
fn primary_ssl(fx: &Fixture, certs: Option<&std::path::Path>) -> Result<(), Failed> {
    let node = fx.cluster.primary();
    let sql = match certs {
        Some(dir) => {
            for (from, to) in [
                ("server.pem", "tls_test.crt"),
                ("server.key", "tls_test.key"),
            ] {
                let text = std::fs::read_to_string(dir.join(from))?;
                node.run_as()
                    .write_file(&node.data_dir().join(to), &text, 0o600)?;
            }
            "alter system set ssl_cert_file = 'tls_test.crt';\n\
             alter system set ssl_key_file = 'tls_test.key';\n\
             alter system set ssl = on;\nselect pg_reload_conf();"
        }
        None => {
            "alter system reset ssl;\nalter system reset ssl_cert_file;\n\
             alter system reset ssl_key_file;\nselect pg_reload_conf();"
        }
    };
    node.psql("postgres", sql)?;
    Ok(())
}

fn server_tls(fx: &Fixture) -> Result<(), Failed> {
    let d = tempfile::tempdir()?;
    let (good, other) = (d.path().join("good"), d.path().join("other"));
    std::fs::create_dir_all(&good)?;
    std::fs::create_dir_all(&other)?;
    make_certs(&good, "server CA", &["localhost"])?;
    make_certs(&other, "another CA", &["localhost", "127.0.0.1"])?;
    primary_ssl(fx, Some(&good))?;
    // Plain again afterwards, even when a check panics.
    struct Restore<'a>(&'a Fixture);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = primary_ssl(self.0, None);
        }
    }
    let _restore = Restore(fx);
    checks(fx, &good, &other)
}

fn checks(fx: &Fixture, good: &std::path::Path, other: &std::path::Path) -> Result<(), Failed> {
    let pg = fx.cluster.primary().port();
    // verify-full: `byname` reaches the server as `localhost` (the certificate's name) and is
    // encrypted; `app` reaches it as 127.0.0.1, which the certificate does not name.
    let keys = format!(
        "server_tls_sslmode = \"verify-full\"\n\
         server_tls_ca_file = \"{}\"\n\
         [databases.byname]\nhost = \"localhost\"\nport = {pg}\ndbname = \"app\"\n",
        good.join("ca.pem").display()
    );
    let full = ExtraPooler::start(fx, &keys, "");
    let byname = full.url().replace("dbname=app", "dbname=byname");
    // The primary picks up `ssl = on` at its reload: wait for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = ask(&byname, SSL);
    while seen.as_deref() != Ok("t") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        seen = ask(&byname, SSL);
    }
    assert_eq!(seen.as_deref(), Ok("t"), "verify-full to localhost");
    assert_eq!(ask(&byname, "select 40 + 2").as_deref(), Ok("42"));
    let err = ask(&full.url(), SSL).expect_err("verify-full passed a certificate for another name");
    assert!(
        err.contains("TLS to server 127.0.0.1") && err.contains("not valid for name"),
        "{err}"
    );
    // verify-ca with a CA that did not sign the server's certificate: a clear refusal.
    let ca_keys = |ca: &std::path::Path| {
        format!(
            "server_tls_sslmode = \"verify-ca\"\nserver_tls_ca_file = \"{}\"",
            ca.join("ca.pem").display()
        )
    };
    let vca = ExtraPooler::start(fx, &ca_keys(other), "");
    let err = ask(&vca.url(), SSL).expect_err("a certificate of an unknown CA was accepted");
    assert!(
        err.contains("TLS to server") && err.contains("UnknownIssuer"),
        "{err}"
    );
    // Reload with the right CA: new server connections verify against it (the host name is
    // not checked by verify-ca).
    let text = std::fs::read_to_string(&vca.config_path)?;
    std::fs::write(
        &vca.config_path,
        text.replace(&other.display().to_string(), &good.display().to_string()),
    )?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(vca.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = ask(&vca.url(), SSL);
    while seen.as_deref() != Ok("t") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        seen = ask(&vca.url(), SSL);
    }
    assert_eq!(seen.as_deref(), Ok("t"), "verify-ca after reload");
    // require: encrypted, certificate not checked.
    let req = ExtraPooler::start(fx, "server_tls_sslmode = \"require\"", "");
    assert_eq!(ask(&req.url(), SSL).as_deref(), Ok("t"));
    // prefer takes the TLS the server offers; allow logs in plain when plain is accepted.
    let prefer = ExtraPooler::start(fx, "server_tls_sslmode = \"prefer\"", "");
    assert_eq!(ask(&prefer.url(), SSL).as_deref(), Ok("t"));
    let allow = ExtraPooler::start(fx, "server_tls_sslmode = \"allow\"", "");
    assert_eq!(ask(&allow.url(), SSL).as_deref(), Ok("f"));
    // disable: plain.
    let disable = ExtraPooler::start(fx, "server_tls_sslmode = \"disable\"", "");
    assert_eq!(ask(&disable.url(), SSL).as_deref(), Ok("f"));
    // The default is prefer: the TLS the server offers is taken.
    let default = ExtraPooler::start(fx, "", "");
    assert_eq!(ask(&default.url(), SSL).as_deref(), Ok("t"));
    Ok(())
}
