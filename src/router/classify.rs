//! Conservative, sans-IO classification of the client frames that open a transaction: is it
//! safe on a standby? Anything unsure answers "primary".
//!
//! A buffer qualifies as a read only when it ends on a frame boundary, every frame is a simple
//! `Query` or an extended Parse/Bind/Describe/Execute/Close/Sync/Flush, the batch ends with
//! `Query` or `Sync`, and every SQL text is one plain `SELECT` (or `WITH ... SELECT`, `VALUES`,
//! `SHOW`, `TABLE`) without a locking clause, `INTO`, a data-modifying CTE, or a call to a
//! function outside the allow-list.

/// What the opening frames of a transaction say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Class {
    /// Safe on a standby as an autocommit statement (policy `auto`).
    pub read_only: bool,
    /// Opens a transaction that declared itself read-only (`BEGIN READ ONLY`).
    pub begins_read_only: bool,
    /// An explicit routing order: a leading `/* pgsluice:primary */` comment.
    pub forced: Option<Target>,
    /// A session-level change seen in the batch.
    pub session: Option<SessionChange>,
    /// Query and Sync frames in the batch (each gets one ReadyForQuery).
    pub ends: usize,
}

/// Where an explicit order sends a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Primary,
    Replica,
}

/// Session-level routing changes the router follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange {
    /// `SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY|READ WRITE`,
    /// `SET default_transaction_read_only = on|off`.
    ReadOnly(bool),
    /// `SET pgsluice.route = primary|replica|auto` (`auto`/`RESET` clears the override).
    Route(Option<Target>),
}

/// Functions a read-only `SELECT` may call (lower case, without schema).
const ALLOWED_FUNCTIONS: &[&str] = &[
    "abs",
    "avg",
    "coalesce",
    "count",
    "lower",
    "upper",
    "max",
    "min",
    "sum",
    "now",
    "length",
    "substr",
    "substring",
    "round",
    "floor",
    "ceil",
    "greatest",
    "least",
    "nullif",
    "concat",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "to_char",
    "to_json",
    "to_jsonb",
    "date_trunc",
    "extract",
    "current_date",
    "current_timestamp",
    "pg_is_in_recovery",
    "version",
    "current_setting",
    "exists",
    "any",
    "all",
    "in",
    "cast",
    "row_number",
    "rank",
    "trim",
    "replace",
    "position",
    "split_part",
    "left",
    "right",
    "md5",
    "random",
    "format",
    "jsonb_build_object",
    "json_build_object",
    "array_length",
    "unnest",
    "generate_series",
    "inet_server_port",
    "inet_server_addr",
    "pg_backend_pid",
    "txid_current_if_assigned",
    "current_user",
    "session_user",
    "current_database",
    "now",
    "clock_timestamp",
    "bool_and",
    "bool_or",
    "stddev",
    "variance",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "filter",
    "over",
    "interval",
    "date_part",
    "age",
    "lag",
    "lead",
    "first_value",
    "last_value",
];

/// Keywords that make a statement unsafe anywhere in a SELECT.
const FORBIDDEN_WORDS: &[&str] = &[
    "for",
    "into",
    "insert",
    "update",
    "delete",
    "merge",
    "nextval",
    "setval",
    "lock",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "copy",
    "call",
    "do",
];

/// Classifies the buffered opening frames of a transaction.
pub fn classify(buf: &[u8]) -> Class {
    let mut class = Class::default();
    let mut texts = 0usize;
    let mut all_read = true;
    let mut last = 0u8;
    let mut at = 0usize;
    while at < buf.len() {
        let Some((tag, body)) = frame(buf, at) else {
            return Class::default();
        };
        at += 1 + 4 + body.len();
        last = tag;
        if matches!(tag, b'Q' | b'S') {
            class.ends += 1;
        }
        let sql = match tag {
            b'Q' => cstr(body),
            // Parse: statement name, then the query text.
            b'P' => cstr(body).and_then(|_| {
                let name_end = body.iter().position(|b| *b == 0)?;
                cstr(&body[name_end + 1..])
            }),
            b'B' | b'D' | b'E' | b'C' | b'S' | b'H' => continue,
            _ => return Class::default(),
        };
        let Some(sql) = sql else {
            return Class::default();
        };
        texts += 1;
        let one = statement(sql);
        if texts == 1 {
            class.forced = one.forced;
            class.begins_read_only = one.begins_read_only;
            class.session = one.session;
        } else if one.begins_read_only || one.session.is_some() {
            return Class::default();
        }
        all_read &= one.read_only;
    }
    if !matches!(last, b'Q' | b'S') || texts == 0 {
        class.read_only = false;
        class.begins_read_only = false;
        return class;
    }
    class.read_only = all_read && !class.begins_read_only;
    if texts > 1 {
        class.begins_read_only = false;
    }
    class
}

fn frame(buf: &[u8], at: usize) -> Option<(u8, &[u8])> {
    let head = buf.get(at..at + 5)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len < 4 {
        return None;
    }
    let body = buf.get(at + 5..at + 1 + len)?;
    Some((head[0], body))
}

fn cstr(body: &[u8]) -> Option<&str> {
    let end = body.iter().position(|b| *b == 0)?;
    std::str::from_utf8(&body[..end]).ok()
}

