//! The client side of the poolers' control endpoints: push a topology, pause, resume.
//!
//! A pooler that is down or slow is reported, never waited for beyond the timeout: a failover
//! must not block on a dead pooler (the pooler probes nodes itself and catches up).
//! Every call carries the control secret (`[control] secret_file`, re-read for each push).

use crate::topology::Topology;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinSet;

/// What one pooler answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200.
    Ok,
    /// 409: the pooler already holds this epoch or a higher one.
    Stale,
    /// 504: the pause did not reach every transaction boundary in time.
    PauseTimedOut,
    /// Anything else: status, connection error or timeout.
    Failed(String),
}

/// One pooler's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The pooler's base URL.
    pub url: String,
    /// What it answered.
    pub outcome: Outcome,
}

/// The configured poolers.
#[derive(Clone)]
pub struct Poolers {
    urls: Vec<String>,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    secret_file: Option<PathBuf>,
}

impl std::fmt::Debug for Poolers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poolers").field("urls", &self.urls).finish()
    }
}

impl Poolers {
    /// Poolers at `urls` (`http://host:port`), each request bounded by `timeout`.
    pub fn new(urls: Vec<String>, timeout: Duration) -> Poolers {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        Poolers {
            urls,
            client: Client::builder(TokioExecutor::new()).build(http),
            timeout,
            secret_file: None,
        }
    }

    /// The same poolers, called with the secret in `file` (`None`: no secret is sent, and
    /// the poolers refuse).
    pub fn with_secret(mut self, file: Option<PathBuf>) -> Poolers {
        self.secret_file = file;
        self
    }

    /// Whether any pooler is configured.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// `POST /control/topology` to every pooler.
    pub async fn publish(&self, topology: &Topology) -> Vec<Reply> {
        let body = serde_json::to_vec(topology).unwrap_or_default();
        self.post_all("/control/topology", body, self.timeout).await
    }

    /// `POST /control/pause` with `timeout`: each pooler answers once its clients are at a
    /// transaction boundary and new transactions wait.
    pub async fn pause(&self, timeout: Duration) -> Vec<Reply> {
        let body = format!("{{\"timeout_ms\":{}}}", timeout.as_millis()).into_bytes();
        self.post_all("/control/pause", body, timeout + self.timeout)
            .await
    }

    /// `POST /control/resume` to every pooler.
    pub async fn resume(&self) -> Vec<Reply> {
        self.post_all("/control/resume", b"{}".to_vec(), self.timeout)
            .await
    }

    async fn post_all(&self, path: &str, body: Vec<u8>, timeout: Duration) -> Vec<Reply> {
        let auth = match self.secret_file.as_deref().map(crate::net::secret::bearer) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                let outcome = Outcome::Failed(e.to_string());
                return self
                    .urls
                    .iter()
                    .map(|url| Reply {
                        url: url.clone(),
                        outcome: outcome.clone(),
                    })
                    .collect();
            }
        };
        let mut set = JoinSet::new();
        for url in &self.urls {
            let (client, url, body) = (self.client.clone(), url.clone(), body.clone());
            let uri = format!("{}{path}", url.trim_end_matches('/'));
            let auth = auth.clone();
            set.spawn(async move {
                let outcome = post(&client, &uri, auth, body, timeout).await;
                Reply { url, outcome }
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.url.cmp(&b.url));
        out
    }
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: &str,
    auth: Option<String>,
    body: Vec<u8>,
    timeout: Duration,
) -> Outcome {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let req = match req.body(Full::new(Bytes::from(body))) {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("bad request: {e}")),
    };
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Outcome::Failed(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => Outcome::Failed(super::probe::error_text(&e)),
        Ok(Ok(resp)) => match resp.status() {
            StatusCode::OK => Outcome::Ok,
            StatusCode::CONFLICT => Outcome::Stale,
            StatusCode::GATEWAY_TIMEOUT => Outcome::PauseTimedOut,
            StatusCode::UNAUTHORIZED => Outcome::Failed("HTTP 401: wrong control secret".into()),
            StatusCode::FORBIDDEN => {
                Outcome::Failed("HTTP 403: the pooler has no control secret_file".into())
            }
            s => Outcome::Failed(format!("HTTP {s}")),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A stand-in pooler endpoint that checks the secret in `file` like the real one.
    async fn guarded_endpoint(file: std::path::PathBuf) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(crate::net::http::serve(l, stop, move |req| {
            let file = file.clone();
            async move {
                match crate::net::http::authorize(&req, Some(&file)) {
                    Ok(()) => crate::net::http::reply(StatusCode::OK, "text/plain", "ok"),
                    Err(r) => r.into_reply(),
                }
            }
        }));
        url
    }

    #[tokio::test]
    async fn pushes_carry_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        crate::net::secret::generate(&file).unwrap();
        let url = guarded_endpoint(file.clone()).await;
        let timeout = Duration::from_secs(5);
        let with = Poolers::new(vec![url.clone()], timeout).with_secret(Some(file.clone()));
        assert_eq!(with.resume().await[0].outcome, Outcome::Ok);
        assert_eq!(
            with.publish(&Topology::default()).await[0].outcome,
            Outcome::Ok
        );
        let without = Poolers::new(vec![url.clone()], timeout);
        let r = without.resume().await;
        assert!(
            matches!(&r[0].outcome, Outcome::Failed(m) if m.contains("401")),
            "{r:?}"
        );
        // A secret file that became unreadable fails every push without sending it.
        std::fs::remove_file(&file).unwrap();
        let r = with.pause(Duration::from_millis(100)).await;
        assert!(
            matches!(&r[0].outcome, Outcome::Failed(m) if m.contains("secret")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_down_pooler_is_reported_quickly() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let p = Poolers::new(
            vec![format!("http://127.0.0.1:{port}")],
            Duration::from_millis(300),
        );
        let started = std::time::Instant::now();
        let r = p.publish(&Topology::default()).await;
        assert_eq!(r.len(), 1);
        assert!(matches!(r[0].outcome, Outcome::Failed(_)), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
