//! Differential transparency suite: each scenario runs directly against PostgreSQL and through
//! the pooler in session and transaction modes, over pools of ONE server connection (`solo`,
//! `solo_session`) so that the clients share it, and what every client sees must be the same.
//!
//! A scenario is a list of steps for two clients, A and B. Directly and in transaction mode
//! the steps run interleaved as written; in session mode (where a pool of one serves one client
//! at a time) A's steps run first, then A leaves, then B's. Scenarios keep the clients'
//! data independent so that both orders show each client the same thing.

use crate::transparency_cases::CASES;
use crate::util::{rt, Fixture, PASSWORD};
use libtest_mimic::Failed;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

pub const TESTS: &[(&str, crate::Body)] = &[
    ("transparency::settings_do_not_leak", |fx| {
        run(fx, "settings")
    }),
    ("transparency::tiny_statement_timeout", |fx| {
        run(fx, "tiny_statement_timeout")
    }),
    ("transparency::set_local_and_rollback", |fx| {
        run(fx, "set_local")
    }),
    ("transparency::characteristics_and_discard", |fx| {
        run(fx, "characteristics")
    }),
    ("transparency::reset_returns_to_startup", |fx| {
        run(fx, "reset")
    }),
    ("transparency::role_is_per_client", |fx| run(fx, "role")),
    ("transparency::leave_mid_transaction_prepared", |fx| {
        run(fx, "leave_mid_transaction")
    }),
    ("transparency::extended_protocol_set", |fx| {
        run(fx, "extended_set")
    }),
    ("transparency::errors_reach_the_client_unchanged", |fx| {
        run(fx, "errors")
    }),
    ("transparency::copy_in_and_out", copy_in_and_out),
    ("transparency::temp_table_pins", |fx| run(fx, "temp_table")),
    ("transparency::advisory_lock_pins", |fx| run(fx, "advisory")),
    ("transparency::with_hold_cursor_pins", |fx| {
        run(fx, "cursor")
    }),
    ("transparency::sql_prepare_pins", |fx| {
        run(fx, "sql_prepare")
    }),
    (
        "transparency::session_features_error",
        session_features_error,
    ),
    (
        "transparency::pinned_client_is_counted",
        pinned_client_is_counted,
    ),
];

/// Where a scenario runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Direct,
    Session,
    Transaction,
}

impl Target {
    /// Pools of one, except for transaction mode when the case pins a client (a pinned
    /// client keeps the only connection: the other would wait).
    fn url(self, fx: &Fixture, one_server: bool) -> String {
        let (port, db) = match self {
            Target::Direct => (fx.cluster.primary().port(), "app"),
            Target::Session => (fx.port, "solo_session"),
            Target::Transaction if one_server => (fx.port, "solo"),
            Target::Transaction => (fx.port, "app"),
        };
        format!("host=127.0.0.1 port={port} user=app password={PASSWORD} dbname={db}")
    }
}

/// One step: which client (0 = A, 1 = B) and what it does.
///
/// `x:SQL` runs SQL with the extended protocol (a named statement, as tokio-postgres does);
/// `!close` ends the client's connection (the next step opens a new one); anything else is a
/// simple-protocol query.
pub type Step = (usize, &'static str);

/// A named scenario: setup run directly as a superuser-free `app` client, then the steps.
pub struct Case {
    pub name: &'static str,
    pub setup: &'static str,
    pub steps: &'static [Step],
    /// Run over pools of one server connection (false: a client is pinned meanwhile).
    pub one_server: bool,
}

fn run(fx: &Fixture, name: &str) -> Result<(), Failed> {
    let case = CASES
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("no case {name}"))?;
    rt().block_on(async {
        prepare(fx).await?;
        let direct = transcript(fx, case, Target::Direct).await?;
        for target in [Target::Transaction, Target::Session] {
            let got = transcript(fx, case, target).await?;
            for who in 0..2 {
                let want: Vec<_> = direct.iter().filter(|(w, _)| *w == who).collect();
                let have: Vec<_> = got.iter().filter(|(w, _)| *w == who).collect();
                if want != have {
                    return Err(format!(
                        "{name}: client {} differs through {target:?}\n direct: {want:#?}\n pooled: {have:#?}",
                        ["A", "B"][who]
                    )
                    .into());
                }
            }
        }
        Ok(())
    })
}

/// A role the `app` user may SET ROLE to (created once).
async fn prepare(fx: &Fixture) -> Result<(), Failed> {
    fx.cluster
        .primary()
        .psql(
            "app",
            "DO $$ BEGIN CREATE ROLE tr_reader NOLOGIN; GRANT tr_reader TO app; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .map_err(|e| format!("role: {e}"))?;
    Ok(())
}

async fn connect(url: &str) -> Result<Client, Failed> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Runs a case against `target`; returns (client, "step => result") in the order executed.
async fn transcript(
    fx: &Fixture,
    case: &Case,
    target: Target,
) -> Result<Vec<(usize, String)>, Failed> {
    let url = target.url(fx, case.one_server);
    if !case.setup.is_empty() {
        connect(&Target::Direct.url(fx, true))
            .await?
            .batch_execute(case.setup)
            .await?;
    }
    let mut order: Vec<Step> = case.steps.to_vec();
    if target == Target::Session {
        order.sort_by_key(|(who, _)| *who);
    }
    let mut clients: [Option<Client>; 2] = [None, None];
    let mut out = Vec::new();
    for (i, (who, step)) in order.iter().enumerate() {
        if *step == "!close" {
            clients[*who] = None;
            out.push((*who, "!close".to_string()));
            continue;
        }
        if clients[*who].is_none() {
            clients[*who] = Some(connect(&url).await?);
        }
        let Some(c) = clients[*who].as_ref() else {
            continue;
        };
        let result = match step.strip_prefix("x:") {
            Some(sql) => extended(c, sql).await,
            None => simple(c, step).await,
        };
        out.push((*who, format!("{step} => {result}")));
        // Session mode: A leaves before B's first step (a pool of one serves one client).
        let next_is_b = order.get(i + 1).is_some_and(|(w, _)| *w != *who);
        if target == Target::Session && next_is_b {
            clients[*who] = None;
        }
    }
    Ok(out)
}

async fn simple(c: &Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(msgs) => msgs
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL"))
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
                SimpleQueryMessage::CommandComplete(n) => Some(format!("({n})")),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => error_text(&e),
    }
}

