//! The agent's HTTP endpoint on `agent.listen`: `GET /metrics`, `GET /status` (JSON),
//! `POST /probe` (an early signal, e.g. from a pooler whose server connections broke: probe now,
//! decide as usual), `POST /ops` (a DBA operation, run by the agent loop between rounds).
//! Every `POST` needs the control secret; `/metrics` and `/status` need it when
//! `[control] protect_reads` is on. The server loop itself is [`crate::net::http`].

use super::ops::{OpReport, OpRequest};
use super::run::{Shared, Status};
use crate::config::ControlConfig;
use crate::net::http::{authorize, read_json, reply, Reply};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// An operation with the channel its report goes back on.
pub type OpCall = (OpRequest, oneshot::Sender<OpReport>);

const JSON: &str = "application/json";

/// Serves until `stop`; `control` says who may call.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    ops: mpsc::Sender<OpCall>,
    control: ControlConfig,
    stop: CancellationToken,
) {
    let control = Arc::new(control);
    crate::net::http::serve(listener, stop, move |req| {
        let (shared, ops, control) = (shared.clone(), ops.clone(), control.clone());
        async move { handle(&shared, &ops, &control, req).await }
    })
    .await
}

async fn handle(
    shared: &Shared,
    ops: &mpsc::Sender<OpCall>,
    control: &ControlConfig,
    req: Request<Incoming>,
) -> Reply {
    let secret = control.secret_file.as_deref();
    let guard = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics" | "/status") if !control.protect_reads => Ok(()),
        (&Method::GET, "/metrics" | "/status") | (&Method::POST, "/probe" | "/ops") => {
            authorize(&req, secret)
        }
        _ => return reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    };
    if let Err(r) = guard {
        return r.into_reply();
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            shared.metrics.render(),
        ),
        (&Method::GET, _) => {
            let s: Status = shared.status();
            let body = serde_json::to_vec(&s).unwrap_or_default();
            reply(StatusCode::OK, JSON, body)
        }
        (_, "/probe") => match read_json::<serde::de::IgnoredAny>(req).await {
            Ok(_) => {
                shared.probe_now.notify_one();
                reply(StatusCode::OK, JSON, "{}")
            }
            Err(r) => r.into_reply(),
        },
        _ => match read_json::<OpRequest>(req).await {
            Ok(op) => run_op(ops, op).await,
            Err(r) => r.into_reply(),
        },
    }
}

async fn run_op(ops: &mpsc::Sender<OpCall>, op: OpRequest) -> Reply {
    let (tx, rx) = oneshot::channel();
    if ops.send((op, tx)).await.is_err() {
        return reply(StatusCode::SERVICE_UNAVAILABLE, JSON, "agent stopping");
    }
    match rx.await {
        Ok(r) => reply(
            StatusCode::OK,
            JSON,
            serde_json::to_vec(&r).unwrap_or_default(),
        ),
        Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, JSON, "agent stopped"),
    }
}

#[cfg(test)]
#[path = "http_test.rs"]
mod tests;
