//! The etcd v3 client the agents and the pooler share, on the maintained `etcd-client` crate
//! (gRPC): kv, transactions, leases, watch, authentication. This module adds what pgsluice
//! needs on top: one bound per request, endpoints tried in turn, and etcd's answers turned
//! into the few shapes the callers read ([`Kv`], [`TxnResult`]).
//!
//! Several endpoints may be given; each has its own connection, opened on first use (so a
//! client can be built while etcd is down). A request that cannot reach one (refused, reset,
//! no answer within the bound, etcd unavailable) is tried on the next one, and that
//! connection is dropped so that the next request opens a fresh one; a kept connection that
//! fails at once (closed under it) is first replaced and tried again within the same bound.
//! An error answered by etcd itself is not retried. With a user name and password, each connection authenticates
//! when it opens, and the crate authenticates again when etcd says the token expired.

pub mod watch;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse,
};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

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

impl From<&KeyValue> for Kv {
    fn from(kv: &KeyValue) -> Kv {
        Kv {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        }
    }
}

/// One comparison of a transaction.
#[derive(Debug, Clone)]
pub struct Cmp(Compare);

impl Cmp {
    /// The key's creation revision equals `rev` (0 = the key does not exist).
    pub fn create_revision(key: &str, rev: i64) -> Cmp {
        Cmp(Compare::create_revision(key, CompareOp::Equal, rev))
    }

    /// The key's last modification revision equals `rev` (0 = the key does not exist).
    pub fn mod_revision(key: &str, rev: i64) -> Cmp {
        Cmp(Compare::mod_revision(key, CompareOp::Equal, rev))
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub struct Op(TxnOp);

impl Op {
    /// Writes `value` at `key`, attached to `lease` (0 = none).
    pub fn put(key: &str, value: &[u8], lease: i64) -> Op {
        Op(TxnOp::put(key, value, put_options(lease)))
    }

    /// Reads `key`.
    pub fn get(key: &str) -> Op {
        Op(TxnOp::get(key, None))
    }
}

fn put_options(lease: i64) -> Option<PutOptions> {
    (lease != 0).then(|| PutOptions::new().with_lease(lease))
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
    /// One connection per endpoint, opened on first use, dropped when it fails.
    conns: Vec<tokio::sync::Mutex<Option<Client>>>,
    /// The endpoint that answered last (tried first).
    current: AtomicUsize,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.settings.endpoints)
            .finish()
    }
}

/// What a failed call means for the endpoint: etcd cannot be reached through it (try the
/// next one, and open a new connection next time) or etcd answered with an error (do not).
/// tonic reports a connection that failed under it (its I/O task gone with the runtime that
/// ran it, for instance: "Service was not ready") as `Unknown`; etcd's own refusals carry
/// other codes, apart from no leader and request timeouts (`Unavailable`, `DeadlineExceeded`),
/// which another member may not have.
fn classify(endpoint: &str, e: etcd_client::Error) -> EtcdError {
    use etcd_client::Error as E;
    use tonic::Code;
    let unreachable = |text: String| EtcdError::Unreachable(format!("{endpoint}: {text}"));
    match e {
        E::GRpcStatus(s) => match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                unreachable(s.message().to_string())
            }
            _ => EtcdError::Status(s.message().to_string()),
        },
        E::TransportError(t) => unreachable(crate::error_text::error_text(&t)),
        E::IoError(io) => unreachable(io.to_string()),
        E::InvalidArgs(_) | E::InvalidUri(_) | E::EndpointError(_) => {
            EtcdError::Bad(format!("{endpoint}: {e}"))
        }
        other => EtcdError::Status(other.to_string()),
    }
}

impl EtcdClient {
    /// A client for `settings` (nothing is connected yet).
    pub fn new(settings: EtcdSettings) -> EtcdClient {
        let conns = settings
            .endpoints
            .iter()
            .map(|_| tokio::sync::Mutex::new(None))
            .collect();
        EtcdClient {
            settings,
            conns,
            current: AtomicUsize::new(0),
        }
    }

