//! Named prepared statements in transaction mode: raw-protocol transcripts compared with
//! PostgreSQL's own, pgbench `-M prepared`, tokio-postgres on a pool of 2, schema changes,
//! SQL-level PREPARE, and real Python drivers (psycopg 3, asyncpg).

use crate::util::{rt, ExtraPooler, Fixture};
use bytes::{BufMut, BytesMut};
use libtest_mimic::Failed;
use std::io::{Read, Write};
use std::time::Duration;

pub const TESTS: &[(&str, crate::Body)] = &[
    (
        "prepared::transcripts_match_postgres",
        transcripts_match_postgres,
    ),
    ("prepared::pgbench_prepared", pgbench_prepared),
    (
        "prepared::tokio_postgres_pool_of_two",
        tokio_postgres_pool_of_two,
    ),
    (
        "prepared::schema_change_is_retried",
        schema_change_is_retried,
    ),
    (
        "prepared::sql_prepare_lasts_a_transaction",
        sql_prepare_lasts_a_transaction,
    ),
    (
        "prepared::eviction_bounds_server_statements",
        eviction_bounds_server_statements,
    ),
    ("prepared::python_drivers", python_drivers),
];

// ------------------------------------------------------------------ a raw protocol client

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

struct Raw {
    s: Box<dyn Stream>,
    buf: Vec<u8>,
}

/// One message of a transcript: tag and body; errors keep only severity, code and message.
type Msg = (u8, Vec<u8>);

impl Raw {
    fn tcp(port: u16) -> Raw {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw::start(Box::new(s))
    }

    fn unix(fx: &Fixture) -> Raw {
        let node = fx.cluster.primary();
        let path = node.socket_dir().join(format!(".s.PGSQL.{}", node.port()));
        let s = std::os::unix::net::UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw::start(Box::new(s))
    }

    fn start(s: Box<dyn Stream>) -> Raw {
        let mut raw = Raw { s, buf: Vec::new() };
        let mut body = BytesMut::new();
        body.put_i32(196_608);
        for (k, v) in [("user", "app"), ("database", "app")] {
            body.put_slice(k.as_bytes());
            body.put_u8(0);
            body.put_slice(v.as_bytes());
            body.put_u8(0);
        }
        body.put_u8(0);
        let mut pkt = BytesMut::new();
        pkt.put_i32(body.len() as i32 + 4);
        pkt.put_slice(&body);
        raw.s.write_all(&pkt).unwrap();
        loop {
            let (tag, body) = raw.read();
            assert_ne!(
                tag,
                b'E',
                "login failed: {}",
                String::from_utf8_lossy(&body)
            );
            if tag == b'R' {
                assert_eq!(&body[..4], &[0, 0, 0, 0], "trust expected");
            }
            if tag == b'Z' {
                return raw;
            }
        }
    }

