//! The front door: SSL/GSS refusal, cancel requests, the startup packet, client authentication,
//! and the greeting (ParameterStatus, BackendKeyData, ReadyForQuery).

use super::ctx::{ConsoleLogin, SessionCtx, CONSOLE_DATABASES};
use super::{LoginError, SqlState};
use crate::auth::hba::{HbaClient, HbaMethod};
use crate::auth::{verify_md5, verify_password, ScramServer, Secret};
use crate::config::{AuthType, ClientTlsMode, Config, DatabaseConfig};
use crate::net::frame_io::read_frame;
use crate::net::pending::PendingGuard;
use crate::net::stream::ClientStream;
use crate::proto::{builders, parse_initial, tags::frontend, views, Initial};
use crate::server::params::{parse_options, ParamSet};
use bytes::BytesMut;
use rand::Rng;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a successful login established.
pub struct Login {
    pub user: String,
    pub database: Arc<DatabaseConfig>,
    /// Settings the client asked for (startup parameters and `options`), not yet canonical.
    pub wanted: ParamSet,
    pub application_name: String,
    /// Client-side connection settings the router reads (`target_session_attrs`).
    pub route_hints: Vec<(String, String)>,
}

/// Startup parameters that are not settings.
const NOT_SETTINGS: &[&str] = &[
    "user",
    "database",
    "options",
    "replication",
    "target_session_attrs",
];

/// Reads the startup packet (answering SSL/GSS requests), handles cancel requests.
/// Returns `None` when the connection was a cancel request.
pub async fn read_startup(
    ctx: &SessionCtx,
    client: &mut ClientStream,
    max_len: usize,
) -> Result<Option<Vec<(String, String)>>, LoginError> {
    let mut buf = BytesMut::with_capacity(256);
    let pending = ctx.pending.enter();
    loop {
        let (initial, used) = loop {
            if let Some(found) = parse_initial(&buf, max_len).map_err(LoginError::Startup)? {
                break found;
            }
            let n = tokio::select! {
                n = client.read_buf(&mut buf) => n?,
                () = pending.evicted() => return Err(evicted()),
            };
            if n == 0 {
                return Err(LoginError::Gone);
            }
        };
        let _ = buf.split_to(used);
        match initial {
            Initial::Ssl | Initial::GssEnc => {
                if !buf.is_empty() {
                    return Err(LoginError::Protocol("data after SSL/GSS request".into()));
                }
                let tls = match (&initial, &*client) {
                    (Initial::Ssl, ClientStream::Tcp(_)) => ctx.front_door().tls.clone(),
                    _ => None,
                };
                let Some(config) = tls else {
                    client.write_all(b"N").await?;
                    continue;
                };
                client.write_all(b"S").await?;
                let tcp = client.take_tcp().ok_or(LoginError::Gone)?;
                let accept = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
                let stream = tokio::select! {
                    s = accept => s.map_err(|e| LoginError::Protocol(format!("TLS handshake: {e}")))?,
                    () = pending.evicted() => return Err(evicted()),
                };
                *client = ClientStream::Tls(Box::new(stream));
            }
            Initial::Cancel { pid, secret } => {
                ctx.cancels.cancel(pid, secret).await;
                return Ok(None);
            }
            Initial::Startup { minor, params, .. } => {
                let front = ctx.front_door();
                let must = matches!(
                    front.tls_mode,
                    ClientTlsMode::Require | ClientTlsMode::VerifyCa
                );
                if must && !client.is_tls() && client.peer_ip()?.is_some() {
                    return Err(LoginError::fatal(
                        SqlState::InvalidAuthorization,
                        "SSL required",
                    ));
                }
                let unknown: Vec<&str> = params
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .filter(|k| k.starts_with("_pq_."))
                    .collect();
                if minor > 0 || !unknown.is_empty() {
                    let mut out = BytesMut::new();
                    builders::negotiate_protocol_version(&mut out, 0, &unknown);
                    client.write_all(&out).await?;
                }
                return Ok(Some(params));
            }
        }
    }
}

