//! What a transaction did to its server session beyond its own end, learned from the
//! CommandComplete tags and ParameterStatus messages the server sends (transaction and
//! statement modes only; session mode never looks).
//!
//! A tag says which command ran, not its arguments: `SET` is also `SET LOCAL`, and a SET
//! inside a transaction that rolls back leaves a `SET` tag too. So a tag only says "the
//! session's settings may have changed"; what they are is read back from the server once the
//! transaction is over (see `settings_track`), which is exact in every one of these cases.

/// Settings may have changed: SET, RESET, DISCARD, or a reported parameter changed.
pub const SETTINGS: u8 = 1;
/// Session-scoped state may have been created or dropped: LISTEN/UNLISTEN, CREATE or DROP of
/// a table, sequence or view, DECLARE/CLOSE, PREPARE/DEALLOCATE, DISCARD, or a statement whose
/// text mentions `temp` or `advisory` (CREATE TEMP TABLE AS, advisory lock functions), or one
/// too large to be looked at.
pub const STATE: u8 = 2;
/// LOAD ran: the library stays in that server process until it ends.
pub const LOAD: u8 = 4;

/// The effects a CommandComplete tag (body without its NUL) announces.
#[inline]
pub fn of_tag(body: &[u8]) -> u8 {
    let tag = body.strip_suffix(b"\0").unwrap_or(body);
    match tag.first() {
        Some(b'S') if tag == b"SET" => SETTINGS,
        Some(b'R') if tag == b"RESET" => SETTINGS,
        Some(b'D') if tag.starts_with(b"DISCARD") => SETTINGS | STATE,
        Some(b'L') if tag == b"LOAD" => LOAD,
        Some(b'L' | b'U') if tag == b"LISTEN" || tag == b"UNLISTEN" => STATE,
        Some(b'C' | b'D' | b'P') if is_state_tag(tag) => STATE,
        _ => 0,
    }
}

fn is_state_tag(tag: &[u8]) -> bool {
    matches!(
        tag,
        b"CREATE TABLE"
            | b"CREATE SEQUENCE"
            | b"CREATE VIEW"
            | b"DROP TABLE"
            | b"DROP SEQUENCE"
            | b"DROP VIEW"
            | b"DECLARE CURSOR"
            | b"CLOSE CURSOR"
            | b"CLOSE CURSOR ALL"
            | b"PREPARE"
            | b"DEALLOCATE"
            | b"DEALLOCATE ALL"
    )
}

/// What the text of a Query or Parse frame (whole, or its first part when `whole` is false)
/// says: [`STATE`] when it mentions `temp` or `advisory` in any case, or is not whole.
#[inline]
pub fn of_text(text: &[u8], whole: bool) -> u8 {
    if !whole {
        return STATE;
    }
    // Eight bytes loaded at a time, folded to lower case in one OR, and the five four-byte
    // windows that start in its first five bytes compared: a few instructions per byte (this
    // runs on every Query and Parse of transaction and statement modes).
    let mut at = 0;
    while let Some(chunk) = text.get(at..at + 8) {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        let x = u64::from_le_bytes(eight) | 0x2020_2020_2020_2020;
        if (0..5).any(|k| mentions((x >> (8 * k)) as u32)) {
            return STATE;
        }
        at += 5;
    }
    let tail = text.get(at..).unwrap_or_default();
    if tail
        .windows(4)
        .any(|w| mentions(u32::from_le_bytes([w[0], w[1], w[2], w[3]]) | 0x2020_2020))
    {
        return STATE;
    }
    0
}

/// Whether four bytes, already folded to lower case, read `temp` or `advi`.
#[inline(always)]
fn mentions(four: u32) -> bool {
    const TEMP: u32 = u32::from_le_bytes(*b"temp");
    const ADVI: u32 = u32::from_le_bytes(*b"advi");
    four == TEMP || four == ADVI
}

