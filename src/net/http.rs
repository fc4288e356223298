//! The hardened HTTP server loop shared by the pooler's and the agent's endpoints: a cap on
//! connections, back-off on accept errors, a header read timeout, no keep-alive, JSON bodies
//! bounded while they are read, and the control-plane secret check.

use super::secret;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request body accepted (a topology or an operation is far smaller).
pub const MAX_BODY: usize = 64 * 1024;
/// The longest pause after failed accepts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A response with its whole body.
pub type Reply = Response<Full<Bytes>>;

/// A response of `status` with `body` as `content_type`.
pub fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A refused request: its status and the sentence that says why.
#[derive(Debug)]
pub struct Refusal {
    /// 401, 403, 408, 413, 415, 400 or 500.
    pub status: StatusCode,
    /// Plain text for the caller.
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }

    /// The response to send (401 carries `WWW-Authenticate: Bearer`).
    pub fn into_reply(self) -> Reply {
        let mut r = reply(self.status, "text/plain; charset=utf-8", self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// Where connections come from: a TCP listener (or, in tests, one that fails).
pub trait Connections: Send + Sync + 'static {
    /// The next connection.
    fn next_conn(&self) -> impl Future<Output = std::io::Result<TcpStream>> + Send;
}

impl Connections for TcpListener {
    async fn next_conn(&self) -> std::io::Result<TcpStream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// The bounds of one server loop.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a client has to send a request's headers.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_timeout: HEADER_TIMEOUT,
        }
    }
}

/// Serves `listener` with `handler` until `stop`, at most [`MAX_CONNECTIONS`] at once.
pub async fn serve<H, F>(listener: TcpListener, stop: CancellationToken, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    serve_with(listener, Limits::default(), stop, handler).await
}

/// [`serve`] with explicit limits and connection source.
pub async fn serve_with<L, H, F>(listener: L, limits: Limits, stop: CancellationToken, handler: H)
where
    L: Connections,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.next_conn() => match r {
                Ok(s) => { backoff = Duration::from_millis(5); s }
                Err(e) => {
                    tracing::warn!(error = %e, pause = ?backoff, "HTTP accept failed");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let fut = handler(req);
                async move { Ok::<_, std::convert::Infallible>(fut.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(false)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Says at start-up whether control calls can be accepted, so that a missing or unusable
/// secret file is seen before the first failover needs it.
pub fn log_control_state(control: &crate::config::ControlConfig) {
    match control.secret_file.as_deref().map(secret::read) {
        None => tracing::warn!(
            "[control] secret_file is not set: every control call (pause, resume, topology push, operations) is refused"
        ),
        Some(Err(e)) => tracing::error!(error = %e, "control calls will be refused until the secret file is fixed"),
        Some(Ok(_)) => tracing::info!("control calls need the shared secret"),
    }
}

/// Checks the request's bearer token against `[control] secret_file`. Without a configured
/// file every call is refused: the control plane is never open by default.
pub fn authorize<B>(req: &Request<B>, secret_file: Option<&Path>) -> Result<(), Refusal> {
    let Some(path) = secret_file else {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "control calls are refused: [control] secret_file is not set\n",
        ));
    };
    let secrets = secret::read(path).map_err(|e| {
        tracing::error!(error = %e, "control call refused: the secret file is unusable");
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the control secret file is unusable (see the log)\n",
        )
    })?;
    let given = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
    if given.is_some_and(|g| secret::matches(g, &secrets)) {
        return Ok(());
    }
    tracing::warn!(path = %req.uri().path(), "control call with a missing or wrong secret");
    Err(Refusal::new(
        StatusCode::UNAUTHORIZED,
        "a valid \"Authorization: Bearer <secret>\" header is required\n",
    ))
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes: the content type must be
/// `application/json`, a larger declared length is refused before reading, and a body that
/// grows past the limit (chunked) is refused as soon as it does.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Refusal> {
    let json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be Content-Type: application/json\n",
        ));
    }
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes\n"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), MAX_BODY);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Err(_) => {
            return Err(Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "the body was not sent in time\n",
            ))
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Ok(Err(e)) => return Err(Refusal::new(StatusCode::BAD_REQUEST, format!("{e}\n"))),
        Ok(Ok(b)) => b.to_bytes(),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}\n")))
}

#[cfg(test)]
#[path = "http_test.rs"]
mod tests;
