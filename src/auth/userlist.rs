//! PgBouncer's `auth_file` format: one `"username" "secret"` pair per line.
//!
//! Fields are double-quoted, a doubled quote (`""`) inside stands for one quote, blank lines
//! and lines whose first non-blank character is `;` are ignored, and anything after the
//! second field is ignored. The secret is read with [`Secret::parse`] (plaintext, `md5...` or
//! `SCRAM-SHA-256$...`).

use super::Secret;

/// A line of an `auth_file` that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct UserlistError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Parses the text of an `auth_file` into `(user, secret)` pairs, in file order (a user
/// listed twice appears twice; the caller decides which wins).
///
/// # Errors
/// The first line that is neither ignorable nor two quoted fields, with its number.
pub fn parse_userlist(text: &str) -> Result<Vec<(String, Secret)>, UserlistError> {
    let mut users = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let error = |message: &str| UserlistError {
            line: index + 1,
            message: message.to_owned(),
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let (user, rest) = quoted(line).map_err(error)?;
        if user.is_empty() {
            return Err(error("empty user name"));
        }
        let rest = rest.trim_start();
        if rest.is_empty() {
            return Err(error("missing secret after the user name"));
        }
        let (secret, _ignored) = quoted(rest).map_err(error)?;
        users.push((user, Secret::parse(&secret)));
    }
    Ok(users)
}

/// Reads one double-quoted field at the start of `s`; returns it unescaped and the rest.
fn quoted(s: &str) -> Result<(String, &str), &'static str> {
    let mut chars = s
        .strip_prefix('"')
        .ok_or("expected a double-quoted field")?
        .char_indices();
    let body_start = 1;
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            value.push(c);
            continue;
        }
        let after = body_start + i + 1;
        match s.get(after..) {
            Some(rest) if rest.starts_with('"') => {
                value.push('"');
                chars.next();
            }
            Some(rest) => return Ok((value, rest)),
            None => return Ok((value, "")),
        }
    }
    Err("unterminated double-quoted field")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbouncer_files() {
        let text = "; comment\n\n  ;indented comment\r\n\"alice\" \"secret\"\n\
                    \"bob\"\t\"md5a3556571e93b0d20722ba62be61e8c2d\" trailing junk\r\n\
                    \"q\"\"uote\" \"pa\"\"ss\"\"\"\n\"empty\" \"\"\n";
        let users = parse_userlist(text).unwrap();
        assert_eq!(
            users,
            vec![
                ("alice".into(), Secret::Plain("secret".into())),
                (
                    "bob".into(),
                    Secret::Md5("md5a3556571e93b0d20722ba62be61e8c2d".into())
                ),
                ("q\"uote".into(), Secret::Plain("pa\"ss\"".into())),
                ("empty".into(), Secret::Plain(String::new())),
            ]
        );
        assert_eq!(parse_userlist("").unwrap(), vec![]);
    }

    #[test]
    fn reads_scram_secrets() {
        let secret = crate::auth::scram_secret("pw", b"salt", 4);
        let users = parse_userlist(&format!("\"u\" \"{secret}\"")).unwrap();
        assert_eq!(users, vec![("u".into(), Secret::Scram(secret))]);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "\"a\" \"b\"\nalice secret\n",
                2,
                "expected a double-quoted field",
            ),
            ("\n\n\"alice\"\n", 3, "missing secret after the user name"),
            (
                "\"alice\" \"secret\n",
                1,
                "unterminated double-quoted field",
            ),
            ("\"alice", 1, "unterminated double-quoted field"),
            ("\"\" \"x\"", 1, "empty user name"),
            ("\"a\" b", 1, "expected a double-quoted field"),
        ];
        for (text, line, message) in cases {
            let err = parse_userlist(text).unwrap_err();
            assert_eq!(
                (err.line, err.message.as_str()),
                (line, message),
                "{text:?}"
            );
            assert!(err.to_string().starts_with(&format!("line {line}: ")));
        }
    }

    #[test]
    fn non_ascii_survives() {
        let users = parse_userlist("\"zoë\" \"pässwörd\"").unwrap();
        assert_eq!(users[0].0, "zoë");
        assert_eq!(users[0].1, Secret::Plain("pässwörd".into()));
    }
}
