//! The pooler's HTTP endpoint: `/metrics`, `/health`, and the control calls the agent uses
//! (`/control/topology`, which also renews the write lease, `/control/pause`, `/control/resume`).

use super::metrics::render;
use crate::backend::{ApplyError, Backend};
use crate::topology::Topology;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

/// Serves HTTP on `listener` until `stop`.
pub async fn serve(listener: TcpListener, ctx: Arc<Backend>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(ctx, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds the endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn handle(ctx: Arc<Backend>, req: Request<Incoming>) -> Reply {
    // A push renews the write lease from its receipt: taken before the body is read.
    let received = Instant::now();
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/health") => reply(StatusCode::OK, "ok\n"),
        (&Method::GET, "/metrics") => {
            let mut r = reply(StatusCode::OK, render(&ctx));
            r.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, "/control/topology") => {
            let (t, _) = ctx.topology();
            reply(
                StatusCode::OK,
                serde_json::to_string(&t).unwrap_or_default(),
            )
        }
        (&Method::POST, "/control/topology") => match body_json::<Topology>(req).await {
            Ok(t) => push_topology(&ctx, t, received),
            Err(e) => reply(StatusCode::BAD_REQUEST, e),
        },
        (&Method::POST, "/control/pause") => {
            let timeout = body_json::<PauseRequest>(req)
                .await
                .map(|p| p.timeout_ms)
                .unwrap_or(10_000);
            pause(&ctx, Duration::from_millis(timeout)).await
        }
        (&Method::POST, "/control/resume") => {
            ctx.gate.resume();
            reply(StatusCode::OK, "resumed\n")
        }
        _ => reply(StatusCode::NOT_FOUND, "not found\n"),
    }
}

#[derive(serde::Deserialize)]
struct PauseRequest {
    #[serde(default = "default_pause")]
    timeout_ms: u64,
}

fn default_pause() -> u64 {
    10_000
}

async fn body_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, String> {
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if bytes.len() > 1 << 20 {
        return Err("body too large".into());
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("invalid JSON: {e}"))
}

/// Applies a pushed topology (epoch-ordered, see [`Backend::apply`]); the one held, pushed
/// again, renews the write lease (the agent's heartbeat), and so does an applied one.
fn push_topology(ctx: &Backend, t: Topology, received: Instant) -> Reply {
    let (current, _) = ctx.topology();
    if current.epoch > 0 && t == current {
        ctx.writer.renew(received);
        return reply(StatusCode::OK, "renewed\n");
    }
    let (epoch, primary, fenced) = (t.epoch, t.primary.clone(), t.fenced.clone());
    match ctx.apply(t) {
        Ok(()) => {
            ctx.writer.renew(received);
            tracing::info!(epoch, ?primary, ?fenced, "topology pushed");
            reply(StatusCode::OK, "accepted\n")
        }
        Err(e @ ApplyError::Stale { .. }) => reply(StatusCode::CONFLICT, format!("{e}\n")),
        Err(e) => reply(StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// Holds new transactions and waits until no server connection is checked out.
async fn pause(ctx: &Backend, timeout: Duration) -> Reply {
    ctx.gate.pause();
    let deadline = Instant::now() + timeout;
    loop {
        let active: usize = ctx.pools.all().iter().map(|p| p.active()).sum();
        if active == 0 {
            return reply(StatusCode::OK, "paused\n");
        }
        if Instant::now() >= deadline {
            return reply(
                StatusCode::GATEWAY_TIMEOUT,
                format!("{active} transaction(s) still running\n"),
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
