//! A minimal PostgreSQL byte relay in single-threaded variants, `epoll` (tokio), `uring` (a
//! hand-held io_uring, receives re-armed per burst) and `uring-multi` (multishot receives into
//! provided buffers), to measure what io_uring saves per transaction (issue 17 item 3).
//!
//! Run: `cargo bench --bench uring_relay -- epoll|uring|uring-multi LISTEN_PORT SERVER_HOST:PORT`
//! (used by `benches/uring_vs_epoll.sh`). Each accepted client gets its own server connection,
//! made when the client connects (a pooler in session mode), and every byte, the startup packet
//! included, is forwarded verbatim in both directions: with trust authentication pgbench runs
//! through it. Prints `listening` on stderr once it accepts connections.

#[cfg(target_os = "linux")]
#[path = "uring_relay/multi.rs"]
mod multi;
#[cfg(target_os = "linux")]
#[path = "uring_relay/ring.rs"]
mod ring;

use std::io;
use std::net::SocketAddr;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

/// Bytes read per receive, per direction, in both variants.
const BUF: usize = 16 * 1024;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() != 3 {
        eprintln!("usage: uring_relay epoll|uring|uring-multi LISTEN_PORT SERVER_HOST:PORT");
        return Ok(());
    }
    let port: u16 = args[1]
        .parse()
        .map_err(|e| format!("LISTEN_PORT {:?}: {e}", args[1]))?;
    let server: SocketAddr = args[2]
        .parse()
        .map_err(|e| format!("SERVER_HOST:PORT {:?}: {e}", args[2]))?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    match args[0].as_str() {
        "epoll" => epoll_main(listener, server),
        #[cfg(target_os = "linux")]
        "uring" => Ok(ring::run(listener, server, BUF)?),
        #[cfg(target_os = "linux")]
        "uring-multi" => Ok(multi::run(listener, server, BUF)?),
        other => {
            Err(format!("unknown variant {other:?}: expected epoll, uring or uring-multi").into())
        }
    }
}

/// The epoll variant: a current-thread tokio runtime, one task per client.
fn epoll_main(listener: std::net::TcpListener, server: SocketAddr) -> Res<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        eprintln!("listening");
        loop {
            let (client, _) = listener.accept().await?;
            tokio::spawn(async move {
                if let Err(e) = epoll_pair(client, server).await {
                    eprintln!("pair ended: {e}");
                }
            });
        }
    })
}

/// Relays one client and its own server connection until either side closes.
async fn epoll_pair(client: TcpStream, server: SocketAddr) -> io::Result<()> {
    let server = TcpStream::connect(server).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let mut up = vec![0u8; BUF];
    let mut down = vec![0u8; BUF];
    loop {
        let open = tokio::select! {
            r = client.readable() => { r?; relay_burst(&client, &server, &mut up).await? }
            r = server.readable() => { r?; relay_burst(&server, &client, &mut down).await? }
        };
        if !open {
            return Ok(());
        }
    }
}

/// One read and the writes it needs; false once `from` is closed. A short read clears the
/// socket's readiness (the kernel queue is drained), so no read returns only EAGAIN: the
/// system calls per burst are those a hand-written epoll loop makes.
async fn relay_burst(from: &TcpStream, to: &TcpStream, buf: &mut [u8]) -> io::Result<bool> {
    let mut n = 0;
    let read = from.try_io(Interest::READABLE, || {
        n = from.try_read(buf)?;
        if n > 0 && n < buf.len() {
            // Reported as WouldBlock only so that tokio clears the readiness it saw.
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match read {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            if n == 0 {
                return Ok(true); // a spurious wake-up: nothing was read
            }
        }
        Err(e) => return Err(e),
    }
    if n == 0 {
        return Ok(false);
    }
    let mut sent = 0;
    while sent < n {
        match to.try_write(&buf[sent..n]) {
            Ok(k) => sent += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
