//! Authentication that tells nothing: SCRAM salts and timing alike for real and unknown users,
//! the HBA rule's method used (an MD5 secret under `scram-sha-256` fails), the database's
//! existence told only after authentication, empty passwords refused, and the console closed
//! to `trust` unless `admin_trust` is set.

use crate::util::{psql_at, rt, ExtraPooler, Fixture, PASSWORD};
use libtest_mimic::Failed;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[
    (
        "auth::scram_salts_cannot_tell_unknown_users_from_real_ones",
        salts,
    ),
    ("auth::unknown_users_take_as_long_as_real_ones", timing),
    (
        "auth::md5_secret_under_a_scram_rule_is_refused",
        md5_under_scram,
    ),
    (
        "auth::database_existence_is_told_after_authentication",
        database_after_auth,
    ),
    ("auth::empty_passwords_are_refused", empty_passwords),
    (
        "auth::console_refuses_trust_unless_admin_trust",
        console_trust,
    ),
];

/// One backend message: (tag, body).
fn read_msg(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head)?;
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0; len.saturating_sub(4)];
    s.read_exact(&mut body)?;
    Ok((head[0], body))
}

/// Sends a startup packet for `user`/`db`; returns the first authentication request code.
fn start(port: u16, user: &str, db: &str) -> (TcpStream, i32) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", db)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut pkt = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    pkt.extend_from_slice(&body);
    s.write_all(&pkt).unwrap();
    let (tag, body) = read_msg(&mut s).unwrap();
    assert_eq!(tag, b'R', "{}", String::from_utf8_lossy(&body));
    let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    (s, code)
}

/// A SCRAM attempt up to server-first: (salt, iterations, time from the startup packet to
/// server-first).
fn server_first(port: u16, user: &str) -> (String, String, Duration) {
    let began = Instant::now();
    let (mut s, code) = start(port, user, "app");
    assert_eq!(code, 10, "SASL for {user}");
    let first = b"n,,n=,r=0123456789abcdefghijkl";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(first.len() as i32).to_be_bytes());
    body.extend_from_slice(first);
    let mut msg = vec![b'p'];
    msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(&body);
    s.write_all(&msg).unwrap();
    let (tag, body) = read_msg(&mut s).unwrap();
    let took = began.elapsed();
    assert_eq!(tag, b'R');
    assert_eq!(&body[..4], &11i32.to_be_bytes(), "SASLContinue");
    let text = String::from_utf8(body[4..].to_vec()).unwrap();
    let field = |k: &str| {
        text.split(',')
            .find_map(|f| f.strip_prefix(k))
            .unwrap_or_default()
            .to_string()
    };
    (field("s="), field("i="), took)
}

fn salts(fx: &Fixture) -> Result<(), Failed> {
    // `app` has a plain password in [users]; `ghost` does not exist.
    let (app1, app_iter1, _) = server_first(fx.port, "app");
    let (app2, app_iter2, _) = server_first(fx.port, "app");
    let (ghost1, ghost_iter1, _) = server_first(fx.port, "ghost");
    let (ghost2, ghost_iter2, _) = server_first(fx.port, "ghost");
    assert_eq!(app1, app2, "a real user's salt is stable across attempts");
    assert_eq!(
        ghost1, ghost2,
        "an unknown user's salt is stable across attempts"
    );
    assert_ne!(app1, ghost1, "salts are per user");
    assert_eq!(app1.len(), ghost1.len(), "same salt length");
    assert_eq!(
        (&app_iter1, &app_iter2, &ghost_iter2),
        (&ghost_iter1, &ghost_iter1, &ghost_iter1),
        "same iteration count"
    );
    assert_eq!(app_iter1, "4096");
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn timing(fx: &Fixture) -> Result<(), Failed> {
    let (mut app, mut ghost) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        app.push(server_first(fx.port, "app").2);
        ghost.push(server_first(fx.port, "ghost").2);
    }
    let (a, g) = (median(app), median(ghost));
    eprintln!("server-first median: real user {a:?}, unknown user {g:?}");
    // Both run one PBKDF2 before answering; without it for unknown users the ratio is ~100.
    assert!(g * 3 > a && a * 3 > g, "app {a:?} vs ghost {g:?}");
    Ok(())
}

