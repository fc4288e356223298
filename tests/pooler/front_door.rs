//! The front door: authentication methods and their failures, unknown databases, limits,
//! and malformed or hostile startup packets.

use crate::util::{ExtraPooler, Fixture, PASSWORD};
use libtest_mimic::Failed;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const TESTS: &[(&str, crate::Body)] = &[
    ("front_door::scram_and_md5_logins", scram_and_md5_logins),
    (
        "front_door::auth_failures_look_like_postgres",
        auth_failures_look_like_postgres,
    ),
    (
        "front_door::unknown_database_is_refused_at_once",
        unknown_database,
    ),
    (
        "front_door::max_client_conn_gives_an_error",
        max_client_conn,
    ),
    (
        "front_door::query_wait_timeout_gives_an_error",
        query_wait_timeout,
    ),
    (
        "front_door::malformed_startup_packets_are_refused",
        malformed_startup,
    ),
    (
        "front_door::ssl_request_is_declined",
        ssl_request_is_declined,
    ),
];

/// One runtime per test thread, kept alive so that connections outlive `connect`.
fn runtime() -> &'static tokio::runtime::Runtime {
    thread_local! {
        static RT: &'static tokio::runtime::Runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime"),
        ));
    }
    RT.with(|r| *r)
}

fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    runtime().block_on(async {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(c)
    })
}

fn code_of(r: Result<tokio_postgres::Client, tokio_postgres::Error>) -> (String, String) {
    match r {
        Ok(_) => ("ok".into(), String::new()),
        Err(e) => match e.as_db_error() {
            Some(db) => (db.code().code().to_string(), db.message().to_string()),
            None => ("other".into(), e.to_string()),
        },
    }
}

fn scram_and_md5_logins(fx: &Fixture) -> Result<(), Failed> {
    // app: plain password in the config, SCRAM to the client.
    connect(&fx.url("app", "app"))?;
    // md5user: md5 secret from the auth_file, md5 challenge; the database logs in as app.
    let c = connect(&fx.url("forced", "md5user"))?;
    let who = runtime().block_on(crate::util::scalar(&c, "select current_user::text"))?;
    assert_eq!(who, "app");
    // auth_type = md5 with a plain password.
    let p = ExtraPooler::start(fx, "auth_type = \"md5\"", "");
    connect(&p.url())?;
    let (code, _) = code_of(connect(&p.url().replace(PASSWORD, "nope")));
    assert_eq!(code, "28P01");
    Ok(())
}

fn auth_failures_look_like_postgres(fx: &Fixture) -> Result<(), Failed> {
    let wrong = fx.url("app", "app").replace(PASSWORD, "nope");
    let (code, msg) = code_of(connect(&wrong));
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("28P01", "password authentication failed for user \"app\"")
    );
    let unknown = fx.url("app", "ghost");
    let (code, msg) = code_of(connect(&unknown));
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("28P01", "password authentication failed for user \"ghost\"")
    );
    let md5_wrong = fx.url("forced", "md5user").replace(PASSWORD, "nope");
    let (code, _) = code_of(connect(&md5_wrong));
    assert_eq!(code, "28P01");
    Ok(())
}

fn unknown_database(fx: &Fixture) -> Result<(), Failed> {
    let started = Instant::now();
    let (code, msg) = code_of(connect(&fx.url("nowhere", "app")));
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("3D000", "database \"nowhere\" does not exist")
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    Ok(())
}

fn max_client_conn(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start(fx, "max_client_conn = 2", "");
    let a = connect(&p.url())?;
    let b = connect(&p.url())?;
    let (code, msg) = code_of(connect(&p.url()));
    assert_eq!(code, "53300", "{msg}");
    assert!(msg.contains("too many clients"), "{msg}");
    drop((a, b));
    std::thread::sleep(Duration::from_millis(200));
    connect(&p.url())?;
    Ok(())
}

fn query_wait_timeout(fx: &Fixture) -> Result<(), Failed> {
    let p = ExtraPooler::start(fx, "query_wait_timeout = \"1s\"", "pool_size = 1");
    let holder = connect(&p.url())?;
    let waiter = connect(&p.url())?;
    runtime().block_on(async {
        holder.batch_execute("begin; select 1").await?;
        let started = Instant::now();
        let err = waiter
            .batch_execute("select 1")
            .await
            .expect_err("must time out");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        let msg = err
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert_eq!(msg, "query_wait_timeout", "{err:?}");
        holder.batch_execute("commit").await?;
        Ok::<_, Failed>(())
    })
}

fn raw(fx: &Fixture) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", fx.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn malformed_startup(fx: &Fixture) -> Result<(), Failed> {
    // Oversized length: refused with an ErrorResponse, connection closed.
    let mut s = raw(fx);
    s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])?;
    let reply = read_all(s);
    assert_eq!(reply.first(), Some(&b'E'), "{reply:?}");
    // Garbage and a too-short length.
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0, 0, 0, 2][..],
        &[0, 0, 0, 8, 0, 9, 0, 0][..],
    ] {
        let mut s = raw(fx);
        s.write_all(junk)?;
        let _ = read_all(s);
    }
    // A truncated packet left hanging does not block others.
    let mut hanging = raw(fx);
    hanging.write_all(&[0, 0, 1, 0, 0, 3])?;
    let c = connect(&fx.url("app", "app"))?;
    assert_eq!(
        runtime().block_on(crate::util::scalar(&c, "select 3"))?,
        "3"
    );
    Ok(())
}

fn ssl_request_is_declined(fx: &Fixture) -> Result<(), Failed> {
    let mut s = raw(fx);
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    assert_eq!(&b, b"N");
    // psql with sslmode=prefer falls back to plain text.
    let (ok, out, err) = fx.psql("app", "select 'plain'");
    assert!(ok && out == "plain", "{err}");
    Ok(())
}
