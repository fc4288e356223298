//! Opening a server connection: TCP connect with timeout, TLS negotiation (`server_tls_sslmode`),
//! startup, authentication, initial state.

use super::params::ParamSet;
use super::{ServerConn, ServerError, ServerStream};
use crate::auth::ScramClient;
use crate::config::ServerTlsMode;
use crate::net::frame_io::read_frame;
use crate::proto::{builders, startup, tags::backend, views};
use crate::tls::client::ServerTlsHandle;
use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use rustls::pki_types::ServerName;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest message accepted from a server during login.
const LOGIN_MAX: usize = 1 << 20;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// Node name, for errors and metrics.
    pub node: Arc<str>,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    /// What the pooler logs in with.
    pub credential: Credential,
    pub connect_timeout: Duration,
    pub keepalive: bool,
    /// `server_tls_*` in force, read at each connect (a reload applies to new connections).
    pub tls: ServerTlsHandle,
}

/// How the pooler proves who it is to a server. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credential {
    /// Nothing: the server must trust the user.
    #[default]
    None,
    /// A plain password or an `md5...` hash (MD5 and cleartext requests; SCRAM with a plain
    /// password only).
    Password(String),
    /// SCRAM pass-through: the ClientKey a client's proof revealed and the ServerKey of the
    /// same secret (SCRAM requests only).
    ScramKeys {
        client_key: [u8; 32],
        server_key: [u8; 32],
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "Credential::None",
            Self::Password(_) => "Credential::Password(<redacted>)",
            Self::ScramKeys { .. } => "Credential::ScramKeys(<redacted>)",
        })
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Connects and authenticates; returns a connection ready for queries (ReadyForQuery seen).
pub async fn connect(spec: &ConnectSpec) -> Result<ServerConn, ServerError> {
    let fut = connect_inner(spec);
    match tokio::time::timeout(spec.connect_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ServerError::Timeout {
            node: spec.node.to_string(),
        }),
    }
}

async fn connect_inner(spec: &ConnectSpec) -> Result<ServerConn, ServerError> {
    let setup = spec.tls.get();
    let tls = setup.config.as_ref();
    match setup.mode {
        ServerTlsMode::Disable => login(spec, None, false).await,
        // libpq's `allow`: plain first, TLS when the server refuses the plain login (a
        // `hostssl`-only pg_hba.conf answers 28000).
        ServerTlsMode::Allow => match login(spec, None, false).await {
            Err(ServerError::Postgres { code, .. }) if code == "28000" => {
                login(spec, tls, true).await
            }
            other => other,
        },
        mode => login(spec, tls, mode.tls_required()).await,
    }
}

/// Connects over TCP; with `tls`, sends an SSLRequest and does the handshake on 'S' (on 'N',
/// stays plain unless `required`). A `host` starting with `/` is a Unix-socket directory:
/// no TLS is tried there, as libpq does (the socket never leaves the machine).
async fn open_stream(
    spec: &ConnectSpec,
    tls: Option<&Arc<rustls::ClientConfig>>,
    required: bool,
) -> Result<ServerStream, ServerError> {
    let io = |e: std::io::Error| ServerError::Io {
        node: spec.node.to_string(),
        source: e,
    };
    let tls_err = |message: String| ServerError::Tls {
        node: spec.node.to_string(),
        message,
    };
    if super::stream::is_unix_host(&spec.host) {
        let path = super::stream::unix_socket_path(&spec.host, spec.port);
        let unix = tokio::net::UnixStream::connect(&path).await.map_err(|e| {
            io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        })?;
        return Ok(ServerStream::Unix(unix));
    }
    let mut tcp = TcpStream::connect((spec.host.as_str(), spec.port))
        .await
        .map_err(io)?;
    tcp.set_nodelay(true).map_err(io)?;
    if spec.keepalive {
        let sock = socket2::SockRef::from(&tcp);
        let _ = sock.set_keepalive(true);
    }
    let Some(config) = tls else {
        return Ok(ServerStream::Tcp(tcp));
    };
    tcp.write_all(&startup::ssl_request()).await.map_err(io)?;
    // Exactly one byte: anything the server sent after 'S' must be TLS, or the handshake fails.
    let answer = tcp.read_u8().await.map_err(io)?;
    match answer {
        b'S' => {
            let name = ServerName::try_from(spec.host.clone())
                .map_err(|e| tls_err(format!("host {:?}: {e}", spec.host)))?;
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| tls_err(e.to_string()))?;
            Ok(ServerStream::Tls(Box::new(stream)))
        }
        b'N' if !required => Ok(ServerStream::Tcp(tcp)),
        b'N' => Err(tls_err(
            "the server does not accept TLS connections (server_tls_sslmode requires TLS)".into(),
        )),
        other => Err(ServerError::Protocol {
            node: spec.node.to_string(),
            message: format!("unexpected answer {other:#04x} to SSLRequest"),
        }),
    }
}

