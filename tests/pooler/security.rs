//! Front-door security: HBA rules, hostile input (half-open floods, oversized and truncated
//! messages), each on a pooler of its own.

use crate::util::{rt, ExtraPooler, Fixture, PASSWORD};
use libtest_mimic::Failed;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[
    ("security::hba_allow_and_deny", hba_allow_and_deny),
    ("security::hba_bad_file_is_refused", hba_bad_file_is_refused),
    ("security::half_open_flood", half_open_flood),
    ("security::oversized_message", oversized_message),
    ("security::tls_psql_require_and_verify_full", tls_psql),
    (
        "security::check_config_reads_hba_and_tls_files",
        check_config_files,
    ),
];

/// A CA and a server certificate for localhost/127.0.0.1 signed by it, written as PEM files
/// `ca.pem`, `server.pem`, `server.key` in `dir`.
fn make_certs(dir: &std::path::Path, ca_name: &str) -> Result<(), Failed> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    Ok(())
}

/// psql with a connection string; (success, stdout, stderr).
fn psql(conn: &str, sql: &str) -> Result<(bool, String, String), Failed> {
    let bin = pgsluice::cluster::PgBin::find(None)?;
    let out = std::process::Command::new(bin.path("psql"))
        .env("PGPASSWORD", PASSWORD)
        .args(["-XAtq", "-d", conn, "-c", sql])
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

fn tls_psql(fx: &Fixture) -> Result<(), Failed> {
    let certs = tempfile::tempdir()?;
    let d = certs.path();
    make_certs(d, "first CA")?;
    let keys = format!(
        "client_tls_sslmode = \"require\"\nclient_tls_cert_file = \"{0}/server.pem\"\n\
         client_tls_key_file = \"{0}/server.key\"",
        d.display()
    );
    let p = ExtraPooler::start(fx, &keys, "");
    let base = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=app dbname=app",
        p.port
    );
    let sql = "select 'tls'";
    let (ok, out, err) = psql(&format!("{base} sslmode=require"), sql)?;
    assert!(ok && out == "tls", "{err}");
    let ca = d.join("first-ca.pem");
    std::fs::copy(d.join("ca.pem"), &ca)?;
    let full = format!("{base} sslmode=verify-full sslrootcert={}", ca.display());
    let (ok, out, err) = psql(&full, sql)?;
    assert!(ok && out == "tls", "{err}");
    // Plain text is refused by `require`.
    let (ok, _, err) = psql(&format!("{base} sslmode=disable"), sql)?;
    assert!(!ok && err.contains("SSL required"), "{err}");
    // A client that does not trust this CA stops at verify-full.
    let other = tempfile::tempdir()?;
    make_certs(other.path(), "other CA")?;
    let wrong = format!(
        "{base} sslmode=verify-full sslrootcert={}",
        other.path().join("ca.pem").display()
    );
    let (ok, _, err) = psql(&wrong, sql)?;
    assert!(!ok, "verify-full against another CA passed: {err}");
    // New certificates on SIGHUP: a connection open before keeps working, new ones see the
    // new certificate.
    let bin = pgsluice::cluster::PgBin::find(None)?;
    let mut open = std::process::Command::new(bin.path("psql"))
        .env("PGPASSWORD", PASSWORD)
        .args(["-XAtq", "-d", &format!("{base} sslmode=require")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = open.stdin.take().ok_or("stdin")?;
    stdin.write_all(b"select 'before';\n")?;
    stdin.flush()?;
    std::thread::sleep(Duration::from_millis(300));
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::copy(other.path().join(f), d.join(f))?;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (ok, out, err) = psql(&wrong, sql)?;
        if ok && out == "tls" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate not in use: {err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, _, _) = psql(&full, sql)?;
    assert!(!ok, "the old CA still verifies after reload");
    stdin.write_all(b"select 'after';\n\\q\n")?;
    drop(stdin);
    let out = open.wait_with_output()?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "before\nafter");
    Ok(())
}

/// The SQLSTATE and message of a failed connection.
async fn login(url: &str) -> Result<(), (String, String)> {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((c, conn)) => {
            tokio::spawn(conn);
            let row = c
                .simple_query("select 1")
                .await
                .map_err(|e| (String::new(), e.to_string()))?;
            assert!(!row.is_empty());
            Ok(())
        }
        Err(e) => Err(e
            .as_db_error()
            .map(|d| (d.code().code().to_string(), d.message().to_string()))
            .unwrap_or_else(|| (String::new(), e.to_string()))),
    }
}

fn hba_allow_and_deny(fx: &Fixture) -> Result<(), Failed> {
    let files = tempfile::tempdir()?;
    let hba = files.path().join("hba.conf");
    std::fs::write(
        &hba,
        "# test rules\n\
         local all all trust\n\
         hostssl all all all md5\n\
         host app app 127.0.0.1/32 password\n\
         host all all 127.0.0.1/32 reject\n",
    )?;
    let keys = format!(
        "unix_socket_dir = \"{{dir}}\"\nauth_hba_file = \"{}\"\n[users.mallory]\npassword = \"x\"",
        hba.display()
    );
    let p = ExtraPooler::start(fx, &keys, "");
    let tcp = |user: &str, pw: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password={pw} dbname=app",
            p.port
        )
    };
    rt().block_on(async {
        // `password` method: the right password in clear is accepted, a wrong one refused.
        login(&tcp("app", PASSWORD)).await.map_err(|e| format!("{e:?}"))?;
        let (code, msg) = login(&tcp("app", "wrong")).await.unwrap_err();
        assert_eq!(code, "28P01", "{msg}");
        // `reject` matches first for another user, even with the right password.
        let (code, msg) = login(&tcp("mallory", "x")).await.unwrap_err();
        assert_eq!(code, "28000");
        assert_eq!(
            msg,
            "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"mallory\", database \"app\", no encryption"
        );
        // The Unix socket is `local`: trusted, no password.
        let unix = format!(
            "host={} port={} user=app dbname=app",
            p.dir().display(),
            p.port
        );
        login(&unix).await.map_err(|e| format!("{e:?}"))?;
        Ok::<_, Failed>(())
    })?;
    // A pooler whose only TCP rule needs TLS: no entry for a plain connection.
    let hba2 = files.path().join("hba2.conf");
    std::fs::write(&hba2, "hostssl all all 0.0.0.0/0 md5\n")?;
    let p2 = ExtraPooler::start(fx, &format!("auth_hba_file = \"{}\"", hba2.display()), "");
    rt().block_on(async {
        let (code, msg) = login(&p2.url()).await.unwrap_err();
        assert_eq!(code, "28000");
        assert!(
            msg.starts_with("no pg_hba.conf entry for host \"127.0.0.1\", user \"app\""),
            "{msg}"
        );
    });
    Ok(())
}

