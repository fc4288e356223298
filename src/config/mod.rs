//! Configuration: one TOML file read by pooler, agent and command line.
//!
//! Loading has two stages, as in ripgrep's `lowargs` -> `hiargs`: [`raw`] is the file as
//! written (serde, unknown keys refused), [`validate()`] checks it and reports *every* problem
//! with its key path and a hint, producing the typed [`Config`] the daemons use.
//! Every key is declared once in [`keys`] (name, kind and bounds, default, what changes it,
//! doc line); validation reads its defaults and bounds from there.

pub mod keys;
mod model;
pub mod raw;
mod validate;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod test;

pub use model::*;
pub use validate::{parse_bytes, parse_duration, validate};

use std::fmt;
use std::path::Path;

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a key path such as `cluster.nodes[2].port`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    /// The file parsed but its values are wrong.
    #[error("{path}: {} problem(s):\n{}", .problems.len(), .problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Every problem as a line, for `check-config`.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Invalid { problems, .. } => problems.iter().map(|p| p.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// Parses and validates configuration text; `path` only names it in errors.
pub fn from_str(text: &str, path: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_string(),
        message: e.to_string().trim_end().to_string(),
    })?;
    validate(&raw).map_err(|problems| ConfigError::Invalid {
        path: path.to_string(),
        problems,
    })
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    from_str(&text, &shown)
}