async fn extended(c: &Client, sql: &str) -> String {
    match c.query(sql, &[]).await {
        Ok(rows) => rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<_, Option<String>>(i)
                            .map(|v| v.unwrap_or_else(|| "NULL".into()))
                            .or_else(|_| r.try_get::<_, i32>(i).map(|v| v.to_string()))
                            .or_else(|_| r.try_get::<_, i64>(i).map(|v| v.to_string()))
                            .or_else(|_| r.try_get::<_, bool>(i).map(|v| v.to_string()))
                            .unwrap_or_else(|_| "?".into())
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => error_text(&e),
    }
}

/// Everything an ErrorResponse says that a client can act on.
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!(
            "ERROR {} {}: {} detail={:?} hint={:?} position={:?}",
            d.severity(),
            d.code().code(),
            d.message(),
            d.detail(),
            d.hint(),
            d.position(),
        ),
        None => format!("FAILED {e}"),
    }
}

/// COPY in and out through each target: same rows back, same counts.
fn copy_in_and_out(fx: &Fixture) -> Result<(), Failed> {
    use futures_util::{pin_mut, SinkExt, TryStreamExt};
    rt().block_on(async {
        let mut seen = Vec::new();
        for target in [Target::Direct, Target::Transaction, Target::Session] {
            let c = connect(&target.url(fx, true)).await?;
            c.batch_execute("drop table if exists tr_copy; create table tr_copy (a int, b text)")
                .await?;
            let sink = c.copy_in("copy tr_copy from stdin").await?;
            pin_mut!(sink);
            sink.send(bytes::Bytes::from_static(b"1\tone\n2\ttwo\n"))
                .await?;
            let n = sink.finish().await?;
            let stream = c.copy_out("copy tr_copy to stdout").await?;
            let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
            let text = String::from_utf8_lossy(&chunks.concat()).to_string();
            // A second client on the same server sees a clean session after the COPY.
            drop(c);
            let other = connect(&target.url(fx, true)).await?;
            let after = simple(&other, "select count(*) from tr_copy").await;
            seen.push((n, text, after));
        }
        if seen.iter().any(|s| *s != seen[0]) {
            return Err(format!("COPY differs: {seen:#?}").into());
        }
        Ok(())
    })
}

/// `session_features = "error"` (database `app_strict`): the feature's statement runs, the
/// pooler undoes its state and the client's next request fails with an error naming it.
fn session_features_error(fx: &Fixture) -> Result<(), Failed> {
    rt().block_on(async {
        let url = format!(
            "host=127.0.0.1 port={} user=app password={PASSWORD} dbname=app_strict",
            fx.port
        );
        let c = connect(&url).await?;
        c.batch_execute("create temp table tr_strict (a int)")
            .await?;
        let refused = simple(&c, "select 1").await;
        if !(refused.contains("0A000") && refused.contains("temporary tables")) {
            return Err(format!("expected a refusal naming the feature: {refused}").into());
        }
        let gone = simple(&c, "select * from tr_strict").await;
        if !gone.contains("42P01") {
            return Err(format!("temporary table should be gone: {gone}").into());
        }
        let fine = simple(&c, "select 2").await;
        if fine != "2 (1)" {
            return Err(format!("client goes on: {fine}").into());
        }
        Ok(())
    })
}

/// A pinned client keeps its server connection: counted in SHOW POOLS (`cl_pinned`) while a
/// temporary table exists, released when it is dropped, so another client of the pool of one
/// then gets the connection and sees no temporary table.
fn pinned_client_is_counted(fx: &Fixture) -> Result<(), Failed> {
    let pinned = || {
        let (_, pools, _) = fx.console("app", "SHOW POOLS");
        crate::util::cell(&pools, "solo", "cl_pinned")
    };
    rt().block_on(async {
        let url = Target::Transaction.url(fx, true);
        let a = connect(&url).await?;
        let pid = simple(&a, "select pg_backend_pid()").await;
        a.batch_execute("create temp table tr_pin (a int)").await?;
        if pinned().as_deref() != Some("1") {
            return Err(format!("cl_pinned after CREATE TEMP TABLE: {:?}", pinned()).into());
        }
        a.batch_execute("insert into tr_pin values (1)").await?;
        if simple(&a, "select pg_backend_pid()").await != pid {
            return Err("a pinned client changed server connection".into());
        }
        a.batch_execute("drop table tr_pin").await?;
        if pinned().as_deref() != Some("0") {
            return Err(format!("cl_pinned after DROP TABLE: {:?}", pinned()).into());
        }
        let b = connect(&url).await?;
        let temp = "select count(*) from pg_class where relpersistence = 't'";
        let seen = simple(&b, temp).await;
        if seen != "0 (1)" {
            return Err(format!("B sees temporary objects: {seen}").into());
        }
        Ok(())
    })
}
