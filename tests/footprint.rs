//! Memory budget of an idle client: the task future of a session must stay small, because an
//! idle client costs its task plus its socket (DESIGN.md: under 1 KiB per idle client, as
//! PgBouncer). Large states (login, transactions, timeouts) live in boxed futures instead.

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
        size <= 1024,
        "client task future is {size} bytes, budget 1024"
    );
}
