//! The harness error: which command failed, the tail of its stderr, and which log to read.

use std::path::PathBuf;

/// Why the cluster harness could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No directory with the PostgreSQL server programs was found.
    #[error("PostgreSQL binaries not found; tried: {}", .tried.join(", "))]
    NoBinaries {
        /// Every place looked at, with why it did not qualify.
        tried: Vec<String>,
    },
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}{}", log_hint(.log))]
    Command {
        /// The command line as run.
        command: String,
        /// Exit status, or why it did not run.
        status: String,
        /// The last lines of its standard error.
        stderr: String,
        /// The server log worth reading, if any.
        log: Option<PathBuf>,
    },
    /// Something did not happen in time.
    #[error("timed out after {secs:.1}s waiting for {what}{}", log_hint(.log))]
    Timeout {
        /// What was awaited, naming the node.
        what: String,
        /// How long was waited.
        secs: f64,
        /// The server log worth reading, if any.
        log: Option<PathBuf>,
    },
    /// The OS user that should own the data directories is unusable.
    #[error("OS user {user:?}: {message}")]
    OsUser {
        /// The user name.
        user: String,
        /// What is wrong with it.
        message: String,
    },
    /// A request that cannot be honoured (unknown node, bad spec, ...).
    #[error("{0}")]
    Invalid(String),
}

fn log_hint(log: &Option<PathBuf>) -> String {
    match log {
        Some(p) => format!("; see {}", p.display()),
        None => String::new(),
    }
}

impl HarnessError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// The harness result type.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
