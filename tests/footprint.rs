//! Memory budget of an idle client: the task future of a session must stay small, because an
//! idle client costs its task plus its socket (DESIGN.md: under 1 KiB per idle client, as
//! PgBouncer). Large states (login, check-out, transactions, timeouts, the forwarding pipes)
//! live in boxed futures or per-thread caches instead.
//!
//! tokio allocates a task as one 128-byte-aligned cell: the future plus 112 bytes of header
//! and trailer, rounded up to a multiple of 128. A future of at most 272 bytes keeps the cell
//! at 384 bytes (measured: 256 in release builds, `-Zprint-type-sizes`); the next step up is
//! 512.

/// The largest session future that still fits a 384-byte task cell.
const BUDGET: usize = 272;

#[tokio::test]
async fn client_task_future_stays_small() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let config = pgsluice::config::from_str("[databases.a]\nhost = 'h'\n", "t").expect("config");
    let backend = pgsluice::backend::Backend::new(std::sync::Arc::new(config), Default::default());
    let ctx = pgsluice::session::SessionCtx::new(backend);
    let client = pgsluice::net::stream::ClientStream::Tcp(stream);
    let task = pgsluice::session::serve(ctx, client, pgsluice::net::stream::Peer::Unix);
    let size = std::mem::size_of_val(&task);
    assert!(
        size <= BUDGET,
        "client task future is {size} bytes, budget {BUDGET}"
    );
}
