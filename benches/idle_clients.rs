//! Idle-client benchmark: opens N client connections to a pooler (trust auth), measures the
//! pooler's RSS growth per idle client, the latency of `SELECT 1` on one more client, and how
//! much of the growth the pooler still holds 3 s after the idle clients left.
//!
//! Run: `cargo bench --bench idle_clients -- HOST PORT POOLER_PID CLIENTS [USER] [DB]`
//! (used by `benches/pooler_vs_pgbouncer.sh`; prints one line of `key=value` pairs).

use bytes::{Buf, BufMut, BytesMut};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn startup(user: &str, db: &str) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i32(0);
    b.put_i32(196608);
    for (k, v) in [("user", user), ("database", db)] {
        b.put_slice(k.as_bytes());
        b.put_u8(0);
        b.put_slice(v.as_bytes());
        b.put_u8(0);
    }
    b.put_u8(0);
    let len = b.len() as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    b
}

/// Reads messages until ReadyForQuery; fails on ErrorResponse.
async fn until_ready(s: &mut TcpStream, buf: &mut BytesMut) -> Res<()> {
    loop {
        while buf.len() >= 5 {
            let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize + 1;
            if buf.len() < len {
                break;
            }
            let tag = buf[0];
            if tag == b'E' {
                return Err(
                    format!("server error: {:?}", String::from_utf8_lossy(&buf[5..len])).into(),
                );
            }
            buf.advance(len);
            if tag == b'Z' {
                return Ok(());
            }
        }
        if s.read_buf(buf).await? == 0 {
            return Err("closed".into());
        }
    }
}

async fn login(host: &str, port: u16, user: &str, db: &str) -> Res<TcpStream> {
    let mut s = TcpStream::connect((host, port)).await?;
    s.write_all(&startup(user, db)).await?;
    let mut buf = BytesMut::with_capacity(1024);
    until_ready(&mut s, &mut buf).await?;
    Ok(s)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn run(host: String, port: u16, pid: u32, n: usize, user: String, db: String) -> Res<()> {
    // Warm the pool and the pooler's caches with one client first.
    let mut probe = login(&host, port, &user, &db).await?;
    let before = rss_kib(pid);
    let mut idle = Vec::with_capacity(n);
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let logins = chunk.iter().map(|_| login(&host, port, &user, &db));
        for r in futures_util::future::join_all(logins).await {
            idle.push(r?);
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    let mut q = BytesMut::new();
    q.put_u8(b'Q');
    q.put_i32(4 + 9);
    q.put_slice(b"SELECT 1\0");
    let mut lat = Vec::with_capacity(1000);
    let mut buf = BytesMut::with_capacity(1024);
    for _ in 0..1000 {
        let t = Instant::now();
        probe.write_all(&q).await?;
        until_ready(&mut probe, &mut buf).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let per_client = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    // The clients leave; what the pooler keeps of their memory 3 s later (its janitor runs
    // once a second).
    drop(idle);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let left = rss_kib(pid);
    let kept = left.saturating_sub(before) as f64 * 1024.0 / n as f64;
    println!(
        "clients={n} rss_before_kib={before} rss_after_kib={after} bytes_per_idle_client={per_client:.0} rss_after_leaving_kib={left} bytes_kept_per_client={kept:.0} connect_s={connect_secs:.2} select1_p50_ms={:.3} select1_p99_ms={:.3}",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() < 4 {
        eprintln!("usage: idle_clients HOST PORT POOLER_PID CLIENTS [USER] [DB]");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(
        args[0].clone(),
        args[1].parse()?,
        args[2].parse()?,
        args[3].parse()?,
        args.get(4).cloned().unwrap_or_else(|| "postgres".into()),
        args.get(5).cloned().unwrap_or_else(|| "postgres".into()),
    ))
}
