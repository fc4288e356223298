//! Telling the agent at once when the pooler's connections to the primary break: a `POST
//! /probe` to `agent.listen` with the control secret, so that the agent probes now rather than
//! at its next `probe_interval` tick. A reason to probe, never a verdict: the agent decides
//! from its own probes and the standbys' veto as always (docs/failover.md section 11).
//!
//! Sessions raise `Backend::primary_trouble` (a `Notify`: many raises between two notices
//! make one); notices go out at most once per [`GAP`], each bounded by [`TIMEOUT`].

use crate::backend::Backend;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Least time between two notices.
const GAP: Duration = Duration::from_millis(50);
/// Bound on one notice.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Sends a notice each time sessions raised `primary_trouble`, while the configuration in
/// force says an agent manages this pooler (`agent.poolers` not empty), until `stop`.
pub async fn run(ctx: Arc<Backend>, stop: CancellationToken) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ctx.primary_trouble.notified() => {}
        }
        let config = ctx.config();
        if config.agent.poolers.is_empty() {
            continue;
        }
        let addr = config.agent.listen;
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{addr}/probe"))
            .header("content-type", "application/json");
        if let Some(file) = config.control.secret_file.as_deref() {
            match crate::net::secret::bearer(file) {
                Ok(auth) => req = req.header("authorization", auth),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the control secret for the agent notice")
                }
            }
        }
        let Ok(req) = req.body(Full::new(Bytes::from_static(b"{}"))) else {
            continue;
        };
        let sent = tokio::time::timeout(TIMEOUT, client.request(req)).await;
        match sent {
            Ok(Ok(r)) if r.status().is_success() => {
                tracing::debug!(agent = %addr, "asked the agent to probe the primary now");
                failing = false;
            }
            other => {
                if !failing {
                    let why = match other {
                        Ok(Ok(r)) => format!("HTTP {}", r.status()),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer within {TIMEOUT:?}"),
                    };
                    tracing::warn!(agent = %addr, error = %why, "agent notice failed");
                }
                failing = true;
            }
        }
        tokio::time::sleep(GAP).await;
    }
}
