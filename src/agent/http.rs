//! The agent's HTTP endpoint on `agent.listen`: `GET /metrics`, `GET /status` (JSON),
//! `POST /probe` (an early signal, e.g. from a pooler whose server connections broke: probe now,
//! decide as usual), `POST /ops` (a DBA operation, run by the agent loop between rounds).

use super::ops::{OpReport, OpRequest};
use super::run::{Shared, Status};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// An operation with the channel its report goes back on.
pub type OpCall = (OpRequest, oneshot::Sender<OpReport>);

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// Serves until `stop`.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    ops: mpsc::Sender<OpCall>,
    stop: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
        };
        let (shared, ops) = (shared.clone(), ops.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (shared, ops) = (shared.clone(), ops.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(&shared, &ops, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(shared: &Shared, ops: &mpsc::Sender<OpCall>, req: Request<Incoming>) -> Reply {
    const JSON: &str = "application/json";
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            shared.metrics.render(),
        ),
        (&Method::GET, "/status") => {
            let s: Status = shared.status();
            reply(
                StatusCode::OK,
                JSON,
                serde_json::to_vec(&s).unwrap_or_default(),
            )
        }
        (&Method::POST, "/probe") => {
            shared.probe_now.notify_one();
            reply(StatusCode::OK, JSON, "{}")
        }
        (&Method::POST, "/ops") => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return reply(StatusCode::BAD_REQUEST, JSON, e.to_string()),
            };
            let op: OpRequest = match serde_json::from_slice(&body) {
                Ok(o) => o,
                Err(e) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        JSON,
                        format!("invalid request: {e}"),
                    )
                }
            };
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
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}
