//! Watching one key: a gRPC watch stream from a start revision, read for a bounded session.

use super::{EtcdClient, EtcdError, Kv};
use etcd_client::{EventType, WatchOptions, WatchStream};
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
/// no endpoint accepted the watch or etcd cancelled it (start revision compacted, for
/// instance). The stream ending early (etcd stopped, connection lost) is not an error.
pub async fn watch_for(
    client: &EtcdClient,
    key: &str,
    start_revision: i64,
    session: Duration,
    mut on: impl FnMut(WatchEvent),
) -> Result<i64, EtcdError> {
    let options = WatchOptions::new().with_start_revision(start_revision);
    let stream = client
        .call(|mut c| {
            let o = options.clone();
            async move { c.watch(key, Some(o)).await }
        })
        .await?;
    read_stream(stream, start_revision - 1, session, &mut on).await
}

async fn read_stream(
    mut stream: WatchStream,
    mut seen: i64,
    session: Duration,
    on: &mut impl FnMut(WatchEvent),
) -> Result<i64, EtcdError> {
    let deadline = Instant::now() + session;
    loop {
        let resp = match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) | Ok(Ok(None)) | Ok(Err(_)) => return Ok(seen),
            Ok(Ok(Some(r))) => r,
        };
        if resp.canceled() {
            let why = match resp.compact_revision() {
                0 => resp.cancel_reason().to_string(),
                rev => format!("revision {} compacted (now {rev})", seen + 1),
            };
            return Err(EtcdError::Status(format!("watch cancelled: {why}")));
        }
        for e in resp.events() {
            let Some(kv) = e.kv().map(Kv::from) else {
                continue;
            };
            seen = seen.max(kv.mod_revision);
            on(WatchEvent {
                deleted: e.event_type() == EventType::Delete,
                kv,
            });
        }
    }
}