/// Checks the startup parameters against the configuration and authenticates the client.
pub async fn authenticate(
    ctx: &SessionCtx,
    config: &Config,
    client: &mut ClientStream,
    params: Vec<(String, String)>,
) -> Result<Login, LoginError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let user = get("user").filter(|u| !u.is_empty()).ok_or_else(|| {
        LoginError::fatal(
            SqlState::InvalidAuthorization,
            "no PostgreSQL user name specified in startup packet",
        )
    })?;
    if get("replication").is_some_and(|v| v != "false" && v != "0" && v != "off") {
        return Err(LoginError::fatal(
            SqlState::ProtocolViolation,
            "replication connections are not supported by pgsluice",
        ));
    }
    let dbname = get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    let database = config.databases.get(&dbname).ok_or_else(|| {
        LoginError::fatal(
            SqlState::InvalidCatalogName,
            format!("database \"{dbname}\" does not exist"),
        )
    })?;
    let mut wanted = Vec::new();
    for (k, v) in &params {
        if !NOT_SETTINGS.contains(&k.as_str()) && !k.starts_with("_pq_.") {
            wanted.push((k.clone(), v.clone()));
        }
    }
    if let Some(opts) = get("options") {
        let parsed = parse_options(&opts).map_err(|e| {
            LoginError::fatal(
                SqlState::InvalidParameterValue,
                format!("invalid command-line argument for server process: {e}"),
            )
        })?;
        wanted.extend(parsed);
    }
    let method = auth_method(ctx, config, client, &database.name, &user)?;
    if method != HbaMethod::Trust && !ctx.listed(&user) {
        ctx.auth
            .lookup(ctx, config, database, &user)
            .await
            .map_err(|e| LoginError::fatal(SqlState::ConnectionFailure, e.to_string()))?;
    }
    if let Some((client_key, server_key)) = check_password(ctx, method, client, &user).await? {
        ctx.auth.remember_keys(&user, client_key, server_key);
    }
    Ok(Login {
        application_name: get("application_name").unwrap_or_default(),
        user,
        database: Arc::new(database.clone()),
        wanted: ParamSet::new(wanted),
        route_hints: params
            .iter()
            .filter(|(k, _)| k == "target_session_attrs")
            .cloned()
            .collect(),
    })
}

/// Whether the startup packet asks for the admin console database.
pub fn wants_console(params: &[(String, String)]) -> bool {
    params
        .iter()
        .find(|(k, _)| k == "database")
        .is_some_and(|(_, d)| CONSOLE_DATABASES.contains(&d.as_str()))
}

/// Authenticates a console client: `admin_users` may run everything, `stats_users` SHOW only.
/// The password is checked first, so a refusal does not tell who the console users are.
pub async fn console_login(
    ctx: &SessionCtx,
    config: &Config,
    client: &mut ClientStream,
    params: &[(String, String)],
) -> Result<ConsoleLogin, LoginError> {
    let user = params
        .iter()
        .find(|(k, v)| k == "user" && !v.is_empty())
        .map(|(_, v)| v.clone())
        .ok_or_else(|| {
            LoginError::fatal(
                SqlState::InvalidAuthorization,
                "no PostgreSQL user name specified in startup packet",
            )
        })?;
    let dbname = params
        .iter()
        .find(|(k, _)| k == "database")
        .map_or("", |(_, v)| v.as_str());
    let method = auth_method(ctx, config, client, dbname, &user)?;
    check_password(ctx, method, client, &user).await?;
    let p = &config.pooler;
    let admin = p.admin_users.contains(&user);
    if !admin && !p.stats_users.contains(&user) {
        return Err(LoginError::fatal(
            SqlState::InvalidAuthorization,
            format!("user \"{user}\" is not allowed to use the console (admin_users, stats_users)"),
        ));
    }
    Ok(ConsoleLogin { user, admin })
}

/// Greets a console client: what psql needs to know, a key, and ReadyForQuery.
pub async fn greet_console(client: &mut ClientStream, key: (i32, i32)) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(256);
    builders::auth_ok(&mut out);
    for (k, v) in [
        ("server_version", "15.0 (pgsluice console)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ] {
        builders::parameter_status(&mut out, k, v);
    }
    builders::backend_key_data(&mut out, key.0, key.1);
    builders::ready_for_query(&mut out, b'I');
    client.write_all(&out).await
}

/// A login pushed out by newer ones beyond `max_pending_logins`.
fn evicted() -> LoginError {
    LoginError::fatal(
        SqlState::TooManyConnections,
        "too many logins in progress (max_pending_logins)",
    )
}

fn auth_failed(user: &str) -> LoginError {
    LoginError::fatal(
        SqlState::InvalidPassword,
        format!("password authentication failed for user \"{user}\""),
    )
}

fn mock_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| rand::thread_rng().gen())
}

/// How the client must authenticate: the first matching `auth_hba_file` rule, else
/// `auth_type`. No matching rule and `reject` refuse with PostgreSQL's words.
fn auth_method(
    ctx: &SessionCtx,
    config: &Config,
    client: &ClientStream,
    database: &str,
    user: &str,
) -> Result<HbaMethod, LoginError> {
    let front = ctx.front_door();
    let Some(hba) = &front.hba else {
        return Ok(match config.pooler.auth_type {
            AuthType::Trust => HbaMethod::Trust,
            AuthType::Md5 => HbaMethod::Md5,
            AuthType::ScramSha256 => HbaMethod::ScramSha256,
        });
    };
    let addr = client.peer_ip()?;
    let tls = client.is_tls();
    let rule = hba.lookup(&HbaClient {
        addr,
        tls,
        database,
        user,
    });
    let host = addr.map_or_else(|| "[local]".to_string(), |a| a.to_string());
    let ssl = if tls {
        "SSL encryption"
    } else {
        "no encryption"
    };
    match rule.map(|r| r.method) {
        Some(HbaMethod::Reject) => Err(LoginError::fatal(
            SqlState::InvalidAuthorization,
            format!("pg_hba.conf rejects connection for host \"{host}\", user \"{user}\", database \"{database}\", {ssl}"),
        )),
        Some(m) => Ok(m),
        None => Err(LoginError::fatal(
            SqlState::InvalidAuthorization,
            format!("no pg_hba.conf entry for host \"{host}\", user \"{user}\", database \"{database}\", {ssl}"),
        )),
    }
}

