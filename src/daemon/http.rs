//! The pooler's HTTP endpoint: `/metrics`, `/health`, and the control calls the agent uses
//! (`/control/topology`, `/control/pause`, `/control/resume`). Every `POST` needs the control
//! secret; `/metrics` and `GET /control/topology` need it when `[control] protect_reads` is on;
//! `/health` is always open. The server loop itself is [`crate::net::http`].

use super::metrics::Metrics;
use crate::backend::{ApplyError, Backend};
use crate::net::http::{authorize, read_json, reply, Reply};
use crate::topology::Topology;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TEXT: &str = "text/plain; charset=utf-8";
/// The longest pause a control call may ask for.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// Serves HTTP on `listener` until `stop`; `/metrics` renders `metrics`.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Backend>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    crate::net::http::serve(listener, stop, move |req| {
        handle(ctx.clone(), metrics.clone(), req)
    })
    .await
}

/// Binds the endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn handle(ctx: Arc<Backend>, metrics: Arc<Metrics>, req: Request<Incoming>) -> Reply {
    // A push renews the write lease from its receipt: taken before the body is read.
    let received = Instant::now();
    let config = ctx.config();
    let secret = config.control.secret_file.as_deref();
    let read_guard = |req: &Request<Incoming>| match config.control.protect_reads {
        true => authorize(req, secret),
        false => Ok(()),
    };
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/health") => reply(StatusCode::OK, TEXT, "ok\n"),
        (&Method::GET, "/metrics") => match read_guard(&req) {
            Ok(()) => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics.render(),
            ),
            Err(r) => r.into_reply(),
        },
        (&Method::GET, "/control/topology") => match read_guard(&req) {
            Ok(()) => {
                let (t, _) = ctx.topology();
                let body = serde_json::to_string(&t).unwrap_or_default();
                reply(StatusCode::OK, "application/json", body)
            }
            Err(r) => r.into_reply(),
        },
        (&Method::POST, "/control/topology" | "/control/pause" | "/control/resume") => {
            if let Err(r) = authorize(&req, secret) {
                return r.into_reply();
            }
            control(&ctx, &path, req, received).await
        }
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    }
}

/// An authenticated control call.
async fn control(ctx: &Backend, path: &str, req: Request<Incoming>, received: Instant) -> Reply {
    match path {
        "/control/topology" => match read_json::<Topology>(req).await {
            Ok(t) => push_topology(ctx, t, received),
            Err(r) => r.into_reply(),
        },
        "/control/pause" => match read_json::<PauseRequest>(req).await {
            Ok(p) => pause(ctx, Duration::from_millis(p.timeout_ms).min(MAX_PAUSE)).await,
            Err(r) => r.into_reply(),
        },
        _ => match read_json::<serde::de::IgnoredAny>(req).await {
            Ok(_) => {
                ctx.gate.resume();
                reply(StatusCode::OK, TEXT, "resumed\n")
            }
            Err(r) => r.into_reply(),
        },
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

/// Applies a pushed topology (epoch-ordered, see [`Backend::apply`]); the one held, pushed
/// again, renews the write lease (the agent's heartbeat), and so does an applied one.
fn push_topology(ctx: &Backend, t: Topology, received: Instant) -> Reply {
    let (current, _) = ctx.topology();
    if current.epoch > 0 && t == current {
        ctx.writer.renew(received);
        return reply(StatusCode::OK, TEXT, "renewed\n");
    }
    let (epoch, primary, fenced) = (t.epoch, t.primary.clone(), t.fenced.clone());
    match ctx.apply(t) {
        Ok(()) => {
            ctx.writer.renew(received);
            tracing::info!(epoch, ?primary, ?fenced, "topology pushed");
            reply(StatusCode::OK, TEXT, "accepted\n")
        }
        Err(e @ ApplyError::Stale { .. }) => reply(StatusCode::CONFLICT, TEXT, format!("{e}\n")),
        Err(e) => reply(StatusCode::BAD_REQUEST, TEXT, format!("{e}\n")),
    }
}

/// Holds new transactions and waits until no server connection is checked out.
async fn pause(ctx: &Backend, timeout: Duration) -> Reply {
    ctx.gate.pause();
    let deadline = Instant::now() + timeout;
    loop {
        let active: usize = ctx.pools.all().iter().map(|p| p.active()).sum();
        if active == 0 {
            return reply(StatusCode::OK, TEXT, "paused\n");
        }
        if Instant::now() >= deadline {
            return reply(
                StatusCode::GATEWAY_TIMEOUT,
                TEXT,
                format!("{active} transaction(s) still running\n"),
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