async fn login(
    spec: &ConnectSpec,
    tls: Option<&Arc<rustls::ClientConfig>>,
    required: bool,
) -> Result<ServerConn, ServerError> {
    let io = |e: std::io::Error| ServerError::Io {
        node: spec.node.to_string(),
        source: e,
    };
    let mut stream = open_stream(spec, tls, required).await?;
    let hello = startup::startup_message(&[("user", &spec.user), ("database", &spec.database)]);
    stream.write_all(&hello).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut buf = BytesMut::with_capacity(1024);
    let cleartext_ok = stream.is_tls() || spec.tls.get().allow_cleartext_password;
    authenticate(spec, &mut stream, &mut buf, cleartext_ok).await?;
    let mut key = (0, 0);
    let mut reported = Vec::new();
    loop {
        let f = read_frame(&mut stream, &mut buf, LOGIN_MAX)
            .await
            .map_err(|e| ServerError::from_frame(spec, e))?;
        match f.tag {
            backend::BACKEND_KEY_DATA => {
                key = views::backend_key_data(&f.body).map_err(|e| ServerError::proto(spec, e))?
            }
            backend::PARAMETER_STATUS => {
                let (k, v) =
                    views::parameter_status(&f.body).map_err(|e| ServerError::proto(spec, e))?;
                reported.push((k.to_string(), v.to_string()));
            }
            backend::ERROR_RESPONSE => return Err(ServerError::postgres(spec, &f.body)),
            backend::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    let now = Instant::now();
    Ok(ServerConn {
        stream,
        buf,
        node: spec.node.clone(),
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        key,
        // Nothing changed by a session yet: the pool's baseline.
        params: ParamSet::default().intern(),
        startup_params: Arc::new(reported),
        created: now,
        last_used: now,
        prepared: Default::default(),
        adopted: None,
        recovery_check: false,
        slot: None,
        home: crate::net::worker::current(),
    })
}

/// Answers the server's authentication requests until AuthenticationOk. A cleartext request
/// is answered only when `cleartext_ok` (TLS, or `server_allow_cleartext_password`); once SCRAM
/// has started, AuthenticationOk is accepted only after a verified server-final message.
async fn authenticate(
    spec: &ConnectSpec,
    stream: &mut ServerStream,
    buf: &mut BytesMut,
    cleartext_ok: bool,
) -> Result<(), ServerError> {
    let io = |e: std::io::Error| ServerError::Io {
        node: spec.node.to_string(),
        source: e,
    };
    let mut out = BytesMut::new();
    let mut scram: Option<ScramClient> = None;
    let mut scram_started = false;
    let mut scram_verified = false;
    loop {
        let f = read_frame(stream, buf, LOGIN_MAX)
            .await
            .map_err(|e| ServerError::from_frame(spec, e))?;
        if f.tag == backend::ERROR_RESPONSE {
            return Err(ServerError::postgres(spec, &f.body));
        }
        if f.tag != backend::AUTHENTICATION {
            return Err(ServerError::Protocol {
                node: spec.node.to_string(),
                message: format!("unexpected message {:?} during login", f.tag as char),
            });
        }
        out.clear();
        match views::authentication(&f.body).map_err(|e| ServerError::proto(spec, e))? {
            views::Auth::Ok if scram_started && !scram_verified => {
                return Err(ServerError::Protocol {
                    node: spec.node.to_string(),
                    message: "AuthenticationOk before a verified SCRAM server signature".into(),
                });
            }
            views::Auth::Ok => return Ok(()),
            views::Auth::Cleartext if !cleartext_ok => {
                return Err(ServerError::CleartextRefused {
                    node: spec.node.to_string(),
                });
            }
            views::Auth::Cleartext => {
                let mut p = password(spec)?.as_bytes().to_vec();
                p.push(0);
                builders::password_message(&mut out, &p);
            }
            views::Auth::Md5 { salt } => {
                let pw = password(spec)?;
                let hashed = match pw.strip_prefix("md5") {
                    Some(inner) if pw.len() == 35 => md5_salted(inner, salt),
                    _ => md5_hash(spec.user.as_bytes(), pw.as_bytes(), salt),
                };
                let mut p = hashed.into_bytes();
                p.push(0);
                builders::password_message(&mut out, &p);
            }
            views::Auth::Sasl(mechs) => {
                let mut s = scram_client(spec, mechs.contains("SCRAM-SHA-256"))?;
                builders::sasl_initial_response(&mut out, "SCRAM-SHA-256", &s.client_first());
                scram = Some(s);
                scram_started = true;
            }
            views::Auth::SaslContinue(data) => {
                let s = scram.take().ok_or_else(|| ServerError::Protocol {
                    node: spec.node.to_string(),
                    message: "SASL continue before start".into(),
                })?;
                let (s, fin) = server_first(spec, s, data.to_vec()).await?;
                scram = Some(s);
                builders::sasl_response(&mut out, &fin);
            }
            views::Auth::SaslFinal(data) => {
                let mut s = scram.take().ok_or_else(|| ServerError::Protocol {
                    node: spec.node.to_string(),
                    message: "SASL final before start".into(),
                })?;
                s.handle_server_final(data)
                    .map_err(|e| ServerError::Protocol {
                        node: spec.node.to_string(),
                        message: format!("SCRAM server signature: {e}"),
                    })?;
                scram_verified = true;
                continue;
            }
            views::Auth::Other(code) => {
                return Err(ServerError::Protocol {
                    node: spec.node.to_string(),
                    message: format!("unsupported authentication request {code}"),
                });
            }
        }
        stream.write_all(&out).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
    }
}

fn no_password(spec: &ConnectSpec) -> ServerError {
    ServerError::NoPassword {
        node: spec.node.to_string(),
        user: spec.user.clone(),
    }
}

/// The configured password (or `md5...` hash), for cleartext and MD5 requests.
fn password(spec: &ConnectSpec) -> Result<&str, ServerError> {
    match &spec.credential {
        Credential::Password(pw) => Ok(pw.as_str()),
        _ => Err(no_password(spec)),
    }
}

/// The SCRAM client for an AuthenticationSASL (`offered`: it lists SCRAM-SHA-256).
fn scram_client(spec: &ConnectSpec, offered: bool) -> Result<ScramClient, ServerError> {
    if !offered {
        return Err(ServerError::Protocol {
            node: spec.node.to_string(),
            message: "server offers no SASL mechanism we support".into(),
        });
    }
    match &spec.credential {
        Credential::ScramKeys {
            client_key,
            server_key,
        } => Ok(ScramClient::from_client_key(*client_key, *server_key)),
        Credential::Password(pw) if !(pw.starts_with("md5") && pw.len() == 35) => {
            Ok(ScramClient::new(pw))
        }
        _ => Err(no_password(spec)),
    }
}

/// Handles server-first on the blocking pool (PBKDF2 from a password is CPU work that must not
/// hold an async worker); returns the client and client-final.
async fn server_first(
    spec: &ConnectSpec,
    mut scram: ScramClient,
    data: Vec<u8>,
) -> Result<(ScramClient, Vec<u8>), ServerError> {
    let failed = |message: String| ServerError::Protocol {
        node: spec.node.to_string(),
        message: format!("SCRAM: {message}"),
    };
    let (scram, fin) = tokio::task::spawn_blocking(move || {
        let fin = scram.handle_server_first(&data);
        (scram, fin)
    })
    .await
    .map_err(|e| failed(e.to_string()))?;
    Ok((scram, fin.map_err(|e| failed(e.to_string()))?))
}

/// `md5` + hex(md5(hex_hash || salt)): what a client sends for an `md5...` secret.
fn md5_salted(inner_hex: &str, salt: [u8; 4]) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(inner_hex.as_bytes());
    h.update(salt);
    let digest = h.finalize();
    let mut out = String::from("md5");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
#[path = "connect_test.rs"]
mod tests;
