//! Quoting values for the three syntaxes pgsluice writes: SQL (through
//! `postgres_protocol::escape`), libpq conninfo strings, and postgresql.conf values.
//!
//! They are different syntaxes with different escapes, so each has its own function named
//! for it; none may stand in for another.

/// A SQL string literal: `'it''s'`. With a backslash in `value` the `E'...'` form is used
/// (backslashes doubled, preceded by a space), correct whatever `standard_conforming_strings` is.
pub fn sql_literal(value: &str) -> String {
    postgres_protocol::escape::escape_literal(value)
}

/// A SQL identifier, always double-quoted: `"we""ird"`.
pub fn sql_ident(name: &str) -> String {
    postgres_protocol::escape::escape_identifier(name)
}

/// A value in a libpq conninfo string (`key=value ...`): bare when it holds only characters
/// that need no quoting, else single-quoted with `\` and `'` escaped by a backslash.
pub fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// A value in postgresql.conf (or postgresql.auto.conf): single-quoted, `'` doubled and `\`
/// doubled, since the configuration file reader treats a backslash as an escape.
pub fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_literals() {
        assert_eq!(sql_literal("plain"), "'plain'");
        assert_eq!(sql_literal("it's"), "'it''s'");
        assert_eq!(sql_literal(r"a\b'c"), r" E'a\\b''c'");
        assert_eq!(sql_literal(""), "''");
    }

    #[test]
    fn sql_identifiers() {
        assert_eq!(sql_ident("app"), "\"app\"");
        assert_eq!(sql_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn conninfo_values() {
        assert_eq!(conninfo_value("127.0.0.1"), "127.0.0.1");
        assert_eq!(conninfo_value("/tmp/sock-dir"), "/tmp/sock-dir");
        assert_eq!(conninfo_value(""), "''");
        assert_eq!(conninfo_value("a b'c"), "'a b\\'c'");
        assert_eq!(conninfo_value("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(conninfo_value("k=v"), "'k=v'");
    }

    #[test]
    fn conf_values() {
        assert_eq!(conf_value("it's"), "'it''s'");
        assert_eq!(conf_value("128MB"), "'128MB'");
        // A conninfo with an escaped quote survives the configuration file reader.
        assert_eq!(conf_value(r"password='a\'b'"), r"'password=''a\\''b'''");
    }
}