    /// The configured endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.settings.endpoints
    }

    /// The endpoints in the order to try them: the last one that answered first.
    fn rotation(&self) -> Vec<(usize, String)> {
        let n = self.settings.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .map(|i| (i, self.settings.endpoints[i].clone()))
            .collect()
    }

    fn answered(&self, index: usize) {
        self.current.store(index, Ordering::Relaxed);
    }

    /// Connection options. No HTTP/2 keep-alive pings: etcd answers pings more frequent than
    /// its `--grpc-keepalive-min-time` (5 s by default) by closing the connection; a dead
    /// connection shows as a request with no answer within the bound, and a watch ends with
    /// its session ([`watch::watch_for`]).
    fn options(&self) -> ConnectOptions {
        let t = self.settings.timeout;
        let o = ConnectOptions::new()
            .with_connect_timeout(t)
            .with_timeout(t);
        match &self.settings.auth {
            Some((user, password)) => o.with_user(user, password).with_auto_token_refresh(true),
            None => o,
        }
    }

    /// The connection to endpoint `index`, opened (and authenticated) if there is none, and
    /// whether it was kept from an earlier request.
    async fn connection(&self, index: usize, endpoint: &str) -> Result<(Client, bool), EtcdError> {
        let Some(slot) = self.conns.get(index) else {
            return Err(EtcdError::Bad(format!("no endpoint {index}")));
        };
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok((c.clone(), true));
        }
        let t = self.settings.timeout;
        let connect = Client::connect([endpoint], Some(self.options()));
        let c = match tokio::time::timeout(t, connect).await {
            Err(_) => {
                let text = format!("{endpoint}: not connected within {t:?}");
                return Err(EtcdError::Unreachable(text));
            }
            Ok(r) => r.map_err(|e| classify(endpoint, e))?,
        };
        *slot = Some(c.clone());
        Ok((c, false))
    }

    /// Drops the connection to endpoint `index` (the next request opens a new one).
    async fn drop_connection(&self, index: usize) {
        if let Some(slot) = self.conns.get(index) {
            *slot.lock().await = None;
        }
    }

    /// Runs `f` on the first endpoint that answers, each attempt bounded by the timeout.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, EtcdError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = EtcdError::Unreachable("no endpoint configured".into());
        for (i, ep) in self.rotation() {
            match self.once(i, &ep, &f).await {
                Ok(v) => {
                    self.answered(i);
                    return Ok(v);
                }
                Err(e @ EtcdError::Unreachable(_)) => {
                    self.drop_connection(i).await;
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn no_answer(&self, endpoint: &str) -> EtcdError {
        let t = self.settings.timeout;
        EtcdError::Unreachable(format!("{endpoint}: no answer within {t:?}"))
    }

    /// One try of `f` on endpoint `index` until `deadline`; the error says whether the
    /// connection was kept from an earlier request.
    async fn attempt<T, F, Fut>(
        &self,
        (index, endpoint): (usize, &str),
        f: &F,
        deadline: Instant,
    ) -> Result<T, (EtcdError, bool)>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let (client, kept) = self
            .connection(index, endpoint)
            .await
            .map_err(|e| (e, false))?;
        match tokio::time::timeout_at(deadline, f(client)).await {
            Err(_) => Err((self.no_answer(endpoint), false)),
            Ok(r) => r.map_err(|e| (classify(endpoint, e), kept)),
        }
    }

    /// Runs `f` on endpoint `index` within the bound. A kept connection that fails without an
    /// answer from etcd (closed under it, or its runtime gone) is replaced by a new one and
    /// `f` tried once more, within the same bound.
    async fn once<T, F, Fut>(&self, index: usize, endpoint: &str, f: &F) -> Result<T, EtcdError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.settings.timeout;
        let target = (index, endpoint);
        match tokio::time::timeout_at(deadline, self.attempt(target, f, deadline)).await {
            Err(_) => Err(self.no_answer(endpoint)),
            Ok(Ok(v)) => Ok(v),
            Ok(Err((EtcdError::Unreachable(_), true))) => {
                self.drop_connection(index).await;
                match tokio::time::timeout_at(deadline, self.attempt(target, f, deadline)).await {
                    Err(_) => Err(self.no_answer(endpoint)),
                    Ok(r) => r.map_err(|(e, _)| e),
                }
            }
            Ok(Err((e, _))) => Err(e),
        }
    }

    /// Reads `key` (None when absent) with the store's revision.
    pub async fn get(&self, key: &str) -> Result<(Option<Kv>, i64), EtcdError> {
        let r = self
            .call(|mut c| async move { c.get(key, None).await })
            .await?;
        let rev = r.header().map_or(0, |h| h.revision());
        Ok((r.kvs().first().map(Kv::from), rev))
    }

    /// Every key under `prefix` created at or after `min_create_revision`, oldest first,
    /// at most `limit` (0 = all).
    pub async fn list(
        &self,
        prefix: &str,
        min_create_revision: i64,
        limit: i64,
    ) -> Result<Vec<Kv>, EtcdError> {
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_min_create_revision(min_create_revision.max(0))
            .with_limit(limit.max(0));
        let r = self
            .call(|mut c| {
                let o = options.clone();
                async move { c.get(prefix, Some(o)).await }
            })
            .await?;
        Ok(r.kvs().iter().map(Kv::from).collect())
    }

    /// Writes `value` at `key`, attached to `lease` (0 = none).
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), EtcdError> {
        self.call(|mut c| async move { c.put(key, value, put_options(lease)).await })
            .await
            .map(|_| ())
    }

    /// Deletes the keys from `key` (included) to `end` (excluded).
    pub async fn delete_range(&self, key: &str, end: &str) -> Result<(), EtcdError> {
        let options = etcd_client::DeleteOptions::new().with_range(end);
        self.call(|mut c| {
            let o = options.clone();
            async move { c.delete(key, Some(o)).await }
        })
        .await
        .map(|_| ())
    }

    /// Runs `success` if every comparison holds, `failure` otherwise.
    pub async fn txn(
        &self,
        compare: Vec<Cmp>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<TxnResult, EtcdError> {
        let txn = Txn::new()
            .when(compare.into_iter().map(|c| c.0).collect::<Vec<_>>())
            .and_then(success.into_iter().map(|o| o.0).collect::<Vec<_>>())
            .or_else(failure.into_iter().map(|o| o.0).collect::<Vec<_>>());
        let r = self
            .call(|mut c| {
                let t = txn.clone();
                async move { c.txn(t).await }
            })
            .await?;
        let reads = r
            .op_responses()
            .iter()
            .filter_map(|op| match op {
                TxnOpResponse::Get(g) => Some(g.kvs().first().map(Kv::from)),
                _ => None,
            })
            .collect();
        Ok(TxnResult {
            succeeded: r.succeeded(),
            reads,
            revision: r.header().map_or(0, |h| h.revision()),
        })
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
        let r = self
            .call(|mut c| async move { c.lease_grant(ttl, None).await })
            .await?;
        match r.id() {
            0 => Err(EtcdError::Bad("lease grant without an ID".into())),
            id => Ok(id),
        }
    }

    /// Renews `lease`; false when it expired (or was revoked).
    pub async fn keep_alive(&self, lease: i64) -> Result<bool, EtcdError> {
        // The crate sends one renewal when it opens the keep-alive stream and checks its
        // answer: a lease etcd no longer knows is an error of its own kind. The stream closes
        // when the keeper is dropped.
        self.call(|mut c| async move {
            match c.lease_keep_alive(lease).await {
                Ok(_) => Ok(true),
                Err(etcd_client::Error::LeaseKeepAliveError(_)) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Seconds left on `lease` (None when expired).
    pub async fn time_to_live(&self, lease: i64) -> Result<Option<i64>, EtcdError> {
        let r = self
            .call(|mut c| async move { c.lease_time_to_live(lease, None).await })
            .await?;
        Ok((r.ttl() >= 0).then_some(r.ttl()))
    }

    /// Revokes `lease`: every key attached to it goes at once.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call(|mut c| async move { c.lease_revoke(lease).await })
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_is_unreachable_and_refusals_are_answers() {
        let status =
            |code, text: &str| etcd_client::Error::GRpcStatus(tonic::Status::new(code, text));
        let e = classify(
            "http://a",
            status(tonic::Code::Unavailable, "tcp connect error"),
        );
        assert!(
            matches!(e, EtcdError::Unreachable(ref t) if t.contains("http://a")),
            "{e}"
        );
        let e = classify("a", status(tonic::Code::Unknown, "Service was not ready"));
        assert!(matches!(e, EtcdError::Unreachable(_)), "{e}");
        let e = classify(
            "http://a",
            status(tonic::Code::InvalidArgument, "user name is empty"),
        );
        assert!(
            matches!(e, EtcdError::Status(ref t) if t == "user name is empty"),
            "{e}"
        );
        let e = classify(
            "x",
            etcd_client::Error::InvalidArgs("empty endpoints".into()),
        );
        assert!(matches!(e, EtcdError::Bad(_)), "{e}");
    }
}
