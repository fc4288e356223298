//! Wildcard databases (`[databases."*"]`): any database name is served under its own name, a
//! database created after start works at once, an unknown one gets PostgreSQL's own error, it
//! works with auth_query, and DROP DATABASE succeeds while the pooler holds idle connections.

use crate::util::{ExtraPooler, Fixture, PASSWORD};
use libtest_mimic::Failed;
use tokio_postgres::NoTls;

pub const TESTS: &[(&str, crate::Body)] = &[("wildcard::any_database_by_name", any_database)];

/// `(first column of the first row, or the error's "SQLSTATE: message")`.
async fn ask(url: &str, sql: &str) -> String {
    let client = match tokio_postgres::connect(url, NoTls).await {
        Ok((c, conn)) => {
            tokio::spawn(conn);
            c
        }
        Err(e) => return describe(&e),
    };
    match client.simple_query(sql).await {
        Ok(msgs) => msgs
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap_or_else(|| "ok".into()),
        Err(e) => describe(&e),
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!(
            "{}: {} detail={:?} hint={:?}",
            d.code().code(),
            d.message(),
            d.detail(),
            d.hint()
        ),
        None => format!("failed: {e}"),
    }
}

fn any_database(fx: &Fixture) -> Result<(), Failed> {
    let pg = fx.cluster.primary();
    pg.psql(
        "postgres",
        "drop database if exists tr_later; drop role if exists wc_nobody",
    )?;
    pg.psql(
        "app",
        "drop role if exists wc_user; create role wc_user login password 'wc-pw';\n\
         create or replace function wc_lookup(u text, out usename name, out passwd text)\n\
         returns setof record language sql security definer\n\
         as $$ select rolname, rolpassword from pg_authid where rolname = u $$;\n\
         revoke all on function wc_lookup(text) from public;\n\
         grant execute on function wc_lookup(text) to app;",
    )?;
    let wildcard = format!(
        "[databases.\"*\"]\nhost = \"127.0.0.1\"\nport = {}\npool_size = 2",
        pg.port()
    );
    let p = ExtraPooler::start(
        fx,
        "auth_user = \"app\"\nauth_query = \"select * from wc_lookup($1)\"\nauth_dbname = \"app\"",
        &wildcard,
    );
    let via = |db: &str, user: &str, pw: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} password={pw} dbname={db}",
            p.port
        )
    };
    let direct = |db: &str| {
        format!(
            "host=127.0.0.1 port={} user=app password={PASSWORD} dbname={db}",
            pg.port()
        )
    };
    let app = |db: &str| via(db, "app", PASSWORD);
    crate::util::rt().block_on(async {
        // A database with no entry of its own, under its own name.
        assert_eq!(
            ask(&app("postgres"), "select current_database()").await,
            "postgres"
        );
        // Unknown: PostgreSQL's own error, as a direct connection gets it.
        let want = ask(&direct("tr_absent"), "select 1").await;
        assert!(want.starts_with("3D000"), "{want}");
        assert_eq!(ask(&app("tr_absent"), "select 1").await, want);
        // Created after the pooler started: works at once.
        pg.psql("postgres", "create database tr_later owner app")?;
        assert_eq!(
            ask(&app("tr_later"), "select current_database()").await,
            "tr_later"
        );
        // auth_query users reach wildcard databases too.
        assert_eq!(
            ask(&via("tr_later", "wc_user", "wc-pw"), "select current_user").await,
            "wc_user"
        );
        // A login the server refuses gets the server's error, every field of it (42501 and
        // its detail here), as directly.
        pg.psql(
            "postgres",
            "revoke connect on database tr_later from public; \
             create role wc_nobody login password 'wc-pw'",
        )?;
        let nobody = |port: u16| {
            format!("host=127.0.0.1 port={port} user=wc_nobody password=wc-pw dbname=tr_later")
        };
        let want = ask(&nobody(pg.port()), "select 1").await;
        assert!(want.starts_with("42501"), "{want}");
        assert_eq!(ask(&nobody(p.port), "select 1").await, want);
        pg.psql("postgres", "drop role wc_nobody")?;
        // The pooler now holds idle connections to tr_later; dropping it still succeeds.
        let idle: i64 = pg
            .psql(
                "postgres",
                "select count(*) from pg_stat_activity where datname = 'tr_later'",
            )?
            .trim()
            .parse()?;
        assert!(idle > 0, "expected idle pooled connections to tr_later");
        assert_eq!(ask(&app("postgres"), "drop database tr_later").await, "ok");
        let gone = ask(&app("tr_later"), "select 1").await;
        assert!(gone.starts_with("3D000"), "{gone}");
        Ok(())
    })
}