/// Runs the password exchange `method` asks for. A SCRAM login against a stored SCRAM
/// secret returns the ClientKey the proof revealed and the secret's ServerKey (pass-through).
async fn check_password(
    ctx: &SessionCtx,
    method: HbaMethod,
    client: &mut ClientStream,
    user: &str,
) -> Result<Option<([u8; 32], [u8; 32])>, LoginError> {
    if method == HbaMethod::Trust {
        return Ok(None);
    }
    let pending = ctx.pending.enter();
    let secret = ctx.secret(user);
    let mut buf = BytesMut::with_capacity(256);
    let mut out = BytesMut::with_capacity(256);
    if method == HbaMethod::Password {
        builders::auth_cleartext(&mut out);
        client.write_all(&out).await?;
        let resp = read_password(client, &mut buf, &pending).await?;
        let pw = views::password(&resp).unwrap_or_default();
        let ok = secret
            .as_ref()
            .is_some_and(|s| verify_password(s, user, pw));
        return if ok { Ok(None) } else { Err(auth_failed(user)) };
    }
    let use_md5 = match &secret {
        Some(Secret::Md5(_)) => true,
        Some(Secret::Scram(_)) => false,
        _ => method == HbaMethod::Md5,
    };
    if use_md5 {
        let salt: [u8; 4] = rand::thread_rng().gen();
        builders::auth_md5(&mut out, salt);
        client.write_all(&out).await?;
        let resp = read_password(client, &mut buf, &pending).await?;
        let ok = secret
            .as_ref()
            .is_some_and(|s| verify_md5(s, user, salt, views::password(&resp).unwrap_or_default()));
        return if ok { Ok(None) } else { Err(auth_failed(user)) };
    }
    let mut scram = match &secret {
        Some(s) => ScramServer::for_secret(s).map_err(|_| auth_failed(user))?,
        None => ScramServer::mock(user, mock_key()),
    };
    builders::auth_sasl(&mut out, &["SCRAM-SHA-256"]);
    client.write_all(&out).await?;
    let first = read_password(client, &mut buf, &pending).await?;
    let (mech, data) =
        views::sasl_initial_response(&first).map_err(|e| LoginError::Protocol(e.to_string()))?;
    if mech != "SCRAM-SHA-256" {
        return Err(LoginError::fatal(
            SqlState::InvalidAuthorization,
            "client selected an invalid SASL authentication mechanism",
        ));
    }
    let server_first = scram.client_first(data).map_err(|_| auth_failed(user))?;
    out.clear();
    builders::auth_sasl_continue(&mut out, &server_first);
    client.write_all(&out).await?;
    let fin = read_password(client, &mut buf, &pending).await?;
    let server_final = scram.client_final(&fin).map_err(|_| auth_failed(user))?;
    out.clear();
    builders::auth_sasl_final(&mut out, &server_final);
    client.write_all(&out).await?;
    let stored = matches!(secret, Some(Secret::Scram(_)));
    Ok(scram
        .client_key()
        .filter(|_| stored)
        .map(|k| (k, scram.secret().server_key)))
}

async fn read_password(
    client: &mut ClientStream,
    buf: &mut BytesMut,
    pending: &PendingGuard,
) -> Result<BytesMut, LoginError> {
    let read = tokio::select! {
        r = read_frame(client, buf, 64 * 1024) => r,
        () = pending.evicted() => return Err(evicted()),
    };
    let f = read.map_err(|e| match e {
        crate::net::frame_io::FrameIoError::Closed => LoginError::Gone,
        other => LoginError::Protocol(other.to_string()),
    })?;
    if f.tag != frontend::PASSWORD {
        return Err(LoginError::fatal(
            SqlState::ProtocolViolation,
            format!("expected password response, got message type {}", f.tag),
        ));
    }
    Ok(f.body)
}

/// Sends AuthenticationOk, the parameters, the pooler-issued key and ReadyForQuery.
pub async fn greet(
    client: &mut ClientStream,
    server_params: &[(String, String)],
    view: &ParamSet,
    key: (i32, i32),
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(512);
    builders::auth_ok(&mut out);
    for (k, v) in server_params {
        let v = view.get(k).unwrap_or(v);
        builders::parameter_status(&mut out, k, v);
    }
    for (k, v) in view.iter() {
        if !server_params.iter().any(|(n, _)| n.eq_ignore_ascii_case(k))
            && crate::server::params::TRACKED_REPORTED
                .iter()
                .any(|t| t.eq_ignore_ascii_case(k))
        {
            builders::parameter_status(&mut out, k, v);
        }
    }
    builders::backend_key_data(&mut out, key.0, key.1);
    builders::ready_for_query(&mut out, b'I');
    client.write_all(&out).await
}
