//! Tests of the HTTP loop's own bounds: the connection cap and the back-off on accept errors.

#![allow(clippy::unwrap_used)]

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn ok(_req: Request<Incoming>) -> Reply {
    reply(StatusCode::OK, "text/plain", "ok\n")
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let limits = Limits {
        max_connections: 2,
        header_timeout: Duration::from_millis(600),
    };
    tokio::spawn(serve_with(l, limits, CancellationToken::new(), ok));
    // Two clients that never finish their headers hold both slots.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(300), third.read_to_end(&mut out)).await;
    assert!(early.is_err(), "served beyond the cap: {out:?}");
    // The stalled ones are cut at the header timeout; the third is then served.
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "{out:?}"
    );
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    for mut s in stalled {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        assert!(
            rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
            "{rest:?}"
        );
    }
}

/// A source whose every accept fails, counting the attempts.
struct Failing(Arc<AtomicUsize>);

impl Connections for Failing {
    async fn next_conn(&self) -> std::io::Result<TcpStream> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(std::io::Error::other("too many open files"))
    }
}

#[tokio::test]
async fn failing_accepts_back_off_instead_of_spinning() {
    let calls = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve_with(
        Failing(calls.clone()),
        Limits::default(),
        stop.clone(),
        ok,
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.cancel();
    task.await.unwrap();
    // 5 + 10 + 20 + 40 + 80 + 160 ms of pauses fit in 400 ms: about 7 attempts, not thousands.
    let n = calls.load(Ordering::SeqCst);
    assert!((3..=10).contains(&n), "{n} accept attempts in 400 ms");
}
