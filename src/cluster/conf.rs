//! Editing PostgreSQL configuration files (values are quoted with `crate::quote::conf_value`).

use super::error::{HarnessError, Result};
use std::path::Path;

/// Sets `key = value` (value already quoted as needed) in a configuration file: every active
/// line for `key` is removed and one line appended, so the setting is unambiguous.
pub fn set_in_file(file: &Path, key: &str, value: &str) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| HarnessError::io(format!("reading {}", file.display()), e))?;
    let updated = set_in_text(&text, key, value);
    std::fs::write(file, updated)
        .map_err(|e| HarnessError::io(format!("writing {}", file.display()), e))
}

/// [`set_in_file`] on text.
pub fn set_in_text(text: &str, key: &str, value: &str) -> String {
    let mut out: String = text
        .lines()
        .filter(|line| line_key(line) != Some(key))
        .map(|line| format!("{line}\n"))
        .collect();
    out.push_str(&format!("{key} = {value}\n"));
    out
}

/// The key an active (uncommented) `key = value` line sets.
fn line_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if t.starts_with('#') {
        return None;
    }
    let end = t.find(|c: char| c == '=' || c.is_whitespace())?;
    let key = &t[..end];
    let after = t[end..].trim_start();
    (after.starts_with('=') && !key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_active_lines_only() {
        let text = "#port = 5432\nport = 5432\nport=5433\nportal = 1\n";
        let out = set_in_text(text, "port", "6000");
        assert_eq!(out, "#port = 5432\nportal = 1\nport = 6000\n");
    }
}
