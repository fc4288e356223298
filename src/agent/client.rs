//! The client side of the agent's own HTTP endpoint, for the command line and tests. Each
//! call sends the control secret read from `secret_file` (`[control] secret_file`) when given.

use super::ops::{OpReport, OpRequest};
use super::run::Status;
use super::AgentError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

async fn call(
    method: Method,
    addr: SocketAddr,
    secret_file: Option<&Path>,
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, AgentError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json");
    if let Some(file) = secret_file {
        let auth =
            crate::net::secret::bearer(file).map_err(|e| AgentError::Failed(e.to_string()))?;
        req = req.header("authorization", auth);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| AgentError::Failed(e.to_string()))?;
    let fail = |e: String| AgentError::Failed(format!("agent at {addr}: {e}"));
    let resp = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))?
        .map_err(|e| fail(super::probe::error_text(&e)))?;
    let status = resp.status();
    let bytes = tokio::time::timeout(timeout, resp.into_body().collect())
        .await
        .map_err(|_| fail("body timed out".into()))?
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(fail(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    Ok(bytes.to_vec())
}

/// `GET /status`.
pub async fn status(
    addr: SocketAddr,
    secret_file: Option<&Path>,
    timeout: Duration,
) -> Result<Status, AgentError> {
    let body = call(
        Method::GET,
        addr,
        secret_file,
        "/status",
        Vec::new(),
        timeout,
    )
    .await?;
    serde_json::from_slice(&body).map_err(|e| AgentError::Failed(format!("bad /status: {e}")))
}

/// `POST /ops`: the agent runs the operation between probe rounds and reports.
pub async fn op(
    addr: SocketAddr,
    secret_file: Option<&Path>,
    req: &OpRequest,
    timeout: Duration,
) -> Result<OpReport, AgentError> {
    let body = serde_json::to_vec(req).map_err(|e| AgentError::Failed(e.to_string()))?;
    let body = call(Method::POST, addr, secret_file, "/ops", body, timeout).await?;
    serde_json::from_slice(&body).map_err(|e| AgentError::Failed(format!("bad /ops reply: {e}")))
}

/// `POST /probe`: asks for an immediate probe round.
pub async fn probe_now(
    addr: SocketAddr,
    secret_file: Option<&Path>,
    timeout: Duration,
) -> Result<(), AgentError> {
    call(
        Method::POST,
        addr,
        secret_file,
        "/probe",
        b"{}".to_vec(),
        timeout,
    )
    .await
    .map(|_| ())
}
