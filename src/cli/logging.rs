//! The daemons' log output on stderr: text (coloured only on a terminal) or one JSON object per line.

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `RUST_LOG` filters (default `info`).
///
/// Text lines carry ANSI colours only when stderr is a terminal, so files and the journal
/// stay plain. JSON lines hold `timestamp`, `level`, `target`, the event's fields at top level
/// (`message` among them) and, inside a client's session, `span` with `client_id`, `peer`,
/// `database` and `user`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
