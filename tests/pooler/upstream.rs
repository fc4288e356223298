//! Towards PostgreSQL: a password is never sent in clear text over a connection without TLS
//! unless `server_allow_cleartext_password` says so (the shared primary asks the role
//! `cleartext` for a cleartext password, see `util.rs`).

use crate::util::{rt, scalar, ExtraPooler, Fixture, PASSWORD};
use libtest_mimic::Failed;

pub const TESTS: &[(&str, crate::Body)] = &[
    (
        "upstream::cleartext_password_needs_tls_or_the_setting",
        cleartext_password,
    ),
    (
        "upstream::probe_connections_never_send_a_cleartext_password",
        probes_refuse_cleartext,
    ),
];

/// `select current_user` through `url`, or the error text.
fn whoami(url: &str) -> Result<String, String> {
    rt().block_on(async {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| {
                e.as_db_error()
                    .map_or(e.to_string(), |d| d.message().into())
            })?;
        tokio::spawn(conn);
        scalar(&c, "select current_user").await.map_err(|e| {
            e.as_db_error()
                .map_or(e.to_string(), |d| d.message().into())
        })
    })
}

fn cleartext_password(fx: &Fixture) -> Result<(), Failed> {
    let forced = format!("user = \"cleartext\"\npassword = \"{PASSWORD}\"");
    // Default: the server's cleartext request is refused, the client told why.
    let strict = ExtraPooler::start(fx, "", &forced);
    let err = whoami(&strict.url()).expect_err("the password must not be sent in clear");
    assert!(err.contains("server_allow_cleartext_password"), "{err}");
    // The same role works once the setting allows it.
    let lax = ExtraPooler::start(fx, "server_allow_cleartext_password = true", &forced);
    assert_eq!(whoami(&lax.url())?, "cleartext");
    Ok(())
}

fn probes_refuse_cleartext(fx: &Fixture) -> Result<(), Failed> {
    use pgsluice::agent::sql::Target;
    let target = |user: &str| Target {
        name: "primary".into(),
        host: "127.0.0.1".into(),
        port: fx.cluster.primary().port(),
        user: user.into(),
        password: Some(PASSWORD.into()),
        dbname: "app".into(),
        application_name: pgsluice::agent::sql::APPLICATION_NAME,
    };
    let timeout = std::time::Duration::from_secs(10);
    rt().block_on(async {
        let err = target("cleartext")
            .scalar("select 1", timeout)
            .await
            .expect_err("a cleartext password was sent");
        assert!(err.to_string().contains("cleartext password"), "{err}");
        // The same connection code logs in with SCRAM.
        let one = target("app").scalar("select 1", timeout).await?;
        assert_eq!(one.as_deref(), Some("1"));
        Ok::<_, Failed>(())
    })
}
