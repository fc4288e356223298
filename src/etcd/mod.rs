//! A small etcd v3 client over etcd's JSON gateway (`/v3/kv/*`, `/v3/lease/*`, `/v3/watch`,
//! `/v3/auth/authenticate`), on the hyper client the crate already has: no gRPC stack, no
//! protoc. Keys and values travel base64-encoded; 64-bit integers travel as JSON strings.
//!
//! Several endpoints may be given: a request that cannot reach one (connection refused,
//! timeout) is tried on the next one. An error answered by etcd itself is not retried.
//! With a user name and password, the client authenticates once, sends the token in the
//! `Authorization` header, and authenticates again when etcd says the token expired.

pub mod watch;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Why an etcd request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered.
    #[error("etcd unreachable ({0})")]
    Unreachable(String),
    /// etcd answered with an error.
    #[error("etcd: {0}")]
    Status(String),
    /// The answer could not be understood.
    #[error("etcd answer not understood: {0}")]
    Bad(String),
}

/// How to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `http://host:port` client URLs.
    pub endpoints: Vec<String>,
    /// User name and password, when etcd has authentication enabled.
    pub auth: Option<(String, String)>,
    /// Bound on one request (connecting included).
    pub timeout: Duration,
}

/// One key-value pair as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Kv {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// Revision of the key's creation (0 when absent).
    pub create_revision: i64,
    /// Revision of the key's last change.
    pub mod_revision: i64,
    /// The lease attached (0 = none).
    pub lease: i64,
}

/// One comparison of a transaction.
#[derive(Debug, Clone)]
pub struct Cmp(Value);

impl Cmp {
    /// The key's creation revision equals `rev` (0 = the key does not exist).
    pub fn create_revision(key: &str, rev: i64) -> Cmp {
        Cmp(
            json!({"key": b64(key), "target": "CREATE", "result": "EQUAL",
                   "create_revision": rev.to_string()}),
        )
    }

    /// The key's last modification revision equals `rev` (0 = the key does not exist).
    pub fn mod_revision(key: &str, rev: i64) -> Cmp {
        Cmp(json!({"key": b64(key), "target": "MOD", "result": "EQUAL",
                   "mod_revision": rev.to_string()}))
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub struct Op(Value);

impl Op {
    /// Writes `value` at `key`, attached to `lease` (0 = none).
    pub fn put(key: &str, value: &[u8], lease: i64) -> Op {
        let mut p = json!({"key": b64(key), "value": B64.encode(value)});
        if lease != 0 {
            p["lease"] = json!(lease.to_string());
        }
        Op(json!({ "request_put": p }))
    }

    /// Reads `key`.
    pub fn get(key: &str) -> Op {
        Op(json!({"request_range": {"key": b64(key)}}))
    }
}

/// The result of a transaction.
#[derive(Debug, Clone, Default)]
pub struct TxnResult {
    /// Whether every comparison held (the success branch ran).
    pub succeeded: bool,
    /// The pairs read by `Op::get`s of the branch that ran, in order (None = absent).
    pub reads: Vec<Option<Kv>>,
    /// The store's revision after the transaction.
    pub revision: i64,
}

/// A client over one or more endpoints.
pub struct EtcdClient {
    settings: EtcdSettings,
    http: Client<HttpConnector, Full<Bytes>>,
    current: AtomicUsize,
    token: Mutex<Option<String>>,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.settings.endpoints)
            .finish()
    }
}

/// Base64 of a key.
pub fn b64(key: &str) -> String {
    B64.encode(key.as_bytes())
}

/// The end of the range of every key starting with `prefix`.
pub fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return B64.encode(&end);
        }
    }
    B64.encode([0u8])
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn kv(v: &Value) -> Result<Kv, EtcdError> {
    let dec = |f: &str| -> Result<Vec<u8>, EtcdError> {
        let s = v.get(f).and_then(Value::as_str).unwrap_or("");
        B64.decode(s)
            .map_err(|e| EtcdError::Bad(format!("{f}: {e}")))
    };
    Ok(Kv {
        key: String::from_utf8_lossy(&dec("key")?).into_owned(),
        value: dec("value")?,
        create_revision: int(&v["create_revision"]),
        mod_revision: int(&v["mod_revision"]),
        lease: int(&v["lease"]),
    })
}

