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

/// The effects a CommandComplete tag (body without its NUL) announces.
#[inline]
pub fn of_tag(body: &[u8]) -> u8 {
    let tag = body.strip_suffix(b"\0").unwrap_or(body);
    match tag.first() {
        Some(b'S') if tag == b"SET" => SETTINGS,
        Some(b'R') if tag == b"RESET" => SETTINGS,
        Some(b'D') if tag.starts_with(b"DISCARD") => SETTINGS,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_map_to_effects() {
        assert_eq!(of_tag(b"SET\0"), SETTINGS);
        assert_eq!(of_tag(b"RESET\0"), SETTINGS);
        assert_eq!(of_tag(b"DISCARD ALL\0"), SETTINGS);
        assert_eq!(of_tag(b"SELECT 1\0"), 0);
        assert_eq!(of_tag(b"SETX\0"), 0);
        assert_eq!(of_tag(b"INSERT 0 1\0"), 0);
    }
}
