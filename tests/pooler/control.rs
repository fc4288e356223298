//! The pooler's control endpoints (`/control/*` on the HTTP port): refused without the
//! shared secret, with a wrong one, or without a configured secret file; bodies bounded while
//! read; stalled connections closed; the secret file rotated without a restart. Each test but
//! the last runs a pooler of its own, so that a pause never touches the shared fixture.

use crate::util::{rt, scalar, Fixture, PASSWORD};
use libtest_mimic::Failed;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[
    (
        "control::unauthenticated_pause_is_refused_and_clients_keep_running",
        unauthenticated_pause_refused,
    ),
    (
        "control::right_secret_pauses_and_resumes",
        right_secret_pauses,
    ),
    (
        "control::oversized_body_is_refused_before_it_is_read",
        oversized_body,
    ),
    ("control::stalled_headers_are_cut_off", stalled_headers),
    ("control::secret_rotation_without_restart", secret_rotation),
    (
        "control::without_a_secret_file_control_is_refused",
        no_secret_file,
    ),
    (
        "control::check_config_reads_the_secret_file",
        check_config_secret,
    ),
];

const SECRET: &str = "pooler-test-secret-0123456789";

/// A pooler with `[control] secret_file` and its HTTP port.
struct Guarded {
    child: Child,
    port: u16,
    http: u16,
    secret: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_secret(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn guarded(fx: &Fixture) -> Guarded {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("control.secret");
    write_secret(&secret, &format!("{SECRET}\n"));
    let port = pgsluice::cluster::ports::free_port().unwrap();
    let http = pgsluice::cluster::ports::free_port().unwrap();
    let pg = fx.cluster.primary().port();
    let config = format!(
        "[pooler]\nlisten_port = {port}\nstats_period = 0\ndefault_pool_size = 2\n\
         query_wait_timeout = \"20s\"\n\
         [databases.app]\nhost = \"127.0.0.1\"\nport = {pg}\n\
         [users.app]\npassword = \"{PASSWORD}\"\n\
         [metrics]\nlisten = \"127.0.0.1:{http}\"\n\
         [control]\nsecret_file = \"{}\"\n",
        secret.display()
    );
    let path = dir.path().join("pooler.toml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .args(["pooler", "-c"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(pgsluice::cluster::ports::is_listening(port)
        && pgsluice::cluster::ports::is_listening(http))
    {
        assert!(Instant::now() < deadline, "pooler did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Guarded {
        child,
        port,
        http,
        secret,
        _dir: dir,
    }
}

impl Guarded {
    fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=app password={PASSWORD} dbname=app",
            self.port
        )
    }
}

/// One HTTP/1.1 exchange: `head` is the request line plus headers (no blank line).
fn http(port: u16, head: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "{head}\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse(&out)
}

fn parse(out: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        text.split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string(),
    )
}

fn post(port: u16, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let auth = auth.map_or(String::new(), |a| format!("\r\nAuthorization: Bearer {a}"));
    http(
        port,
        &format!("POST {path} HTTP/1.1\r\nContent-Type: application/json{auth}"),
        body,
    )
}

/// `select 1` through `url` answers within `within`.
fn answers(url: &str, within: Duration) -> bool {
    rt().block_on(async {
        let run = async {
            let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .ok()?;
            tokio::spawn(conn);
            scalar(&c, "select 1").await.ok()
        };
        tokio::time::timeout(within, run).await.ok().flatten() == Some("1".into())
    })
}

fn unauthenticated_pause_refused(fx: &Fixture) -> Result<(), Failed> {
    let g = guarded(fx);
    assert!(answers(&g.url(), Duration::from_secs(5)), "serves before");
    let body = r#"{"timeout_ms":100}"#;
    let (status, text) = post(g.http, "/control/pause", None, body);
    assert_eq!(status, 401, "no secret: {text}");
    let (status, _) = post(
        g.http,
        "/control/pause",
        Some("not-the-secret-0123456789"),
        body,
    );
    assert_eq!(status, 401, "wrong secret");
    let (status, _) = post(g.http, "/control/pause", Some(&SECRET[1..]), body);
    assert_eq!(status, 401, "a prefix of the secret");
    let topo = r#"{"epoch":18446744073709551615,"primary":null,"standbys":[],"fenced":[]}"#;
    assert_eq!(post(g.http, "/control/topology", None, topo).0, 401);
    // Not paused: a new client and a new transaction answer at once.
    assert!(
        answers(&g.url(), Duration::from_secs(2)),
        "clients keep running"
    );
    // The pushed epoch was not installed.
    let (status, text) = http(g.http, "GET /control/topology HTTP/1.1", "");
    assert_eq!(status, 200, "reads stay open");
    assert!(!text.contains("18446744073709551615"), "{text}");
    assert_eq!(http(g.http, "GET /health HTTP/1.1", "").0, 200);
    assert_eq!(http(g.http, "GET /metrics HTTP/1.1", "").0, 200);
    Ok(())
}

