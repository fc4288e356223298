//! Tests of the agent's HTTP endpoint: who may call `/ops` and `/probe`, and how bodies are read.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::agent::metrics::Metrics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "agent-test-secret-0123456789";

struct Endpoint {
    addr: SocketAddr,
    ops: mpsc::Receiver<OpCall>,
    secret: PathBuf,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn endpoint(with_secret: bool, protect_reads: bool) -> Endpoint {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Arc::new(Shared::new(Metrics::new().unwrap()));
    let (tx, ops) = mpsc::channel(8);
    let control = ControlConfig {
        secret_file: with_secret.then(|| secret.clone()),
        protect_reads,
    };
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, shared, tx, control, stop.clone()));
    Endpoint {
        addr,
        ops,
        secret,
        _dir: dir,
        stop,
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body`; returns the
/// status code and the body of the answer.
async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{head}\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    parse(&out)
}

fn parse(out: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

fn switchover() -> Vec<u8> {
    serde_json::to_vec(&OpRequest::Switchover {
        to: "node2".into(),
        dry_run: false,
    })
    .unwrap()
}

const JSON_HEAD: &str = "POST /ops HTTP/1.1\r\nContent-Type: application/json";

#[tokio::test]
async fn ops_without_or_with_a_wrong_secret_are_refused_and_not_run() {
    let mut e = endpoint(true, false).await;
    let (status, body) = raw(e.addr, JSON_HEAD, &switchover()).await;
    assert_eq!(status, 401, "{body}");
    let wrong = format!("{JSON_HEAD}\r\nAuthorization: Bearer {SECRET}x");
    assert_eq!(raw(e.addr, &wrong, &switchover()).await.0, 401);
    let basic = format!("{JSON_HEAD}\r\nAuthorization: Basic {SECRET}");
    assert_eq!(raw(e.addr, &basic, &switchover()).await.0, 401);
    let probe = "POST /probe HTTP/1.1\r\nContent-Type: application/json";
    assert_eq!(raw(e.addr, probe, b"{}").await.0, 401);
    assert!(e.ops.try_recv().is_err(), "no operation reached the loop");
}

#[tokio::test]
async fn without_a_secret_file_every_operation_is_refused() {
    let mut e = endpoint(false, false).await;
    let right = format!("{JSON_HEAD}\r\nAuthorization: Bearer {SECRET}");
    let (status, body) = raw(e.addr, &right, &switchover()).await;
    assert_eq!(status, 403);
    assert!(body.contains("secret_file"), "{body}");
    assert!(e.ops.try_recv().is_err());
}

#[tokio::test]
async fn the_right_secret_runs_the_operation_through_the_client() {
    let mut e = endpoint(true, false).await;
    let mut ops = std::mem::replace(&mut e.ops, mpsc::channel(1).1);
    let runner = tokio::spawn(async move {
        let (op, reply) = ops.recv().await.unwrap();
        let _ = reply.send(OpReport::new("switchover"));
        op
    });
    let req = OpRequest::Switchover {
        to: "node2".into(),
        dry_run: false,
    };
    let secret = e.secret.clone();
    let report = crate::agent::client::op(e.addr, Some(&secret), &req, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.op, "switchover");
    assert_eq!(runner.await.unwrap(), req);
    // The same call without the secret fails and says why.
    let err = crate::agent::client::op(e.addr, None, &req, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn bodies_must_be_json_and_small_and_are_not_read_whole() {
    let mut e = endpoint(true, false).await;
    let auth = format!("Authorization: Bearer {SECRET}");
    let plain = format!("POST /ops HTTP/1.1\r\nContent-Type: text/plain\r\n{auth}");
    assert_eq!(raw(e.addr, &plain, &switchover()).await.0, 415);
    // A declared 100 MB body is refused at once, though none of it is sent.
    let mut s = tokio::net::TcpStream::connect(e.addr).await.unwrap();
    let head = format!("{JSON_HEAD}\r\n{auth}\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parse(&out[..n]).0, 413);
    assert!(e.ops.try_recv().is_err());
}

#[tokio::test]
async fn reads_are_open_unless_protected() {
    let e = endpoint(true, false).await;
    let (status, body) = raw(e.addr, "GET /status HTTP/1.1", b"").await;
    assert_eq!(status, 200);
    assert!(body.starts_with('{'), "{body}");
    assert_eq!(raw(e.addr, "GET /metrics HTTP/1.1", b"").await.0, 200);
    let e = endpoint(true, true).await;
    assert_eq!(raw(e.addr, "GET /status HTTP/1.1", b"").await.0, 401);
    assert_eq!(raw(e.addr, "GET /metrics HTTP/1.1", b"").await.0, 401);
    let with = format!("GET /status HTTP/1.1\r\nAuthorization: Bearer {SECRET}");
    assert_eq!(raw(e.addr, &with, b"").await.0, 200);
}
