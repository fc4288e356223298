//! Transaction mode follows each client's session settings: after a transaction that may have
//! changed them (see [`super::effects`]) the server's settings are read back, the client's
//! view becomes its startup settings overlaid with what the server now has, and the server is
//! tagged with exactly what it holds; the next check-out of that server (by any client) brings
//! it to that client's view first (`ServerConn::sync_params`: a pointer compare when equal).
//!
//! Reading back at the boundary, rather than parsing SET statements, is exact for every case
//! that parsing gets wrong or must special-case: `SET LOCAL`, a SET in a transaction that
//! rolled back, `SET SESSION CHARACTERISTICS`, `RESET ALL`, `DISCARD ALL`, values in the
//! server's own spelling. It costs one round trip, paid only by transactions whose
//! CommandComplete tags or ParameterStatus messages said a setting may have changed.

use crate::server::{ParamSet, ServerConn, ServerError};
use std::sync::Arc;

/// Reads the server's settings after a transaction that touched them; returns the client's
/// new view and tags the server with what it holds.
pub async fn follow(
    server: &mut ServerConn,
    startup: &ParamSet,
) -> Result<Arc<ParamSet>, ServerError> {
    let now = server.session_settings().await?;
    let view = overlay(startup, &now);
    server.params = now.intern();
    Ok(view.intern())
}

/// The client's settings: its startup settings (what RESET goes back to, as PostgreSQL does
/// for startup-packet values) overridden by every setting the session has now.
pub fn overlay(startup: &ParamSet, now: &ParamSet) -> ParamSet {
    let pairs = startup.iter().chain(now.iter());
    ParamSet::new(pairs.map(|(k, v)| (k.to_string(), v.to_string())))
}

/// Makes a server a departed client used fit for the pool: ends any extended batch and any
/// transaction, runs `reset_query` (session mode); in the other modes deallocates SQL-level
/// prepared statements and, when `touched`, re-reads the settings it is tagged with.
pub async fn leave(
    server: &mut ServerConn,
    reset_query: &str,
    touched: bool,
) -> Result<(), ServerError> {
    server.reset_session(reset_query).await?;
    if reset_query.is_empty() {
        if server.prepared.sql_prepared {
            server.deallocate_all().await?;
        }
        if touched {
            server.params = server.session_settings().await?.intern();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_values_override_startup_values() {
        let startup = ParamSet::new([
            ("search_path".into(), "a".into()),
            ("TimeZone".into(), "UTC".into()),
        ]);
        let now = ParamSet::new([
            ("search_path".into(), "b".into()),
            ("work_mem".into(), "8MB".into()),
        ]);
        let v = overlay(&startup, &now);
        assert_eq!(v.get("search_path"), Some("b"));
        assert_eq!(v.get("TimeZone"), Some("UTC"));
        assert_eq!(v.get("work_mem"), Some("8MB"));
    }
}