fn right_secret_pauses(fx: &Fixture) -> Result<(), Failed> {
    let g = guarded(fx);
    let (status, text) = post(
        g.http,
        "/control/pause",
        Some(SECRET),
        r#"{"timeout_ms":2000}"#,
    );
    assert_eq!((status, text.as_str()), (200, "paused\n"));
    assert!(
        !answers(&g.url(), Duration::from_millis(500)),
        "a paused pooler holds new transactions"
    );
    let url = g.url();
    let waiter = std::thread::spawn(move || answers(&url, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(200));
    let (status, text) = post(g.http, "/control/resume", Some(SECRET), "{}");
    assert_eq!((status, text.as_str()), (200, "resumed\n"));
    assert!(waiter.join().unwrap(), "the held client ran after resume");
    Ok(())
}

fn oversized_body(fx: &Fixture) -> Result<(), Failed> {
    let g = guarded(fx);
    // A declared 100 MB body: answered 413 at once while none of it has been sent.
    let mut s = TcpStream::connect(("127.0.0.1", g.http))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(
        s,
        "POST /control/topology HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {SECRET}\r\nContent-Length: 100000000\r\n\r\n{{"
    )?;
    let mut buf = [0u8; 2048];
    let n = s.read(&mut buf)?;
    assert_eq!(
        parse(&buf[..n]).0,
        413,
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // A chunked body that never ends: refused once it passes the limit (64 KiB).
    let mut s = TcpStream::connect(("127.0.0.1", g.http))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(
        s,
        "POST /control/topology HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {SECRET}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )?;
    let chunk = format!("{:x}\r\n{}\r\n", 8192, " ".repeat(8192));
    for _ in 0..9 {
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let n = s.read(&mut buf)?;
    assert_eq!(
        parse(&buf[..n]).0,
        413,
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // A wrong content type and unauthenticated big bodies are refused before any body.
    let (status, _) = http(
        g.http,
        &format!("POST /control/resume HTTP/1.1\r\nContent-Type: text/plain\r\nAuthorization: Bearer {SECRET}"),
        "{}",
    );
    assert_eq!(status, 415);
    let mut s = TcpStream::connect(("127.0.0.1", g.http))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(
        s,
        "POST /control/pause HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 100000000\r\n\r\n"
    )?;
    let n = s.read(&mut buf)?;
    assert_eq!(parse(&buf[..n]).0, 401);
    assert!(answers(&g.url(), Duration::from_secs(2)), "still serving");
    Ok(())
}

fn stalled_headers(fx: &Fixture) -> Result<(), Failed> {
    let g = guarded(fx);
    let mut s = TcpStream::connect(("127.0.0.1", g.http))?;
    s.write_all(b"POST /control/pause HTTP/1.1\r\nHost: x\r\n")?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    // The server gives up on the headers (5 s) and closes, answering 408 or nothing.
    let n = s.read(&mut buf).unwrap_or(0);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
    assert!(
        n == 0 || parse(&buf[..n]).0 == 408,
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(http(g.http, "GET /health HTTP/1.1", "").0, 200);
    Ok(())
}

fn secret_rotation(fx: &Fixture) -> Result<(), Failed> {
    let g = guarded(fx);
    let new = "pooler-test-rotated-9876543210";
    // Step 1: both secrets accepted.
    write_secret(&g.secret, &format!("{SECRET}\n{new}\n"));
    assert_eq!(post(g.http, "/control/resume", Some(SECRET), "{}").0, 200);
    assert_eq!(post(g.http, "/control/resume", Some(new), "{}").0, 200);
    // Step 2: the old one removed: refused at once, no reload needed.
    write_secret(&g.secret, &format!("{new}\n"));
    assert_eq!(post(g.http, "/control/resume", Some(SECRET), "{}").0, 401);
    assert_eq!(post(g.http, "/control/resume", Some(new), "{}").0, 200);
    // A file others may read is refused rather than trusted.
    std::fs::set_permissions(&g.secret, std::fs::Permissions::from_mode(0o644))?;
    assert_eq!(post(g.http, "/control/resume", Some(new), "{}").0, 500);
    Ok(())
}

fn no_secret_file(fx: &Fixture) -> Result<(), Failed> {
    // The shared fixture has no [control] section.
    let (status, text) = post(fx.metrics_port, "/control/resume", Some(SECRET), "{}");
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("secret_file"), "{text}");
    let (status, _) = post(fx.metrics_port, "/control/pause", None, "{}");
    assert_eq!(status, 403);
    assert!(fx.psql("app", "select 1").0, "the pooler keeps serving");
    Ok(())
}

fn check_config_secret(_fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("control.secret");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[databases.app]\nhost = \"127.0.0.1\"\nport = 5432\n[control]\nsecret_file = \"{}\"\n",
            secret.display()
        ),
    )?;
    let run = || -> Result<(bool, String), Failed> {
        let out = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
            .args(["check-config", "-c"])
            .arg(&config)
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    let (ok, text) = run()?;
    assert!(
        !ok && text.contains("control.secret"),
        "missing file: {text}"
    );
    write_secret(&secret, &format!("{SECRET}\n"));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644))?;
    let (ok, text) = run()?;
    assert!(!ok && text.contains("mode 644"), "{text}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let (ok, text) = run()?;
    assert!(ok && text.trim() == "ok", "{text}");
    Ok(())
}
