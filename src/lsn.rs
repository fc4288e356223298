//! `Lsn`: a WAL position (PostgreSQL `pg_lsn`), one type for the agent, the router and discovery.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A WAL position as a byte offset; ordered as PostgreSQL orders `pg_lsn`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`, before any WAL.
    pub const ZERO: Lsn = Lsn(0);

    /// Parses PostgreSQL's `X/Y` hexadecimal spelling (each half at most 32 bits).
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u64::from_str_radix(hi, 16).ok()?;
        let lo = u64::from_str_radix(lo, 16).ok()?;
        if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
            return None;
        }
        Some(Lsn((hi << 32) | lo))
    }

    /// Bytes from `other` up to `self` (0 when `other` is ahead).
    pub fn bytes_after(self, other: Lsn) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

impl fmt::Display for Lsn {
    /// PostgreSQL's spelling: `16/B374D848`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_postgres_spelling() {
        assert_eq!(
            Lsn::parse("16/B374D848"),
            Some(Lsn((0x16 << 32) | 0xB374_D848))
        );
        assert_eq!(Lsn::parse(" 0/3000148\n"), Some(Lsn(0x300_0148)));
        assert_eq!(Lsn((0x16 << 32) | 0xB374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn::ZERO.to_string(), "0/0");
        for text in ["0/0", "1/0", "FFFFFFFF/FFFFFFFF", "A/1"] {
            assert_eq!(
                Lsn::parse(text).map(|l| l.to_string()).as_deref(),
                Some(text)
            );
        }
    }

    #[test]
    fn rejects_what_postgres_would_not_print() {
        for bad in [
            "nope",
            "",
            "0",
            "0/",
            "/0",
            "1/2/3",
            "100000000/0",
            "0/100000000",
            "g/0",
        ] {
            assert_eq!(Lsn::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn orders_and_subtracts() {
        let (a, b) = (Lsn::parse("0/5000000"), Lsn::parse("0/4000000"));
        let (Some(a), Some(b)) = (a, b) else {
            panic!("parse");
        };
        assert!(a > b && Lsn::parse("1/0") > Some(a));
        assert_eq!(a.bytes_after(b), 0x100_0000);
        assert_eq!(b.bytes_after(a), 0);
    }
}
