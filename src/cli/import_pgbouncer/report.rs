//! What became of every PgBouncer setting: mapped, mapped with a different default, or not
//! supported (with why and what to do), printed one line per source key.

use std::fmt;

/// The fate of one source key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written as `to` (a pgsluice key path and value); `note` says what differs, if anything.
    Mapped { to: String, note: Option<String> },
    /// The pgsluice default differs from PgBouncer's: `to` says what was written (or that
    /// pgsluice's default is kept), `note` which defaults they are.
    Default { to: String, note: String },
    /// Nothing written: why, and what to do instead.
    Unsupported { why: String, todo: String },
    /// A later line sets the same key; this one has no effect (as in PgBouncer).
    Overridden { by: String },
}

impl Outcome {
    /// Mapped without a note.
    pub fn mapped(to: impl Into<String>) -> Self {
        Outcome::Mapped {
            to: to.into(),
            note: None,
        }
    }

    /// Mapped, with what differs.
    pub fn mapped_note(to: impl Into<String>, note: impl Into<String>) -> Self {
        Outcome::Mapped {
            to: to.into(),
            note: Some(note.into()),
        }
    }

    /// Not supported.
    pub fn unsupported(why: impl Into<String>, todo: impl Into<String>) -> Self {
        Outcome::Unsupported {
            why: why.into(),
            todo: todo.into(),
        }
    }

    /// The outcome's first word in the report.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Mapped { .. } => "mapped",
            Outcome::Default { .. } => "different default",
            Outcome::Unsupported { .. } => "NOT SUPPORTED",
            Outcome::Overridden { .. } => "overridden",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Mapped { to, note: None } => write!(f, "mapped: {to}"),
            Outcome::Mapped { to, note: Some(n) } => write!(f, "mapped: {to} ({n})"),
            Outcome::Default { to, note } => write!(f, "different default: {to} ({note})"),
            Outcome::Unsupported { why, todo } => write!(f, "NOT SUPPORTED: {why}; {todo}"),
            Outcome::Overridden { by } => write!(f, "overridden: {by} sets it again"),
        }
    }
}

/// One report line: the source key (where and what) and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `file:line` or `(not set)` for a PgBouncer default.
    pub at: String,
    /// `[section] key = value`, secrets hidden.
    pub source: String,
    pub outcome: Outcome,
}

/// Every line, in source order, then the defaults.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub lines: Vec<Line>,
}

impl Report {
    /// Adds a line for `[section] key = value` (a value that looks secret is hidden).
    pub fn add(&mut self, at: String, section: &str, key: &str, value: &str, outcome: Outcome) {
        let shown = if is_secret(key) { "(hidden)" } else { value };
        self.lines.push(Line {
            at,
            source: format!("[{section}] {key} = {shown}"),
            outcome,
        });
    }

    /// How many lines have each label, for the summary.
    pub fn count(&self, label: &str) -> usize {
        self.lines
            .iter()
            .filter(|l| l.outcome.label() == label)
            .count()
    }

    /// The whole report as text: one line per key, then a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(&format!("{} {}\n    {}\n", l.at, l.source, l.outcome));
        }
        out.push_str(&format!(
            "{} mapped, {} with a different default, {} not supported, {} overridden\n",
            self.count("mapped"),
            self.count("different default"),
            self.count("NOT SUPPORTED"),
            self.count("overridden"),
        ));
        out
    }
}

/// Whether a key (or a connection-string key) holds a secret.
pub fn is_secret(key: &str) -> bool {
    key.contains("password")
}

/// A connection string with its `password=` value hidden, for the report.
pub fn hide_secrets(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            if is_secret(k) {
                format!("{k}=(hidden)")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_the_report() {
        let mut r = Report::default();
        r.add(
            "f:1".into(),
            "pgbouncer",
            "auth_password",
            "s3cret",
            Outcome::mapped("x"),
        );
        let pairs = vec![
            ("host".into(), "h".into()),
            ("password".into(), "s3cret".into()),
        ];
        r.add(
            "f:2".into(),
            "databases",
            "app",
            &hide_secrets(&pairs),
            Outcome::mapped("y"),
        );
        let text = r.render();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("password=(hidden)"), "{text}");
        assert!(
            text.contains("2 mapped, 0 with a different default"),
            "{text}"
        );
    }
}
