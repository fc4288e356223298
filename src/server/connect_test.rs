//! Tests of the pooler's login to a server that misbehaves: a scripted server on loopback asks
//! for a cleartext password without TLS, skips the SCRAM server-final message, or asks for an
//! absurd iteration count. (Real PostgreSQL never does these; the positive paths are covered
//! by every test that logs in to the harness's clusters.)

#![allow(clippy::unwrap_used)]

use super::*;
use crate::tls::client::ServerTlsHandle;
use tokio::net::TcpListener;

fn spec(port: u16) -> ConnectSpec {
    ConnectSpec {
        node: "scripted".into(),
        host: "127.0.0.1".into(),
        port,
        user: "app".into(),
        database: "app".into(),
        credential: Credential::Password("hunter2-secret".into()),
        connect_timeout: Duration::from_secs(5),
        keepalive: false,
        tls: ServerTlsHandle::default(),
    }
}

fn auth(code: i32, data: &[u8]) -> Vec<u8> {
    let mut m = vec![b'R'];
    m.extend_from_slice(&(8 + data.len() as i32).to_be_bytes());
    m.extend_from_slice(&code.to_be_bytes());
    m.extend_from_slice(data);
    m
}

/// Reads one client message (tag, body); `None` at end of stream.
async fn read_msg(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let tag = s.read_u8().await.ok()?;
    let len = s.read_i32().await.ok()? as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.ok()?;
    Some((tag, body))
}

async fn read_startup(s: &mut TcpStream) {
    let len = s.read_i32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
}

/// A server running `script` on its one connection; returns the port and what it saw.
async fn scripted<F, Fut>(script: F) -> (u16, tokio::task::JoinHandle<Vec<u8>>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Vec<u8>> + Send,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        script(s).await
    });
    (port, h)
}

#[tokio::test]
async fn a_cleartext_request_without_tls_gets_no_password() {
    let (port, seen) = scripted(|mut s| async move {
        read_startup(&mut s).await;
        s.write_all(&auth(3, b"")).await.unwrap();
        // Whatever the client sends next (nothing: it hangs up).
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        rest
    })
    .await;
    let err = connect(&spec(port)).await.err().unwrap();
    assert!(matches!(err, ServerError::CleartextRefused { .. }), "{err}");
    assert!(err.to_string().contains("server_allow_cleartext_password"));
    assert_eq!(err.sqlstate(), "28000");
    let rest = seen.await.unwrap();
    assert!(rest.is_empty(), "the password was sent: {rest:?}");
}

/// Starts SCRAM and answers with a server-first of `iterations`; returns the client's nonce
/// echo and what followed.
async fn scram_server(mut s: TcpStream, iterations: u32, then_ok: bool) -> Vec<u8> {
    read_startup(&mut s).await;
    s.write_all(&auth(10, b"SCRAM-SHA-256\0\0")).await.unwrap();
    let (tag, body) = read_msg(&mut s).await.unwrap();
    assert_eq!(tag, b'p');
    let text = String::from_utf8_lossy(&body).into_owned();
    let nonce = text.split("r=").nth(1).unwrap().to_string();
    let first = format!("r={nonce}srv,s=c2FsdHNhbHRzYWx0,i={iterations}");
    s.write_all(&auth(11, first.as_bytes())).await.unwrap();
    let Some((tag, body)) = read_msg(&mut s).await else {
        return Vec::new();
    };
    assert_eq!(tag, b'p');
    if then_ok {
        // AuthenticationOk with no SASLFinal: the server never proved it knows the secret.
        s.write_all(&auth(0, b"")).await.unwrap();
        s.write_all(b"Z\0\0\0\x05I").await.unwrap();
    }
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    body
}

#[tokio::test]
async fn authentication_ok_without_the_server_signature_is_refused() {
    let (port, seen) = scripted(|s| scram_server(s, 4096, true)).await;
    let err = connect(&spec(port)).await.err().unwrap();
    assert!(
        err.to_string()
            .contains("before a verified SCRAM server signature"),
        "{err}"
    );
    let proof = String::from_utf8(seen.await.unwrap()).unwrap();
    assert!(
        proof.contains(",p="),
        "the client did send its proof: {proof}"
    );
}

#[tokio::test]
async fn an_absurd_iteration_count_is_refused_before_any_proof() {
    let (port, seen) = scripted(|s| scram_server(s, 10_000_000, false)).await;
    let started = std::time::Instant::now();
    let err = connect(&spec(port)).await.err().unwrap();
    assert!(err.to_string().contains("iteration count"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no PBKDF2 was run"
    );
    assert!(seen.await.unwrap().is_empty(), "no proof sent");
}
