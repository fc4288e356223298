//! The checker: reads one value per key, with the default and bounds of the key's table entry,
//! and collects every problem (key, message, hint) so that validation reports them all at once.

use super::super::keys::{self, Key, Kind, Unset};
use super::super::raw::{RawBytes, RawDuration};
use super::super::Problem;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Collects problems while converting values; a wrong value falls back to the table's default
/// so that validation goes on and reports everything at once.
#[derive(Default)]
pub(super) struct Checker {
    pub problems: Vec<Problem>,
}

/// Parses `"5s"`, `"250ms"`, `"1m 30s"` and a bare `"0"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    humantime::parse_duration(t).ok()
}

/// Parses `"16MB"`, `"1GiB"`, `"8kB"`, `"512"` (units are powers of 1024, as in PostgreSQL).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "kib" | "k" => 1 << 10,
        "mb" | "mib" | "m" => 1 << 20,
        "gb" | "gib" | "g" => 1 << 30,
        "tb" | "tib" | "t" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A list default as written in the table: items separated by `,`.
fn list_of(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl Checker {
    /// Records a problem; an empty hint is left out.
    pub fn bad(&mut self, key: impl Into<String>, message: impl Into<String>, hint: &str) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
            hint: (!hint.is_empty()).then(|| hint.to_string()),
        });
    }

    /// The table entry of `key` (a path in the file); a missing one is reported as a bug.
    fn entry(&mut self, key: &str) -> Option<&'static Key> {
        let found = keys::find(key);
        if found.is_none() {
            self.bad(
                key,
                "has no entry in the key table",
                "a pgsluice bug: please report it",
            );
        }
        found
    }

    /// The kind of `key`'s entry when `fits` accepts it; another kind is reported as a bug
    /// (validation reading a key with the wrong method).
    fn kind(&mut self, key: &str, fits: fn(&Kind) -> bool) -> Option<Kind> {
        let kind = self.entry(key)?.kind;
        if fits(&kind) {
            return Some(kind);
        }
        self.bad(
            key,
            format!("is read as another kind than its table entry ({kind:?})"),
            "a pgsluice bug: please report it",
        );
        None
    }

    /// The table's default of `key`, parsed; a default that does not parse is a bug.
    fn fallback<T: Default>(&mut self, key: &str, parse: impl FnOnce(&str) -> Option<T>) -> T {
        let Some(entry) = self.entry(key) else {
            return T::default();
        };
        if let Unset::Value(text) = entry.unset {
            if let Some(v) = parse(text) {
                return v;
            }
        }
        self.bad(
            key,
            "has no usable default in the key table",
            "a pgsluice bug: please report it",
        );
        T::default()
    }

    /// A given duration, `None` when unset or wrong (the problem recorded).
    pub fn duration_opt(&mut self, key: &str, v: &Option<RawDuration>) -> Option<Duration> {
        match v.as_ref()? {
            RawDuration::Seconds(s) if s.is_finite() && *s >= 0.0 => {
                Some(Duration::from_secs_f64(*s))
            }
            RawDuration::Seconds(s) => {
                let hint = "use seconds >= 0 or \"250ms\"";
                self.bad(key, format!("{s} is not a duration"), hint);
                None
            }
            RawDuration::Text(t) => parse_duration(t).or_else(|| {
                let hint = "write \"5s\", \"250ms\" or a number of seconds";
                self.bad(key, format!("{t:?} is not a duration"), hint);
                None
            }),
        }
    }

    /// A duration, the table's default when unset.
    pub fn duration(&mut self, key: &str, v: &Option<RawDuration>) -> Duration {
        self.kind(key, |k| matches!(k, Kind::Duration));
        match self.duration_opt(key, v) {
            Some(d) => d,
            None => self.fallback(key, parse_duration),
        }
    }

    /// A byte size within the entry's minimum, the table's default when unset.
    pub fn bytes(&mut self, key: &str, v: &Option<RawBytes>) -> u64 {
        let given = match v {
            None => None,
            Some(RawBytes::Count(n)) if *n >= 0 => Some(*n as u64),
            Some(RawBytes::Count(n)) => {
                self.bad(key, format!("{n} is not a size"), "sizes are >= 0");
                None
            }
            Some(RawBytes::Text(t)) => parse_bytes(t).or_else(|| {
                let hint = "write a number of bytes or \"16MB\", \"1GB\"";
                self.bad(key, format!("{t:?} is not a size"), hint);
                None
            }),
        };
        let min = match self.kind(key, |k| matches!(k, Kind::Size { .. })) {
            Some(Kind::Size { min }) => min,
            _ => 0,
        };
        match given {
            Some(n) if n < min => {
                self.bad(
                    key,
                    format!("{n} is too small"),
                    &format!("at least {min} bytes"),
                );
                self.fallback(key, parse_bytes)
            }
            Some(n) => n,
            None => self.fallback(key, parse_bytes),
        }
    }

    /// A given count within the entry's bounds, `None` when unset or out of range.
    pub fn count_opt(&mut self, key: &str, v: Option<i64>) -> Option<usize> {
        let n = v?;
        let (min, max) = match self.kind(key, |k| matches!(k, Kind::Count { .. })) {
            Some(Kind::Count { min, max }) => (min, max),
            _ => (0, i64::MAX),
        };
        if (min..=max).contains(&n) {
            return usize::try_from(n).ok();
        }
        self.bad(
            key,
            format!("{n} is out of range"),
            &format!("use {min}..={max}"),
        );
        None
    }

    /// A count within the entry's bounds, the table's default when unset.
    pub fn count(&mut self, key: &str, v: Option<i64>) -> usize {
        match self.count_opt(key, v) {
            Some(n) => n,
            None => self.fallback(key, |t| t.parse().ok()),
        }
    }

    /// A port, the table's default when unset.
    pub fn port(&mut self, key: &str, v: Option<i64>) -> u16 {
        self.kind(key, |k| matches!(k, Kind::Port));
        match v {
            Some(n) if (1..=65535).contains(&n) => n as u16,
            Some(n) => {
                self.bad(key, format!("{n} is not a port"), "ports are 1..=65535");
                self.fallback(key, |t| t.parse().ok())
            }
            None => self.fallback(key, |t| t.parse().ok()),
        }
    }

    /// A boolean, the table's default when unset.
    pub fn flag(&mut self, key: &str, v: Option<bool>) -> bool {
        self.kind(key, |k| matches!(k, Kind::Bool));
        match v {
            Some(b) => b,
            None => self.fallback(key, |t| t.parse().ok()),
        }
    }

    /// Any text, the table's default when unset.
    pub fn text(&mut self, key: &str, v: &Option<String>) -> String {
        match v {
            Some(s) => s.clone(),
            None => self.fallback(key, |t| Some(t.to_string())),
        }
    }

    /// A given non-empty text, `None` when unset or empty (the problem recorded).
    pub fn nonempty_opt(&mut self, key: &str, v: &Option<String>) -> Option<String> {
        match v.as_deref()? {
            "" => {
                self.bad(key, "must not be empty", "");
                None
            }
            s => Some(s.to_string()),
        }
    }

    /// A non-empty text, the table's default when unset.
    pub fn nonempty(&mut self, key: &str, v: &Option<String>) -> String {
        match self.nonempty_opt(key, v) {
            Some(s) => s,
            None => self.fallback(key, |t| Some(t.to_string())),
        }
    }

    /// A path; empty means unset; the table's default (if it has one) when unset.
    pub fn path(&mut self, key: &str, v: &Option<String>) -> Option<PathBuf> {
        match v.as_deref() {
            Some("") | None => match self.entry(key)?.unset {
                Unset::Value(t) => Some(PathBuf::from(t)),
                _ => None,
            },
            Some(s) => Some(PathBuf::from(s)),
        }
    }

    /// One of the entry's choices (the table's default when unset or wrong).
    pub fn choice(&mut self, key: &str, v: &Option<String>) -> &'static str {
        let Some(entry) = self.entry(key) else {
            return "";
        };
        let Some(Kind::Choice { what, of: choices }) =
            self.kind(key, |k| matches!(k, Kind::Choice { .. }))
        else {
            return "";
        };
        if let Some(s) = v.as_deref() {
            if let Some(c) = choices.iter().find(|c| **c == s) {
                return c;
            }
            let hint = format!("one of {}", choices.join(", "));
            self.bad(key, format!("{s:?} is not a {what}"), &hint);
        }
        match entry.unset {
            Unset::Value(d) => choices.iter().find(|c| **c == d).copied().unwrap_or(d),
            _ => "",
        }
    }

    /// A given choice, `None` when unset or wrong (for keys that inherit their default).
    pub fn choice_opt(&mut self, key: &str, v: &Option<String>) -> Option<&'static str> {
        let s = v.as_deref()?;
        let Some(Kind::Choice { what, of: choices }) =
            self.kind(key, |k| matches!(k, Kind::Choice { .. }))
        else {
            return None;
        };
        let found = choices.iter().find(|c| **c == s).copied();
        if found.is_none() {
            let hint = format!("one of {}", choices.join(", "));
            self.bad(key, format!("{s:?} is not a {what}"), &hint);
        }
        found
    }

    /// A list (each item an `http://` URL for `Urls` keys), the table's default when unset.
    pub fn list(&mut self, key: &str, v: &Option<Vec<String>>) -> Vec<String> {
        let items = match v {
            Some(items) => items.clone(),
            None => self.fallback(key, |t| Some(list_of(t))),
        };
        if let Some(Kind::Urls { example }) = self.entry(key).map(|e| e.kind) {
            for (i, url) in items.iter().enumerate() {
                if !url.starts_with("http://") {
                    let hint = format!("for example \"{example}\"");
                    self.bad(
                        format!("{key}[{i}]"),
                        format!("{url:?} is not an http:// URL"),
                        &hint,
                    );
                }
            }
        }
        items
    }

    /// An IP address or `*` (every IPv4 address), the table's default when unset.
    pub fn address(&mut self, key: &str, v: &Option<String>) -> IpAddr {
        let parse = |t: &str| match t {
            "*" => Some(IpAddr::from([0, 0, 0, 0])),
            t => t.parse::<IpAddr>().ok(),
        };
        if let Some(t) = v.as_deref() {
            if let Some(ip) = parse(t) {
                return ip;
            }
            let hint = "for example \"127.0.0.1\", \"::1\" or \"*\"";
            self.bad(key, format!("{t:?} is not an IP address"), hint);
        }
        self.fallback(key, |t| parse(t).map(Some))
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }

    /// `address:port`, the table's default when unset.
    pub fn socket(&mut self, key: &str, v: &Option<String>) -> SocketAddr {
        if let Some(t) = v.as_deref() {
            if let Ok(a) = t.parse::<SocketAddr>() {
                return a;
            }
            let hint = "for example \"127.0.0.1:9930\"";
            self.bad(key, format!("{t:?} is not an address:port"), hint);
        }
        let parsed = self.fallback(key, |t| t.parse::<SocketAddr>().ok().map(Some));
        parsed.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// A fraction within the entry's range, the table's default when unset or wrong.
    pub fn fraction(&mut self, key: &str, v: Option<f64>) -> f64 {
        let zero_ok = matches!(
            self.kind(key, |k| matches!(k, Kind::Fraction { .. })),
            Some(Kind::Fraction { zero_ok: true })
        );
        match v {
            Some(x) if x <= 1.0 && (x > 0.0 || (zero_ok && x == 0.0)) => x,
            Some(x) => {
                let range = if zero_ok {
                    "0..=1"
                } else {
                    "above 0, at most 1"
                };
                self.bad(
                    key,
                    format!("{x} is out of range"),
                    &format!("a fraction {range}"),
                );
                self.fallback(key, |t| t.parse().ok())
            }
            None => self.fallback(key, |t| t.parse().ok()),
        }
    }

    /// A rate above zero, the table's default when unset or wrong.
    pub fn rate(&mut self, key: &str, v: Option<f64>, hint: &str) -> f64 {
        match v {
            Some(x) if x.is_finite() && x > 0.0 => x,
            Some(x) => {
                self.bad(key, format!("{x} is not a rate"), hint);
                self.fallback(key, |t| t.parse().ok())
            }
            None => self.fallback(key, |t| t.parse().ok()),
        }
    }
}
