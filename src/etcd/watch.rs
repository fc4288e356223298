//! Watching one key through the gateway's streaming `/v3/watch`: the answer is a stream of
//! newline-separated JSON messages, one per batch of changes.

use super::{b64, kv, EtcdClient, EtcdError, Kv};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// One change of the watched key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The key was deleted (`kv` then holds only the key and revision).
    pub deleted: bool,
    /// The pair after the change.
    pub kv: Kv,
}

/// Watches `key` from `start_revision` for at most `session`, calling `on` for each change.
/// Returns the last revision seen (so that the caller can resume after it), or an error when
/// no endpoint accepted the watch. The stream ending early (etcd stopped) is not an error.
pub async fn watch_for(
    client: &EtcdClient,
    key: &str,
    start_revision: i64,
    session: Duration,
    mut on: impl FnMut(WatchEvent),
) -> Result<i64, EtcdError> {
    let body =
        json!({"create_request": {"key": b64(key), "start_revision": start_revision.to_string()}});
    let mut last = EtcdError::Unreachable("no endpoint configured".into());
    for (i, ep) in client.rotation() {
        let req = client.request(&ep, "/v3/watch", &body)?;
        let resp =
            match tokio::time::timeout(Duration::from_secs(2), client.http().request(req)).await {
                Ok(Ok(r)) if r.status().is_success() => r,
                Ok(Ok(r)) => return Err(EtcdError::Status(format!("watch: HTTP {}", r.status()))),
                Ok(Err(e)) => {
                    last = EtcdError::Unreachable(format!("{ep}: {}", super::error_text(&e)));
                    continue;
                }
                Err(_) => {
                    last = EtcdError::Unreachable(format!("{ep}: watch not answered"));
                    continue;
                }
            };
        client.answered(i);
        return read_stream(resp.into_body(), start_revision - 1, session, &mut on).await;
    }
    Err(last)
}

async fn read_stream(
    mut body: hyper::body::Incoming,
    mut seen: i64,
    session: Duration,
    on: &mut impl FnMut(WatchEvent),
) -> Result<i64, EtcdError> {
    let deadline = Instant::now() + session;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) | Ok(None) | Ok(Some(Err(_))) => return Ok(seen),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let v: Value = match serde_json::from_slice(&line) {
                Ok(v) => v,
                Err(e) => return Err(EtcdError::Bad(format!("watch: {e}"))),
            };
            if let Some(err) = v.get("error") {
                return Err(EtcdError::Status(format!("watch: {err}")));
            }
            let result = &v["result"];
            for e in result
                .get("events")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let deleted = e.get("type").and_then(Value::as_str) == Some("DELETE");
                let kv = kv(&e["kv"])?;
                seen = seen.max(kv.mod_revision);
                on(WatchEvent { deleted, kv });
            }
        }
    }
}
