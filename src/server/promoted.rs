//! A connection opened to a standby, checked once that standby was promoted: it is out of
//! recovery (its sessions take writes from now on) and the parameters the server reported at
//! the end of recovery (`in_hot_standby = off`) replace the ones it reported at login.

use super::{ServerConn, ServerError};
use crate::proto::builders;
use bytes::BytesMut;
use std::sync::Arc;

impl ServerConn {
    /// Whether the server is out of recovery, asked over this connection (one round trip).
    /// On success the reported parameter changes are folded into `startup_params`, so that
    /// a client greeted from this connection sees what a fresh login to the node shows.
    pub async fn out_of_recovery(&mut self) -> Result<bool, ServerError> {
        let mut out = BytesMut::with_capacity(48);
        builders::query(&mut out, "SELECT pg_catalog.pg_is_in_recovery()");
        let ex = self.exchange(&out, 1).await?;
        if let Some((_, e)) = ex.error {
            return Err(e);
        }
        let writable = ex.status == b'I' && ex.rows == [vec![Some("f".to_string())]];
        if writable && !ex.reported.is_empty() {
            let mut params = (*self.startup_params).clone();
            for (k, v) in ex.reported {
                match params.iter_mut().find(|(name, _)| *name == k) {
                    Some(p) => p.1 = v,
                    None => params.push((k, v)),
                }
            }
            self.startup_params = Arc::new(params);
        }
        Ok(writable)
    }
}