fn hba_bad_file_is_refused(_fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let hba = dir.path().join("hba.conf");
    std::fs::write(
        &hba,
        "host all all 127.0.0.1/32 md5\nhost all all 10.0.0.0/40 md5\n",
    )?;
    let port = pgsluice::cluster::ports::free_port()?;
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[pooler]\nlisten_port = {port}\nauth_hba_file = \"{}\"\n[metrics]\nenabled = false\n",
            hba.display()
        ),
    )?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .args(["pooler", "-c"])
        .arg(&config)
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("{}:2: invalid CIDR mask", hba.display());
    assert!(err.contains(&want), "{err}");
    Ok(())
}

/// Connect, query, return how long it took.
async fn timed_login(url: &str) -> Result<Duration, Failed> {
    let t = Instant::now();
    login(url).await.map_err(|e| format!("{e:?}"))?;
    Ok(t.elapsed())
}

fn half_open_flood(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start(fx, "max_pending_logins = 100", "");
    let url = p.url();
    rt().block_on(async {
        let mut normal = Vec::new();
        for _ in 0..5 {
            normal.push(timed_login(&url).await?);
        }
        normal.sort();
        // 1,000 connections that never send a startup packet.
        let mut flood = Vec::new();
        for _ in 0..1000 {
            flood.push(std::net::TcpStream::connect(("127.0.0.1", p.port))?);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut loaded = Vec::new();
        for _ in 0..5 {
            loaded.push(timed_login(&url).await?);
        }
        loaded.sort();
        let (n, l) = (normal[2], loaded[2]);
        eprintln!("login+query median: {n:?} normally, {l:?} with 1,000 half-open connections");
        assert!(
            l < n * 5 + Duration::from_millis(50),
            "{l:?} under flood vs {n:?}"
        );
        // Most of the flood was pushed out (at most max_pending_logins kept).
        let mut closed = 0;
        for mut s in flood {
            s.set_nonblocking(true)?;
            let mut b = [0u8; 256];
            match s.read(&mut b) {
                Ok(_) => closed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => closed += 1,
            }
        }
        assert!(
            closed >= 890,
            "only {closed} of 1000 half-open connections were closed"
        );
        Ok::<_, Failed>(())
    })
}

fn oversized_message(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start(fx, "auth_type = \"trust\"\nmax_packet_size = \"64kB\"", "");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(&pgsluice::proto::startup::startup_message(&[
        ("user", "app"),
        ("database", "app"),
    ]))?;
    // Read until ReadyForQuery.
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while !got.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        let n = s.read(&mut b)?;
        assert!(n > 0, "closed during login: {got:?}");
        got.extend_from_slice(&b[..n]);
    }
    // A Query claiming 1 MB: refused with an ErrorResponse, then closed.
    let mut q = vec![b'Q'];
    q.extend_from_slice(&(1u32 << 20).to_be_bytes());
    q.extend_from_slice(&[b'x'; 1000]);
    s.write_all(&q)?;
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert_eq!(reply.first(), Some(&b'E'), "{reply:?}");
    // A truncated message (header only) on another connection does not disturb a client.
    let mut t = std::net::TcpStream::connect(("127.0.0.1", p.port))?;
    t.write_all(&[0, 0, 0, 40, 0, 3, 0, 0, b'u'])?;
    rt().block_on(async {
        login(&format!(
            "host=127.0.0.1 port={} user=app dbname=app",
            p.port
        ))
        .await
        .map_err(|e| format!("{e:?}"))
    })?;
    Ok(())
}

/// `check-config` reads the files the configuration names and reports each bad one.
fn check_config_files(_fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    std::fs::write(
        d.join("hba.conf"),
        "host all all all md5\nhost all all samenet md5\n",
    )?;
    let config = d.join("c.toml");
    let write = |cert: &str| {
        std::fs::write(
            &config,
            format!(
                "[pooler]\nauth_hba_file = \"{0}/hba.conf\"\nclient_tls_sslmode = \"require\"\n\
                 client_tls_cert_file = \"{0}/{cert}\"\nclient_tls_key_file = \"{0}/server.key\"\n\
                 [databases.app]\nhost = \"127.0.0.1\"\nport = 5432\n",
                d.display()
            ),
        )
    };
    write("missing.pem")?;
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgsluice"))
            .args(["check-config", "-c"])
            .arg(&config)
            .output()
    };
    let out = run()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("hba.conf:2:") && text.contains("samenet"),
        "{text}"
    );
    assert!(text.contains("missing.pem"), "{text}");
    make_certs(d, "check CA")?;
    std::fs::write(d.join("hba.conf"), "host all all all md5\n")?;
    write("server.pem")?;
    let out = run()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && text.trim() == "ok", "{text}");
    Ok(())
}