    fn read(&mut self) -> Msg {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let frame: Vec<u8> = self.buf.drain(..len + 1).collect();
                    return (frame[0], frame[5..].to_vec());
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self.s.read(&mut chunk).expect("read (timed out?)");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends `bytes` and reads messages until `zs` ReadyForQuery (or `count` messages when
    /// `zs` is 0); async messages are dropped and errors normalized.
    fn exchange(&mut self, bytes: &[u8], zs: usize, count: usize) -> Vec<Msg> {
        self.s.write_all(bytes).unwrap();
        let mut got = Vec::new();
        let mut seen_z = 0;
        while (zs > 0 && seen_z < zs) || (zs == 0 && got.len() < count) {
            let (tag, body) = self.read();
            match tag {
                b'N' | b'S' | b'A' => continue,
                b'Z' => seen_z += 1,
                _ => {}
            }
            got.push((
                tag,
                if tag == b'E' {
                    normalize_error(&body)
                } else {
                    body
                },
            ));
        }
        got
    }
}

fn normalize_error(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let nul = tail.iter().position(|&b| b == 0).unwrap();
        if matches!(code, b'V' | b'C' | b'M') {
            out.push(code);
            out.extend_from_slice(&tail[..=nul]);
        }
        rest = &tail[nul + 1..];
    }
    out
}

fn msg(tag: u8, f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut body = BytesMut::new();
    f(&mut body);
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn cstr(b: &mut BytesMut, s: &str) {
    b.put_slice(s.as_bytes());
    b.put_u8(0);
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    msg(b'P', |b| {
        cstr(b, name);
        cstr(b, sql);
        b.put_i16(0);
    })
}

fn bind(stmt: &str, params: &[&str]) -> Vec<u8> {
    msg(b'B', |b| {
        cstr(b, "");
        cstr(b, stmt);
        b.put_i16(0);
        b.put_i16(params.len() as i16);
        for p in params {
            b.put_i32(p.len() as i32);
            b.put_slice(p.as_bytes());
        }
        b.put_i16(0);
    })
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    msg(b'D', |b| {
        b.put_u8(kind);
        cstr(b, name);
    })
}

fn close(kind: u8, name: &str) -> Vec<u8> {
    msg(b'C', |b| {
        b.put_u8(kind);
        cstr(b, name);
    })
}

fn execute() -> Vec<u8> {
    msg(b'E', |b| {
        cstr(b, "");
        b.put_i32(0);
    })
}

fn sync() -> Vec<u8> {
    msg(b'S', |_| {})
}

fn flush() -> Vec<u8> {
    msg(b'H', |_| {})
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', |b| cstr(b, sql))
}

/// Batches of a scenario: bytes, ReadyForQuery count to wait for, or message count if 0.
type Batch = (Vec<u8>, usize, usize);

fn b(parts: &[Vec<u8>], zs: usize) -> Batch {
    (parts.concat(), zs, 0)
}

fn scenarios() -> Vec<(&'static str, Vec<Batch>)> {
    let run = |s: &str, p: &[&str]| [bind(s, p), execute(), sync()].concat();
    vec![
        (
            "parse bind describe close twice",
            vec![
                b(&[parse("s1", "select $1::int + 1"), sync()], 1),
                (run("s1", &["41"]), 1, 0),
                b(&[describe(b'S', "s1"), sync()], 1),
                b(&[close(b'S', "s1"), sync()], 1),
                b(&[close(b'S', "s1"), sync()], 1),
                (run("s1", &["1"]), 1, 0),
            ],
        ),
        (
            "syntax error in a named statement, name reusable",
            vec![
                b(
                    &[parse("s2", "selec 1"), bind("s2", &[]), execute(), sync()],
                    1,
                ),
                b(
                    &[parse("s2", "select 2"), bind("s2", &[]), execute(), sync()],
                    1,
                ),
            ],
        ),
        (
            "duplicate name",
            vec![
                b(&[parse("s3", "select 3"), sync()], 1),
                b(
                    &[parse("s3", "select 3"), bind("s3", &[]), execute(), sync()],
                    1,
                ),
                (run("s3", &[]), 1, 0),
            ],
        ),
        (
            "describe before bind, flush",
            vec![
                (
                    [parse("s4", "select $1::text as t"), flush()].concat(),
                    0,
                    1,
                ),
                ([describe(b'S', "s4"), flush()].concat(), 0, 2),
                b(
                    &[bind("s4", &["x"]), describe(b'P', ""), execute(), sync()],
                    1,
                ),
            ],
        ),
        (
            "pipeline mixing named and unnamed",
            vec![b(
                &[
                    parse("", "select 1"),
                    bind("", &[]),
                    execute(),
                    parse("s5", "select 5"),
                    bind("s5", &[]),
                    execute(),
                    bind("", &[]),
                    execute(),
                    close(b'S', "s5"),
                    parse("s5", "select 55"),
                    bind("s5", &[]),
                    execute(),
                    sync(),
                ],
                1,
            )],
        ),
        (
            "error before named statements in a pipeline",
            vec![
                b(&[parse("s6", "select 6"), sync()], 1),
                b(
                    &[
                        parse("", "select 1/0"),
                        bind("", &[]),
                        execute(),
                        parse("s7", "select 7"),
                        close(b'S', "s6"),
                        bind("s6", &[]),
                        execute(),
                        sync(),
                    ],
                    1,
                ),
                (run("s7", &[]), 1, 0),
                (run("s6", &[]), 1, 0),
            ],
        ),
        (
            "inside a transaction block, then deallocate all",
            vec![
                b(&[query("begin")], 1),
                b(
                    &[parse("s8", "select 8"), bind("s8", &[]), execute(), sync()],
                    1,
                ),
                (run("s8", &[]), 1, 0),
                b(&[query("commit")], 1),
                (run("s8", &[]), 1, 0),
                b(&[query("deallocate all")], 1),
                (run("s8", &[]), 1, 0),
                b(&[parse("s8", "select 88"), sync()], 1),
                (run("s8", &[]), 1, 0),
                b(&[query("discard all")], 1),
                (run("s8", &[]), 1, 0),
            ],
        ),
    ]
}

fn transcript(raw: &mut Raw, batches: &[Batch]) -> Vec<Msg> {
    batches
        .iter()
        .flat_map(|(bytes, zs, count)| raw.exchange(bytes, *zs, *count))
        .collect()
}

fn transcripts_match_postgres(fx: &Fixture) -> Result<(), Failed> {
    // Pool of 2: consecutive clients land on connections that have or lack the statements.
    let pooler = ExtraPooler::start(fx, "auth_type = \"trust\"", "pool_size = 2");
    for (name, batches) in scenarios() {
        let want = transcript(&mut Raw::unix(fx), &batches);
        for round in 0..3 {
            let got = transcript(&mut Raw::tcp(pooler.port), &batches);
            assert_eq!(
                got.iter().map(show).collect::<Vec<_>>(),
                want.iter().map(show).collect::<Vec<_>>(),
                "scenario {name:?}, round {round}"
            );
        }
    }
    Ok(())
}

fn show(m: &Msg) -> String {
    format!("{} {}", m.0 as char, String::from_utf8_lossy(&m.1))
}

// ------------------------------------------------------------------ real clients

fn pgbench_prepared(fx: &Fixture) -> Result<(), Failed> {
    let bin = pgsluice::cluster::PgBin::find(None)?;
    let url = fx.url("app", "app");
    let init = std::process::Command::new(bin.path("pgbench"))
        .args(["-i", "-q", "-s", "1", &url])
        .output()?;
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    // The fixture's pool holds 4 server connections: 12 clients share them.
    for (db, clients) in [("app", "12"), ("app_statement", "6"), ("app_session", "4")] {
        let out = std::process::Command::new(bin.path("pgbench"))
            .args(["-n", "-S", "-M", "prepared", "-c", clients, "-t", "300"])
            .arg(fx.url(db, "app"))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{db}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("number of failed transactions: 0"), "{text}");
    }
    let out = std::process::Command::new(bin.path("pgbench"))
        // pgbench prepares inside the transaction with a blocking call: one thread per client,
        // or a client waiting for a server connection would stall the others holding one.
        .args([
            "-n", "-M", "prepared", "-c", "8", "-j", "8", "-t", "100", &url,
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn tokio_postgres_pool_of_two(fx: &Fixture) -> Result<(), Failed> {
    let pooler = ExtraPooler::start(fx, "", "pool_size = 2");
    rt().block_on(async {
        let r: Result<(), tokio_postgres::Error> = async {
            let mut tasks = Vec::new();
            for c in 0..6i32 {
                let (client, conn) =
                    tokio_postgres::connect(&pooler.url(), tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                tasks.push(tokio::spawn(async move {
                    let add = client.prepare("select $1::int + $2::int").await?;
                    let own = client
                        .prepare(&format!("select $1::text || '-{c}'"))
                        .await?;
                    for i in 0..150i32 {
                        let r = client.query_one(&add, &[&i, &c]).await?;
                        assert_eq!(r.get::<_, i32>(0), i + c);
                        let r = client.query_one(&own, &[&i.to_string()]).await?;
                        assert_eq!(r.get::<_, String>(0), format!("{i}-{c}"));
                        if i % 50 == 0 {
                            // A transaction block using both statements.
                            client.batch_execute("begin").await?;
                            client.query_one(&add, &[&1i32, &2i32]).await?;
                            client.query_one(&own, &[&"t"]).await?;
                            client.batch_execute("commit").await?;
                        }
                    }
                    // Closing (drop) then preparing the same text again.
                    drop(own);
                    let again = client
                        .prepare(&format!("select $1::text || '-{c}'"))
                        .await?;
                    let r = client.query_one(&again, &[&"z"]).await?;
                    assert_eq!(r.get::<_, String>(0), format!("z-{c}"));
                    Ok::<_, tokio_postgres::Error>(())
                }));
            }
            for t in tasks {
                t.await.expect("task")?;
            }
            Ok(())
        }
        .await;
        r.map_err(|e| Failed::from(format!("{e:?}")))
    })
}

fn schema_change_is_retried(fx: &Fixture) -> Result<(), Failed> {
    let pooler = ExtraPooler::start(fx, "auth_type = \"trust\"", "pool_size = 1");
    let mut a = Raw::tcp(pooler.port);
    a.exchange(
        &query("drop table if exists sc_t; create table sc_t(a int); insert into sc_t values (1)"),
        1,
        0,
    );
    a.exchange(&[parse("sc", "select * from sc_t"), sync()].concat(), 1, 0);
    let run = [bind("sc", &[]), describe(b'P', ""), execute(), sync()].concat();
    let first = a.exchange(&run, 1, 0);
    assert!(first.iter().all(|m| m.0 != b'E'), "{first:?}");
    fx.cluster
        .primary()
        .psql("app", "alter table sc_t add column b int default 7")?;
    // Implicit transaction: retried transparently, the new column shows.
    let second = a.exchange(&run, 1, 0);
    assert!(
        second.iter().all(|m| m.0 != b'E'),
        "{:?}",
        second.iter().map(show).collect::<Vec<_>>()
    );
    let row = second.iter().find(|m| m.0 == b'D').expect("a row");
    assert_eq!(&row.1[..2], &[0, 2], "two columns after the change");
    // Inside a transaction block the error reaches the client, as PostgreSQL sends it.
    fx.cluster
        .primary()
        .psql("app", "alter table sc_t add column c int")?;
    a.exchange(&query("begin"), 1, 0);
    let third = a.exchange(&run, 1, 0);
    let err = third
        .iter()
        .find(|m| m.0 == b'E')
        .expect("error in a block");
    assert!(show(err).contains("0A000"), "{}", show(err));
    a.exchange(&query("rollback"), 1, 0);
    let fourth = a.exchange(&run, 1, 0);
    assert!(
        fourth.iter().all(|m| m.0 != b'E'),
        "{:?}",
        fourth.iter().map(show).collect::<Vec<_>>()
    );
    Ok(())
}

fn sql_prepare_lasts_a_transaction(fx: &Fixture) -> Result<(), Failed> {
    // With `session_features = "pin"` (the default) the client keeps its server instead:
    // see transparency::sql_prepare_pins.
    let pooler = ExtraPooler::start(
        fx,
        "auth_type = \"trust\"",
        "pool_size = 1\nsession_features = \"ignore\"",
    );
    let mut a = Raw::tcp(pooler.port);
    let same = a.exchange(&query("prepare q as select 42; execute q"), 1, 0);
    assert!(same.iter().any(|m| m.0 == b'D'), "{same:?}");
    let later = a.exchange(&query("execute q"), 1, 0);
    let err = later
        .iter()
        .find(|m| m.0 == b'E')
        .expect("gone after the transaction");
    assert!(show(err).contains("26000"), "{}", show(err));
    // No other client ever sees it either.
    let mut b = Raw::tcp(pooler.port);
    let again = b.exchange(&query("prepare q as select 1"), 1, 0);
    assert!(again.iter().all(|m| m.0 != b'E'), "{again:?}");
    Ok(())
}

fn eviction_bounds_server_statements(fx: &Fixture) -> Result<(), Failed> {
    let pooler = ExtraPooler::start(
        fx,
        "auth_type = \"trust\"\nmax_prepared_statements = 3",
        "pool_size = 1",
    );
    let mut a = Raw::tcp(pooler.port);
    for i in 0..8 {
        let name = format!("e{i}");
        a.exchange(
            &[parse(&name, &format!("select {i}")), sync()].concat(),
            1,
            0,
        );
    }
    for round in 0..3 {
        for i in 0..8 {
            let got = a.exchange(
                &[bind(&format!("e{i}"), &[]), execute(), sync()].concat(),
                1,
                0,
            );
            let row = got.iter().find(|m| m.0 == b'D').expect("row");
            assert!(
                row.1.ends_with(i.to_string().as_bytes()),
                "round {round}: {got:?}"
            );
        }
    }
    let count = a.exchange(
        &query("select count(*) from pg_prepared_statements where name like 'pgsl_%'"),
        1,
        0,
    );
    let row = count.iter().find(|m| m.0 == b'D').expect("row");
    assert!(row.1.ends_with(b"3"), "{count:?}");
    Ok(())
}

fn python_drivers(fx: &Fixture) -> Result<(), Failed> {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: python3 is not installed");
        return Ok(());
    }
    let pooler = ExtraPooler::start(fx, "", "pool_size = 2");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/drivers/prepared_drivers.py"
    );
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(format!(
            "postgresql://app:{}@127.0.0.1:{}/app",
            crate::util::PASSWORD,
            pooler.port
        ))
        .output()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("psycopg ok") && text.contains("asyncpg ok"),
        "{text}"
    );
    Ok(())
}