/// The database a client's first frame drops, when it is a simple-protocol
/// `DROP DATABASE [IF EXISTS] name` (the pooler then closes its idle connections to it first:
/// PostgreSQL refuses to drop a database others are connected to, waiting 5 s for them to go).
pub fn dropped_database(buf: &[u8]) -> Option<String> {
    if buf.first() != Some(&b'Q') {
        return None;
    }
    // Most queries are not a DROP: decided on their first letter, before any UTF-8 check.
    let first = buf
        .get(crate::proto::HEADER_LEN..)?
        .iter()
        .find(|b| !b.is_ascii_whitespace());
    if first.is_none_or(|b| b | 0x20 != b'd') {
        return None;
    }
    let text = std::str::from_utf8(buf.get(crate::proto::HEADER_LEN..)?).ok()?;
    let mut words = text.trim_start().splitn(3, char::is_whitespace);
    let (drop, database) = (words.next()?, words.next()?);
    if !drop.eq_ignore_ascii_case("drop") || !database.eq_ignore_ascii_case("database") {
        return None;
    }
    let mut rest = words.next()?.trim_start();
    let lower = rest.to_ascii_lowercase();
    if let Some(after) = lower.strip_prefix("if exists") {
        rest = rest[rest.len() - after.len()..].trim_start();
    }
    if let Some(quoted) = rest.strip_prefix('"') {
        let end = quoted.find('"')?;
        return Some(quoted[..end].to_string());
    }
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ';' || c == '\0' || c == '(')
        .unwrap_or(rest.len());
    (end > 0).then(|| rest[..end].to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_map_to_effects() {
        assert_eq!(of_tag(b"SET\0"), SETTINGS);
        assert_eq!(of_tag(b"RESET\0"), SETTINGS);
        assert_eq!(of_tag(b"DISCARD ALL\0"), SETTINGS | STATE);
        assert_eq!(of_tag(b"SELECT 1\0"), 0);
        assert_eq!(of_tag(b"SETX\0"), 0);
        assert_eq!(of_tag(b"INSERT 0 1\0"), 0);
        assert_eq!(of_tag(b"LISTEN\0"), STATE);
        assert_eq!(of_tag(b"CREATE TABLE\0"), STATE);
        assert_eq!(of_tag(b"DECLARE CURSOR\0"), STATE);
        assert_eq!(of_tag(b"LOAD\0"), LOAD);
    }

    #[test]
    fn drop_database_names_are_found() {
        let q = |s: &str| {
            let mut b = vec![b'Q', 0, 0, 0, 0];
            b.extend_from_slice(s.as_bytes());
            b.push(0);
            dropped_database(&b)
        };
        assert_eq!(q("DROP DATABASE Foo;").as_deref(), Some("foo"));
        assert_eq!(
            q("  drop database if exists \"My Db\"").as_deref(),
            Some("My Db")
        );
        assert_eq!(q("drop database x with (force)").as_deref(), Some("x"));
        assert_eq!(q("drop table x"), None);
        assert_eq!(q("select 1"), None);
    }

    #[test]
    fn text_mentions_are_found_in_any_case() {
        assert_eq!(of_text(b"select pg_advisory_lock(1)", true), STATE);
        assert_eq!(
            of_text(b"CREATE TEMPORARY TABLE t AS SELECT 1", true),
            STATE
        );
        assert_eq!(of_text(b"SELECT abalance FROM pgbench_accounts", true), 0);
        assert_eq!(of_text(b"select 1", false), STATE);
    }

    #[test]
    fn text_scan_agrees_with_the_plain_window_scan() {
        // Every position of every length, against the obvious definition.
        let plain = |t: &[u8]| {
            t.windows(4).any(|w| {
                let l: Vec<u8> = w.iter().map(|b| b | 0x20).collect();
                l == b"temp" || l == b"advi"
            })
        };
        let mut seed = 7u64;
        for len in 0..40 {
            for at in 0..=len.max(4) - 4 {
                for word in [&b"TeMp"[..], b"advi", b"ADVI", b"tem", b"xemp"] {
                    let mut t = vec![b'x'; len.max(4)];
                    for (i, b) in word.iter().enumerate() {
                        if let Some(c) = t.get_mut(at + i) {
                            *c = *b;
                        }
                    }
                    assert_eq!(of_text(&t, true) == STATE, plain(&t), "{t:?}");
                }
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let t: Vec<u8> = (0..len)
                    .map(|i| b"tTeEmMpPaAdDvViI x"[((seed >> (i % 60)) % 18) as usize])
                    .collect();
                assert_eq!(of_text(&t, true) == STATE, plain(&t), "{t:?}");
            }
        }
    }
}