fn code_of(url: &str) -> (String, String) {
    rt().block_on(async {
        match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            Ok(_) => ("ok".into(), String::new()),
            Err(e) => e
                .as_db_error()
                .map_or(("other".into(), e.to_string()), |d| {
                    (d.code().code().to_string(), d.message().to_string())
                }),
        }
    })
}

fn md5_under_scram(fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let users = dir.path().join("users.txt");
    let md5 = pgsluice::auth::md5_hex(PASSWORD, "md5only");
    std::fs::write(&users, format!("\"md5only\" \"{md5}\"\n"))?;
    let keys = format!(
        "auth_type = \"scram-sha-256\"\nauth_file = \"{}\"",
        users.display()
    );
    let p = ExtraPooler::start(fx, &keys, "");
    // Offered SCRAM (not MD5), and refused even with the right password.
    let (_s, code) = start(p.port, "md5only", "app");
    assert_eq!(code, 10, "SASL, not MD5 (5)");
    let url = format!(
        "host=127.0.0.1 port={} user=md5only password={PASSWORD} dbname=app",
        p.port
    );
    let (code, msg) = code_of(&url);
    assert_eq!(code, "28P01", "{msg}");
    // Its salt looks like an unknown user's: same length, same iterations, stable.
    let (a, ai, _) = server_first(p.port, "md5only");
    let (b, _, _) = server_first(p.port, "md5only");
    let (g, gi, _) = server_first(p.port, "ghost");
    assert_eq!((a.len(), &ai), (g.len(), &gi));
    assert_eq!(a, b);
    Ok(())
}

fn database_after_auth(fx: &Fixture) -> Result<(), Failed> {
    let url = |user: &str, pw: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password={pw} dbname=nowhere",
            fx.port
        )
    };
    assert_eq!(code_of(&url("app", "wrong")).0, "28P01", "wrong password");
    assert_eq!(code_of(&url("ghost", PASSWORD)).0, "28P01", "unknown user");
    let (code, msg) = code_of(&url("app", PASSWORD));
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("3D000", "database \"nowhere\" does not exist"),
        "told once authenticated"
    );
    // The startup packet alone gets an authentication request, not an error.
    let (_s, code) = start(fx.port, "ghost", "nowhere");
    assert_eq!(code, 10);
    Ok(())
}

fn empty_passwords(fx: &Fixture) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "\"nopw\" \"\"\n")?;
    let hba = dir.path().join("hba.conf");
    std::fs::write(&hba, "host all all 127.0.0.1/32 scram-sha-256\n")?;
    let keys = format!(
        "auth_file = \"{}\"\nauth_hba_file = \"{}\"",
        users.display(),
        hba.display()
    );
    let p = ExtraPooler::start(fx, &keys, "");
    let url = |user: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password='' dbname=app",
            p.port
        )
    };
    assert_eq!(
        code_of(&url("nopw")).0,
        "28P01",
        "SCRAM with an empty secret"
    );
    // The same user under the `password` method, sending an empty password in clear.
    std::fs::write(&hba, "host all all 127.0.0.1/32 password\n")?;
    let p2 = ExtraPooler::start(fx, &keys, "");
    let url2 = format!(
        "host=127.0.0.1 port={} user=nopw password='' dbname=app",
        p2.port
    );
    assert_eq!(code_of(&url2).0, "28P01", "cleartext empty password");
    // The config refuses an empty password outright.
    let text = "[users.bob]\npassword = \"\"\n";
    let err = pgsluice::config::from_str(text, "t")
        .unwrap_err()
        .to_string();
    assert!(err.contains("users.bob.password"), "{err}");
    Ok(())
}

fn console_trust(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start(fx, "auth_type = \"trust\"\nadmin_users = [\"app\"]", "");
    let (ok, _, err) = psql_at(p.port, "pgsluice", "app", &["-c", "SHOW VERSION"]);
    assert!(!ok && err.contains("admin_trust"), "{err}");
    // Ordinary databases still trust.
    assert!(psql_at(p.port, "app", "app", &["-c", "select 1"]).0);
    let p = ExtraPooler::start(
        fx,
        "auth_type = \"trust\"\nadmin_users = [\"app\"]\nadmin_trust = true",
        "",
    );
    let (ok, out, err) = psql_at(p.port, "pgsluice", "app", &["-c", "SHOW VERSION"]);
    assert!(ok && out.contains("pgsluice"), "{out}{err}");
    Ok(())
}
