//! Unit tests of the statement classifier.

use super::*;

fn q(sql: &str) -> Vec<u8> {
    let mut out = vec![b'Q'];
    out.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    out.extend_from_slice(sql.as_bytes());
    out.push(0);
    out
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn parse(sql: &str) -> Vec<u8> {
    let mut body = b"\0".to_vec();
    body.extend_from_slice(sql.as_bytes());
    body.extend_from_slice(&[0, 0, 0]);
    msg(b'P', &body)
}

fn reads(sql: &str) -> bool {
    classify(&q(sql)).read_only
}

#[test]
fn plain_selects_are_reads() {
    assert!(reads("SELECT 1"));
    assert!(reads("select pg_is_in_recovery()"));
    assert!(reads(
        "SELECT abalance FROM pgbench_accounts WHERE aid = 42;"
    ));
    assert!(reads("  -- hi\n select count(*) from t where x in (1,2)"));
    assert!(reads("WITH a AS (SELECT 1) SELECT * FROM a"));
    assert!(reads("SELECT 'for update; insert' FROM t"));
    assert!(reads("SHOW server_version"));
}

#[test]
fn unsure_statements_go_to_the_primary() {
    assert!(!reads("SELECT * FROM t FOR UPDATE"));
    assert!(!reads("SELECT * FROM t FOR SHARE"));
    assert!(!reads("SELECT nextval('s')"));
    assert!(!reads("SELECT my_function(1)"));
    assert!(!reads("SELECT public.do_things()"));
    assert!(!reads("SELECT * INTO t2 FROM t"));
    assert!(!reads(
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"
    ));
    assert!(!reads("SELECT 1; DELETE FROM t"));
    assert!(!reads("INSERT INTO t VALUES (1)"));
    assert!(!reads("BEGIN"));
    assert!(!reads("SELECT $$x$$"));
    assert!(!reads(""));
}

#[test]
fn partial_or_mixed_batches_go_to_the_primary() {
    let mut b = q("SELECT 1");
    b.truncate(b.len() - 2);
    assert!(!classify(&b).read_only);
    let mut b = q("SELECT 1");
    b.extend(q("UPDATE t SET x = 1"));
    assert!(!classify(&b).read_only);
    let mut b = q("SELECT 1");
    b.extend(q("SELECT 2"));
    assert!(classify(&b).read_only);
}

#[test]
fn extended_batches_need_a_sync() {
    let mut b = parse("SELECT abalance FROM pgbench_accounts WHERE aid = $1");
    b.extend(msg(b'B', b"\0\0\0\0\0\0\0\0"));
    b.extend(msg(b'E', b"\0\0\0\0\0"));
    assert!(!classify(&b).read_only, "no Sync yet");
    b.extend(msg(b'S', b""));
    assert!(classify(&b).read_only);
    let mut w = parse("UPDATE t SET x = $1");
    w.extend(msg(b'S', b""));
    assert!(!classify(&w).read_only);
    // A Bind of a statement prepared earlier: the text is unknown.
    let mut bind = msg(b'B', b"\0s1\0\0\0\0\0\0\0");
    bind.extend(msg(b'S', b""));
    assert!(!classify(&bind).read_only);
}

#[test]
fn read_only_transactions_and_session_changes() {
    assert!(classify(&q("BEGIN READ ONLY")).begins_read_only);
    assert!(
        classify(&q(
            "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
        ))
        .begins_read_only
    );
    assert!(!classify(&q("BEGIN READ WRITE")).begins_read_only);
    assert!(!classify(&q("BEGIN")).begins_read_only);
    assert!(!classify(&q("BEGIN READ ONLY")).read_only);
    assert_eq!(
        classify(&q("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")).session,
        Some(SessionChange::ReadOnly(true))
    );
    assert_eq!(
        classify(&q("set default_transaction_read_only = 'off'")).session,
        Some(SessionChange::ReadOnly(false))
    );
    assert_eq!(
        classify(&q("SET default_transaction_read_only TO on")).session,
        Some(SessionChange::ReadOnly(true))
    );
    assert_eq!(
        classify(&q("SET pgsluice.route = replica")).session,
        Some(SessionChange::Route(Some(Target::Replica)))
    );
    assert_eq!(
        classify(&q("SET pgsluice.route TO 'primary'")).session,
        Some(SessionChange::Route(Some(Target::Primary)))
    );
    assert_eq!(
        classify(&q("RESET pgsluice.route")).session,
        Some(SessionChange::Route(None))
    );
}

#[test]
fn comments_force_a_target() {
    let c = classify(&q("/* pgsluice:primary */ SELECT 1"));
    assert_eq!(c.forced, Some(Target::Primary));
    assert!(c.read_only);
    let c = classify(&q("/* pgsluice:replica */ SELECT f()"));
    assert_eq!(c.forced, Some(Target::Replica));
    assert_eq!(classify(&q("/* other */ SELECT 1")).forced, None);
}