fn kvs(v: &Value) -> Result<Vec<Kv>, EtcdError> {
    v.get("kvs")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(kv).collect())
        .unwrap_or_else(|| Ok(Vec::new()))
}

impl EtcdClient {
    /// A client for `settings` (nothing is connected yet).
    pub fn new(settings: EtcdSettings) -> EtcdClient {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(settings.timeout));
        http.set_nodelay(true);
        EtcdClient {
            settings,
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(http),
            current: AtomicUsize::new(0),
            token: Mutex::new(None),
        }
    }

    /// The configured endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.settings.endpoints
    }

    pub(crate) fn request(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
    ) -> Result<Request<Full<Bytes>>, EtcdError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", endpoint.trim_end_matches('/')))
            .header("content-type", "application/json");
        if let Some(t) = self.token.lock().ok().and_then(|t| t.clone()) {
            req = req.header("authorization", t);
        }
        req.body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| EtcdError::Bad(e.to_string()))
    }

    pub(crate) fn http(&self) -> &Client<HttpConnector, Full<Bytes>> {
        &self.http
    }

    /// The endpoints in the order to try them: the last one that answered first.
    pub(crate) fn rotation(&self) -> Vec<(usize, String)> {
        let n = self.settings.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .map(|i| (i, self.settings.endpoints[i].clone()))
            .collect()
    }

    pub(crate) fn answered(&self, index: usize) {
        self.current.store(index, Ordering::Relaxed);
    }

    async fn once(&self, endpoint: &str, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let req = self.request(endpoint, path, body)?;
        let t = self.settings.timeout;
        let unreachable = |e: String| EtcdError::Unreachable(format!("{endpoint}: {e}"));
        let resp = tokio::time::timeout(t, self.http.request(req))
            .await
            .map_err(|_| unreachable(format!("no answer within {t:?}")))?
            .map_err(|e| unreachable(error_text(&e)))?;
        let bytes = tokio::time::timeout(t, resp.into_body().collect())
            .await
            .map_err(|_| unreachable("body timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| EtcdError::Bad(format!("{path}: {e}")))?;
        if let Some(err) = v.get("error").or_else(|| v.get("message")) {
            let text = err.as_str().unwrap_or("error").to_string();
            return Err(EtcdError::Status(text));
        }
        Ok(v)
    }

    /// Posts `body` to `path` on the first endpoint that answers.
    pub async fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        if self.settings.auth.is_some() && !self.has_token() {
            self.authenticate().await?;
        }
        let r = self.call_endpoints(path, body).await;
        match r {
            Err(EtcdError::Status(s)) if self.settings.auth.is_some() && is_auth_error(&s) => {
                self.authenticate().await?;
                self.call_endpoints(path, body).await
            }
            other => other,
        }
    }

    async fn call_endpoints(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let mut last = EtcdError::Unreachable("no endpoint configured".into());
        for (i, ep) in self.rotation() {
            match self.once(&ep, path, body).await {
                Ok(v) => {
                    self.answered(i);
                    return Ok(v);
                }
                Err(e @ EtcdError::Unreachable(_)) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn has_token(&self) -> bool {
        self.token.lock().is_ok_and(|t| t.is_some())
    }

    async fn authenticate(&self) -> Result<(), EtcdError> {
        let Some((name, password)) = self.settings.auth.clone() else {
            return Ok(());
        };
        if let Ok(mut t) = self.token.lock() {
            *t = None;
        }
        let v = self
            .call_endpoints(AUTH_PATH, &json!({"name": name, "password": password}))
            .await?;
        let token = v
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| EtcdError::Bad("authenticate: no token".into()))?;
        if let Ok(mut t) = self.token.lock() {
            *t = Some(token.to_string());
        }
        Ok(())
    }

    /// Reads `key` (None when absent) with the store's revision.
    pub async fn get(&self, key: &str) -> Result<(Option<Kv>, i64), EtcdError> {
        let v = self.call("/v3/kv/range", &json!({"key": b64(key)})).await?;
        let rev = int(&v["header"]["revision"]);
        Ok((kvs(&v)?.into_iter().next(), rev))
    }

    /// Every key under `prefix` created at or after `min_create_revision`, oldest first,
    /// at most `limit` (0 = all).
    pub async fn list(
        &self,
        prefix: &str,
        min_create_revision: i64,
        limit: i64,
    ) -> Result<Vec<Kv>, EtcdError> {
        let mut body = json!({"key": b64(prefix), "range_end": prefix_end(prefix),
            "sort_order": "ASCEND", "sort_target": "CREATE"});
        if min_create_revision > 0 {
            body["min_create_revision"] = json!(min_create_revision.to_string());
        }
        if limit > 0 {
            body["limit"] = json!(limit.to_string());
        }
        kvs(&self.call("/v3/kv/range", &body).await?)
    }

    /// Writes `value` at `key`, attached to `lease` (0 = none).
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), EtcdError> {
        let Op(p) = Op::put(key, value, lease);
        self.call("/v3/kv/put", &p["request_put"]).await.map(|_| ())
    }

    /// Deletes the keys from `key` (included) to `end` (excluded, base64 as `prefix_end`).
    pub async fn delete_range(&self, key: &str, end_b64: &str) -> Result<(), EtcdError> {
        let body = json!({"key": b64(key), "range_end": end_b64});
        self.call("/v3/kv/deleterange", &body).await.map(|_| ())
    }

    /// Runs `success` if every comparison holds, `failure` otherwise.
    pub async fn txn(
        &self,
        compare: Vec<Cmp>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<TxnResult, EtcdError> {
        let body = json!({
            "compare": compare.into_iter().map(|c| c.0).collect::<Vec<_>>(),
            "success": success.into_iter().map(|o| o.0).collect::<Vec<_>>(),
            "failure": failure.into_iter().map(|o| o.0).collect::<Vec<_>>(),
        });
        let v = self.call("/v3/kv/txn", &body).await?;
        let mut reads = Vec::new();
        for r in v
            .get("responses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(range) = r.get("response_range") {
                reads.push(kvs(range)?.into_iter().next());
            }
        }
        Ok(TxnResult {
            succeeded: v.get("succeeded").and_then(Value::as_bool) == Some(true),
            reads,
            revision: int(&v["header"]["revision"]),
        })
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))
            .await?;
        match int(&v["ID"]) {
            0 => Err(EtcdError::Bad("lease grant without an ID".into())),
            id => Ok(id),
        }
    }

    /// Renews `lease`; None when it expired (or was revoked).
    pub async fn keep_alive(&self, lease: i64) -> Result<Option<i64>, EtcdError> {
        let v = self
            .call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))
            .await?;
        let ttl = int(&v["result"]["TTL"]);
        Ok((ttl > 0).then_some(ttl))
    }

    /// Seconds left on `lease` (None when expired).
    pub async fn time_to_live(&self, lease: i64) -> Result<Option<i64>, EtcdError> {
        let v = self
            .call("/v3/lease/timetolive", &json!({"ID": lease.to_string()}))
            .await?;
        let ttl = int(&v["TTL"]);
        Ok((ttl >= 0 && v.get("TTL").is_some()).then_some(ttl))
    }

    /// Revokes `lease`: every key attached to it goes at once.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", &json!({"ID": lease.to_string()}))
            .await
            .map(|_| ())
    }
}

pub(crate) use crate::error_text::error_text;

const AUTH_PATH: &str = "/v3/auth/authenticate";

fn is_auth_error(text: &str) -> bool {
    text.contains("invalid auth token") || text.contains("user name is empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("/a/"), B64.encode(b"/a0"));
        assert_eq!(prefix_end("a\u{7f}"), B64.encode(b"a\x80"));
    }

    #[test]
    fn integers_come_as_strings_or_numbers() {
        assert_eq!(int(&json!("42")), 42);
        assert_eq!(int(&json!(7)), 7);
        assert_eq!(int(&Value::Null), 0);
    }
}
