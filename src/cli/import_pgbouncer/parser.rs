//! Reading PgBouncer's configuration: the ini file (sections, `key = value`, `%include`) and
//! the libpq-style connection strings of its `[databases]` entries.

use std::path::{Path, PathBuf};

/// How deep `%include` may nest (PgBouncer stops at a similar depth; a loop ends here).
const MAX_INCLUDE_DEPTH: usize = 10;

/// One `key = value` line as written, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file that holds it (an `%include`d file names itself).
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The section, lower-cased (`pgbouncer`, `databases`, `users`, `peers`, ...).
    pub section: String,
    /// The key: lower-cased in `[pgbouncer]`, as written elsewhere (database and user names).
    pub key: String,
    /// The value, trimmed.
    pub value: String,
}

impl Entry {
    /// `file:line` for messages.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// Why the ini file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// A file could not be opened.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line is not a section, a setting, a comment or `%include`.
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Reads `path` and every file it includes, in order; later entries override earlier ones
/// the way PgBouncer reads them (the caller keeps the last).
///
/// A relative `%include` path is taken relative to the including file's directory.
pub fn read_ini(path: &Path) -> Result<Vec<Entry>, ParseError> {
    let mut entries = Vec::new();
    let mut section = String::new();
    read_file(path, 0, &mut section, &mut entries)?;
    Ok(entries)
}

fn read_file(
    path: &Path,
    depth: usize,
    section: &mut String,
    out: &mut Vec<Entry>,
) -> Result<(), ParseError> {
    let text = std::fs::read_to_string(path).map_err(|source| ParseError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let syntax = |line: usize, message: String| ParseError::Syntax {
        path: path.to_path_buf(),
        line,
        message,
    };
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let number = index + 1;
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("%include") {
            let target = rest.trim();
            if target.is_empty() {
                return Err(syntax(number, "%include without a file name".into()));
            }
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(syntax(
                    number,
                    format!("%include nested deeper than {MAX_INCLUDE_DEPTH}"),
                ));
            }
            let target = Path::new(target);
            let target = match path.parent() {
                Some(dir) if target.is_relative() => dir.join(target),
                _ => target.to_path_buf(),
            };
            read_file(&target, depth + 1, section, out)?;
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| syntax(number, format!("{line:?}: a section needs a closing ]")))?;
            *section = name.trim().to_ascii_lowercase();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| syntax(number, format!("{line:?} is not `key = value`")))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(syntax(number, "a setting without a name".into()));
        }
        if section.is_empty() {
            return Err(syntax(number, format!("{key:?} is outside any [section]")));
        }
        let key = if section == "pgbouncer" {
            key.to_ascii_lowercase()
        } else {
            key.to_string()
        };
        out.push(Entry {
            file: path.to_path_buf(),
            line: number,
            section: section.clone(),
            key,
            value: value.trim().to_string(),
        });
    }
    Ok(())
}

/// Splits a `[databases]` / `[users]` value, `key=value key2='quoted value'`, into pairs in
/// order. Values may be single-quoted; inside quotes `''` and `\'` stand for a quote and `\\`
/// for a backslash, as libpq reads them.
pub fn conn_string(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("{key:?} has no `=value`"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("the quoted value of {key:?} is not closed")),
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(format!("the value of {key:?} ends in a backslash")),
                    },
                    Some('\'') if chars.next_if_eq(&'\'').is_some() => value.push('\''),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        pairs.push((key.to_ascii_lowercase(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_strings_with_quotes() {
        let p =
            conn_string("host=db1 port = 5433 dbname='my db' password='it''s' x='a\\'b'").unwrap();
        let want = [
            ("host", "db1"),
            ("port", "5433"),
            ("dbname", "my db"),
            ("password", "it's"),
            ("x", "a'b"),
        ];
        let got: Vec<_> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
        assert_eq!(conn_string("").unwrap(), vec![]);
        assert!(conn_string("host").is_err());
        assert!(conn_string("password='open").is_err());
    }

    #[test]
    fn ini_with_include_and_sections() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("main.ini"),
            "; comment\n[databases]\nApp = host=h1\n%include extra.ini\n[PgBouncer]\nPool_Mode = transaction\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("extra.ini"), "# more\nother = dbname=x\n").unwrap();
        let e = read_ini(&dir.path().join("main.ini")).unwrap();
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.section.as_str(), e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("databases", "App", "host=h1", 3),
                ("databases", "other", "dbname=x", 2),
                ("pgbouncer", "pool_mode", "transaction", 6),
            ]
        );
        assert!(e[1].file.ends_with("extra.ini"));
        std::fs::write(dir.path().join("loop.ini"), "%include loop.ini\n").unwrap();
        let err = read_ini(&dir.path().join("loop.ini"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nested deeper"), "{err}");
        std::fs::write(dir.path().join("bad.ini"), "[pgbouncer]\nlisten_port\n").unwrap();
        let err = read_ini(&dir.path().join("bad.ini"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.ini:2"), "{err}");
    }
}