/// What one SQL text is.
fn statement(sql: &str) -> Class {
    let mut class = Class::default();
    let (forced, rest) = leading_comments(sql);
    class.forced = forced;
    let words = words(rest);
    let Some(first) = words.first().map(String::as_str) else {
        return class;
    };
    match first {
        "begin" | "start" => {
            class.begins_read_only = is_begin_read_only(&words);
        }
        "set" => class.session = session_change(&words),
        "reset" if words.get(1).map(String::as_str) == Some("pgsluice.route") => {
            class.session = Some(SessionChange::Route(None));
        }
        "reset" if words.get(1).map(String::as_str) == Some("all") => {
            class.session = Some(SessionChange::Route(None));
        }
        "select" | "with" | "values" | "table" | "show" => {
            class.read_only = single_statement(rest) && is_plain_read(&words);
        }
        _ => {}
    }
    class
}

/// Strips leading comments, noticing `/* pgsluice:primary */` and `/* pgsluice:replica */`.
fn leading_comments(sql: &str) -> (Option<Target>, &str) {
    let mut forced = None;
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("/*") {
            let Some(end) = after.find("*/") else {
                return (forced, "");
            };
            match after[..end].trim().to_ascii_lowercase().as_str() {
                "pgsluice:primary" => forced = Some(Target::Primary),
                "pgsluice:replica" => forced = Some(Target::Replica),
                _ => {}
            }
            rest = after[end + 2..].trim_start();
        } else if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map_or("", |n| after[n + 1..].trim_start());
        } else {
            return (forced, rest);
        }
    }
}

/// Lower-case words and operators outside string literals and quoted identifiers; `(` is
/// kept as its own token so that function calls can be seen.
fn words(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = sql.chars().peekable();
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        if !cur.is_empty() {
            out.push(std::mem::take(cur));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                flush(&mut cur, &mut out);
                let mut lit = String::new();
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                    lit.extend(d.to_lowercase());
                }
                out.push(if c == '"' {
                    "\"ident\"".into()
                } else {
                    format!("'{lit}'")
                });
            }
            '$' if cur.is_empty() => {
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    // A parameter ($1): a value.
                    while chars.next_if(char::is_ascii_digit).is_some() {}
                    out.push("$n".into());
                } else {
                    // Dollar quoting: too rare in reads to be worth parsing; be conservative.
                    out.push("$".into());
                }
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' => cur.push(c.to_ascii_lowercase()),
            '(' => {
                flush(&mut cur, &mut out);
                out.push("(".into());
            }
            ';' => {
                flush(&mut cur, &mut out);
                out.push(";".into());
            }
            _ => flush(&mut cur, &mut out),
        }
    }
    flush(&mut cur, &mut out);
    out
}

fn single_statement(sql: &str) -> bool {
    let w = words(sql);
    match w.iter().position(|t| t == ";") {
        None => true,
        Some(i) => w[i..].iter().all(|t| t == ";"),
    }
}

fn is_plain_read(words: &[String]) -> bool {
    if words.iter().any(|w| w == "$") {
        return false;
    }
    for (i, w) in words.iter().enumerate() {
        if FORBIDDEN_WORDS.contains(&w.as_str()) {
            return false;
        }
        if w == "(" && i > 0 {
            let f = words[i - 1].rsplit('.').next().unwrap_or("");
            let keyword = matches!(
                f,
                "select"
                    | "from"
                    | "where"
                    | "and"
                    | "or"
                    | "not"
                    | "as"
                    | "on"
                    | "by"
                    | "in"
                    | "exists"
                    | "values"
                    | "join"
                    | "("
                    | "having"
                    | "when"
                    | "then"
                    | "else"
                    | "lateral"
                    | "using"
                    | "union"
                    | "except"
                    | "intersect"
                    | "is"
                    | "like"
                    | "between"
                    | "case"
                    | "over"
                    | "filter"
                    | "within"
            );
            if !keyword && !ALLOWED_FUNCTIONS.contains(&f) && !is_value_token(f) {
                return false;
            }
        }
    }
    true
}

/// A token before `(` that is not a function name (a cast target such as `numeric(10`,
/// a literal, a number).
fn is_value_token(t: &str) -> bool {
    t.starts_with('\'')
        || matches!(t, "\"ident\"" | "numeric" | "decimal" | "varchar" | "char")
        || t.chars().all(|c| c.is_ascii_digit() || c == '.')
}

fn is_begin_read_only(words: &[String]) -> bool {
    let has = |a: &str, b: &str| words.windows(2).any(|w| w[0] == a && w[1] == b);
    has("read", "only") && !has("read", "write") && single_or_end(words)
}

fn single_or_end(words: &[String]) -> bool {
    match words.iter().position(|t| t == ";") {
        None => true,
        Some(i) => words[i..].iter().all(|t| t == ";"),
    }
}

fn session_change(words: &[String]) -> Option<SessionChange> {
    let w: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| *w != "session" && *w != "to")
        .collect();
    match w.as_slice() {
        ["set", "characteristics", "as", "transaction", "read", "only", ..] => {
            Some(SessionChange::ReadOnly(true))
        }
        ["set", "characteristics", "as", "transaction", "read", "write", ..] => {
            Some(SessionChange::ReadOnly(false))
        }
        ["set", "default_transaction_read_only", v, ..] => Some(SessionChange::ReadOnly(matches!(
            v.trim_matches('\''),
            "on" | "true" | "1" | "yes"
        ))),
        ["set", "pgsluice.route", v, ..] => Some(SessionChange::Route(route_value(v))),
        _ => None,
    }
}

/// `primary`, `replica` or anything else (auto).
pub fn route_value(v: &str) -> Option<Target> {
    match v.trim_matches('\'').to_ascii_lowercase().as_str() {
        "primary" => Some(Target::Primary),
        "replica" | "standby" => Some(Target::Replica),
        _ => None,
    }
}

#[cfg(test)]
#[path = "classify_test.rs"]
mod tests;
