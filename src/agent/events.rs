//! Events: every decision and action, with time, node, kind, details and epoch; the
//! `event_command` hook runs once per event with the fields as arguments and variables.

use serde::{Deserialize, Serialize};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the hook may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// One recorded event (a line of `events.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 time with milliseconds, UTC.
    pub time: String,
    /// The same instant in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The node concerned, if any.
    #[serde(default)]
    pub node: Option<String>,
    /// What happened, e.g. `failover_decided`, `promoted`, `pooler_unreachable`.
    pub kind: String,
    /// Human-readable details.
    #[serde(default)]
    pub details: String,
    /// The topology epoch the event belongs to.
    pub epoch: u64,
    /// The agent that recorded it, when several share an etcd store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

impl Event {
    /// An event happening now.
    pub fn now(kind: &str, node: Option<&str>, details: impl Into<String>, epoch: u64) -> Event {
        let now = SystemTime::now();
        let unix_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Event {
            time: humantime::format_rfc3339_millis(now).to_string(),
            unix_ms,
            node: node.map(str::to_string),
            kind: kind.to_string(),
            details: details.into(),
            epoch,
            agent: None,
        }
    }

    /// One line for terminals and logs.
    pub fn line(&self) -> String {
        let agent = self
            .agent
            .as_deref()
            .map_or(String::new(), |a| format!(" agent={a}"));
        format!(
            "{} epoch={}{agent} {:<22} {:<10} {}",
            self.time,
            self.epoch,
            self.kind,
            self.node.as_deref().unwrap_or("-"),
            self.details
        )
    }
}

/// Starts `command` (through `sh -c`) for `event` without waiting for it.
///
/// Arguments: `$1` kind, `$2` node (empty if none), `$3` epoch, `$4` time, `$5` details; the
/// same fields are in `PGSLUICE_EVENT_KIND`, `_NODE`, `_EPOCH`, `_TIME`, `_DETAILS`. A hook
/// running longer than [`HOOK_TIMEOUT`] is killed; a failing hook is logged, never fatal.
pub fn run_hook(command: &str, event: &Event) {
    let node = event.node.clone().unwrap_or_default();
    let epoch = event.epoch.to_string();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .arg("pgsluice-event")
        .args([&event.kind, &node, &epoch, &event.time, &event.details])
        .env("PGSLUICE_EVENT_KIND", &event.kind)
        .env("PGSLUICE_EVENT_NODE", &node)
        .env("PGSLUICE_EVENT_EPOCH", &epoch)
        .env("PGSLUICE_EVENT_TIME", &event.time)
        .env("PGSLUICE_EVENT_DETAILS", &event.details)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let kind = event.kind.clone();
    match cmd.spawn() {
        Ok(mut child) => {
            tokio::spawn(async move {
                match tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await {
                    Ok(Ok(s)) if s.success() => {}
                    Ok(Ok(s)) => tracing::warn!(%kind, status = %s, "event_command failed"),
                    Ok(Err(e)) => tracing::warn!(%kind, error = %e, "event_command wait failed"),
                    Err(_) => tracing::warn!(%kind, "event_command timed out; killed"),
                }
            });
        }
        Err(e) => tracing::warn!(%kind, error = %e, "event_command could not start"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn event_json_round_trip_and_line() {
        let e = Event::now("promoted", Some("n2"), "took 120 ms", 7);
        assert!(e.time.ends_with('Z'));
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        assert!(e.line().contains("epoch=7"));
        assert!(e.line().contains("n2"));
    }

    #[tokio::test]
    async fn hook_gets_the_fields() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = format!(
            "echo \"$1|$2|$3|$PGSLUICE_EVENT_DETAILS\" > {}",
            out.display()
        );
        run_hook(
            &cmd,
            &Event::now("failover_decided", Some("b"), "why not", 3),
        );
        for _ in 0..100 {
            if let Ok(s) = std::fs::read_to_string(&out) {
                if s.ends_with('\n') {
                    assert_eq!(s, "failover_decided|b|3|why not\n");
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("hook did not run");
    }
}
