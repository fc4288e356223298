//! Host-based authentication rules in `pg_hba.conf` syntax (`auth_hba_file`): a sans-IO
//! parser with `file:line` errors and the first-match lookup done at login.
//!
//! Supported: connection types `local`, `host`, `hostssl`, `hostnossl`; databases `all`,
//! `sameuser`, names and comma lists (quoted names are never keywords); users `all`, names
//! and lists; addresses `all`, `IP/prefix` and `IP MASK`; methods `trust`, `reject`, `md5`,
//! `scram-sha-256`, `password`. Anything else PostgreSQL knows (`@file`, `+group`,
//! `samerole`, host names, `samehost`, regular expressions, method options, other methods)
//! is refused with its line, never silently ignored: a rule the pooler cannot honour must
//! not be half-applied.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// A line of the file that cannot be used, named `file:line`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct HbaError {
    /// The file as configured.
    pub file: String,
    /// 1-based line number (0 when the file could not be read).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// How a client connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnType {
    /// Unix-domain socket.
    Local,
    /// TCP with or without TLS.
    Host,
    /// TCP with TLS only.
    HostSsl,
    /// TCP without TLS only.
    HostNoSsl,
}

/// What a matching rule asks of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HbaMethod {
    /// Let in without a password.
    Trust,
    /// Refuse.
    Reject,
    /// MD5 challenge, or SCRAM when the stored secret is SCRAM (as PostgreSQL does).
    Md5,
    /// SCRAM-SHA-256 only.
    ScramSha256,
    /// The password in clear (use only over TLS).
    Password,
}

impl HbaMethod {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "trust" => Self::Trust,
            "reject" => Self::Reject,
            "md5" => Self::Md5,
            "scram-sha-256" => Self::ScramSha256,
            "password" => Self::Password,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NameMatch {
    All,
    SameUser,
    Name(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddrMatch {
    All,
    Net(IpAddr, u8),
}

/// One usable line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaRule {
    /// Where it was written.
    pub line: usize,
    conn: ConnType,
    databases: Vec<NameMatch>,
    users: Vec<NameMatch>,
    addr: AddrMatch,
    /// What the rule asks.
    pub method: HbaMethod,
}

/// Who is logging in, as far as the rules care.
#[derive(Debug, Clone, Copy)]
pub struct HbaClient<'a> {
    /// The client's address; `None` for a Unix socket.
    pub addr: Option<IpAddr>,
    /// Whether the connection is encrypted.
    pub tls: bool,
    /// Database asked for.
    pub database: &'a str,
    /// User name.
    pub user: &'a str,
}

/// The rules of one file, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hba {
    rules: Vec<HbaRule>,
}

impl Hba {
    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, HbaError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| HbaError {
            file: file.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        Self::parse(&text, &file)
    }

    /// Parses the text of a file; `file` only names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, HbaError> {
        let mut rules = Vec::new();
        let mut pending = String::new();
        let mut first_line = 0;
        for (i, raw) in text.lines().enumerate() {
            if pending.is_empty() {
                first_line = i + 1;
            }
            if let Some(cont) = raw.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            pending.push_str(raw);
            let line = std::mem::take(&mut pending);
            let err = |message: String| HbaError {
                file: file.to_string(),
                line: first_line,
                message,
            };
            let fields = tokenize(&line).map_err(err)?;
            if !fields.is_empty() {
                rules.push(parse_rule(first_line, &fields).map_err(err)?);
            }
        }
        Ok(Self { rules })
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[HbaRule] {
        &self.rules
    }

    /// The first rule matching the client, if any (no match means: refuse).
    pub fn lookup(&self, client: &HbaClient<'_>) -> Option<&HbaRule> {
        self.rules.iter().find(|r| r.matches(client))
    }
}

impl HbaRule {
    fn matches(&self, c: &HbaClient<'_>) -> bool {
        let conn_ok = match (self.conn, c.addr) {
            (ConnType::Local, None) => true,
            (ConnType::Host, Some(_)) => true,
            (ConnType::HostSsl, Some(_)) => c.tls,
            (ConnType::HostNoSsl, Some(_)) => !c.tls,
            _ => false,
        };
        conn_ok
            && self.databases.iter().any(|d| match d {
                NameMatch::All => true,
                NameMatch::SameUser => c.database == c.user,
                NameMatch::Name(n) => n == c.database,
            })
            && self.users.iter().any(|u| match u {
                NameMatch::All => true,
                NameMatch::SameUser => false,
                NameMatch::Name(n) => n == c.user,
            })
            && match (self.addr, c.addr) {
                (AddrMatch::All, _) => true,
                (AddrMatch::Net(net, prefix), Some(ip)) => in_net(ip, net, prefix),
                (AddrMatch::Net(..), None) => false,
            }
    }
}

impl fmt::Display for HbaMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Trust => "trust",
            Self::Reject => "reject",
            Self::Md5 => "md5",
            Self::ScramSha256 => "scram-sha-256",
            Self::Password => "password",
        })
    }
}

/// A word of a line; quoted words are never keywords.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    quoted: bool,
}

impl Token {
    fn is_kw(&self, kw: &str) -> bool {
        !self.quoted && self.text == kw
    }
}

/// Splits a line into fields, each a comma list of tokens; `#` starts a comment.
fn tokenize(line: &str) -> Result<Vec<Vec<Token>>, String> {
    let mut fields: Vec<Vec<Token>> = Vec::new();
    let mut chars = line.chars().peekable();
    let mut continuing = false;
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => break,
            _ => {}
        }
        let mut tok = Token {
            text: String::new(),
            quoted: false,
        };
        let mut in_quotes = false;
        let mut more = false;
        while let Some(&c) = chars.peek() {
            if in_quotes {
                chars.next();
                if c == '"' {
                    in_quotes = false;
                } else {
                    tok.text.push(c);
                }
            } else if c == '"' {
                chars.next();
                in_quotes = true;
                tok.quoted = true;
            } else if c == ',' {
                chars.next();
                more = true;
                break;
            } else if c.is_whitespace() || c == '#' {
                break;
            } else {
                chars.next();
                tok.text.push(c);
            }
        }
        if in_quotes {
            return Err("unterminated quoted string".into());
        }
        if tok.text.is_empty() && !tok.quoted {
            return Err("empty entry in a comma-separated list".into());
        }
        match fields.last_mut() {
            Some(f) if continuing => f.push(tok),
            _ => fields.push(vec![tok]),
        }
        continuing = more;
    }
    if continuing {
        return Err("comma-separated list ends with a comma".into());
    }
    Ok(fields)
}

fn single<'a>(field: &'a [Token], what: &str) -> Result<&'a Token, String> {
    match field {
        [t] => Ok(t),
        _ => Err(format!("{what} cannot be a list")),
    }
}

fn parse_rule(line: usize, fields: &[Vec<Token>]) -> Result<HbaRule, String> {
    let conn_tok = single(&fields[0], "connection type")?;
    let conn = match conn_tok.text.as_str() {
        "local" => ConnType::Local,
        "host" => ConnType::Host,
        "hostssl" => ConnType::HostSsl,
        "hostnossl" => ConnType::HostNoSsl,
        "hostgssenc" | "hostnogssenc" => {
            return Err(format!(
                "connection type \"{}\" is not supported (no GSSAPI)",
                conn_tok.text
            ))
        }
        other => return Err(format!("invalid connection type \"{other}\"")),
    };
    let databases = fields
        .get(1)
        .ok_or("end-of-line before database specification")?;
    let users = fields
        .get(2)
        .ok_or("end-of-line before role specification")?;
    let databases = databases
        .iter()
        .map(|t| name_match(t, true))
        .collect::<Result<_, _>>()?;
    let users = users
        .iter()
        .map(|t| name_match(t, false))
        .collect::<Result<_, _>>()?;
    let mut rest = &fields[3..];
    let addr = if conn == ConnType::Local {
        AddrMatch::All
    } else {
        let (addr, used) = parse_addr(rest)?;
        rest = &rest[used..];
        addr
    };
    let method_tok = single(
        rest.first()
            .ok_or("end-of-line before authentication method")?,
        "authentication method",
    )?;
    let method = HbaMethod::parse(&method_tok.text).ok_or_else(|| {
        format!(
            "authentication method \"{}\" is not supported (trust, reject, md5, \
             scram-sha-256, password)",
            method_tok.text
        )
    })?;
    if let Some(opt) = rest.get(1) {
        return Err(format!(
            "authentication option \"{}\" is not supported",
            opt.first().map(|t| t.text.as_str()).unwrap_or_default()
        ));
    }
    Ok(HbaRule {
        line,
        conn,
        databases,
        users,
        addr,
        method,
    })
}

fn name_match(t: &Token, database: bool) -> Result<NameMatch, String> {
    if t.quoted {
        return Ok(NameMatch::Name(t.text.clone()));
    }
    match t.text.as_str() {
        "all" => Ok(NameMatch::All),
        "sameuser" if database => Ok(NameMatch::SameUser),
        "samerole" | "samegroup" | "replication" if database => {
            Err(format!("database keyword \"{}\" is not supported", t.text))
        }
        s if s.starts_with('@') => Err(format!("included files (\"{s}\") are not supported")),
        s if s.starts_with('+') && !database => {
            Err(format!("group membership (\"{s}\") is not supported"))
        }
        s if s.starts_with('/') => Err(format!("regular expressions (\"{s}\") are not supported")),
        s => Ok(NameMatch::Name(s.to_string())),
    }
}

/// The address field (and a mask field after a bare IP); returns how many fields it used.
fn parse_addr(fields: &[Vec<Token>]) -> Result<(AddrMatch, usize), String> {
    let tok = single(
        fields.first().ok_or("end-of-line before IP address")?,
        "IP address",
    )?;
    if tok.is_kw("all") {
        return Ok((AddrMatch::All, 1));
    }
    if tok.is_kw("samehost") || tok.is_kw("samenet") {
        return Err(format!("address keyword \"{}\" is not supported", tok.text));
    }
    if let Some((ip, bits)) = tok.text.split_once('/') {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("invalid IP address \"{ip}\" (host names are not supported)"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = bits
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("invalid CIDR mask in address \"{}\"", tok.text))?;
        return Ok((AddrMatch::Net(ip, prefix), 1));
    }
    let ip: IpAddr = tok.text.parse().map_err(|_| {
        format!(
            "invalid IP address \"{}\" (host names are not supported)",
            tok.text
        )
    })?;
    let mask_tok = single(
        fields
            .get(1)
            .ok_or("end-of-line before netmask specification")?,
        "netmask",
    )?;
    let mask: IpAddr = mask_tok
        .text
        .parse()
        .map_err(|_| format!("invalid IP mask \"{}\"", mask_tok.text))?;
    let prefix = mask_prefix(mask)
        .filter(|_| mask.is_ipv4() == ip.is_ipv4())
        .ok_or_else(|| format!("invalid IP mask \"{}\"", mask_tok.text))?;
    Ok((AddrMatch::Net(ip, prefix), 2))
}

fn mask_prefix(mask: IpAddr) -> Option<u8> {
    let (bits, width) = match mask {
        IpAddr::V4(m) => (u128::from(u32::from(m)) << 96, 32),
        IpAddr::V6(m) => (u128::from(m), 128),
    };
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0 && ones <= width).then_some(ones as u8)
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (a, b, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = width - u32::from(prefix);
    if shift >= 128 {
        return true;
    }
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn client<'a>(addr: Option<&str>, tls: bool, db: &'a str, user: &'a str) -> HbaClient<'a> {
        HbaClient {
            addr: addr.map(|a| a.parse().unwrap()),
            tls,
            database: db,
            user,
        }
    }

    const FILE: &str = r#"
# comment line
local   all        all                          trust
hostssl app        alice      127.0.0.1/32      scram-sha-256
hostnossl app      alice      127.0.0.1/32      reject
host    "all"      bob        10.0.0.0 255.0.0.0 md5   # quoted all is a name
host    sameuser   all        ::1/128           password
host    db1,"db 2" carol,dave 0.0.0.0/0         md5
host    all        all        all               reject
"#;

    #[test]
    fn first_match_wins() {
        let hba = Hba::parse(FILE, "hba.conf").unwrap();
        assert_eq!(hba.rules().len(), 7);
        let m = |c: HbaClient<'_>| hba.lookup(&c).map(|r| (r.line, r.method));
        assert_eq!(
            m(client(None, false, "x", "y")),
            Some((3, HbaMethod::Trust))
        );
        assert_eq!(
            m(client(Some("127.0.0.1"), true, "app", "alice")),
            Some((4, HbaMethod::ScramSha256))
        );
        assert_eq!(
            m(client(Some("127.0.0.1"), false, "app", "alice")),
            Some((5, HbaMethod::Reject))
        );
        // "all" quoted is a database named all.
        assert_eq!(
            m(client(Some("10.1.2.3"), false, "app", "bob")),
            Some((9, HbaMethod::Reject))
        );
        assert_eq!(
            m(client(Some("10.1.2.3"), false, "all", "bob")),
            Some((6, HbaMethod::Md5))
        );
        assert_eq!(
            m(client(Some("::1"), false, "eve", "eve")),
            Some((7, HbaMethod::Password))
        );
        assert_eq!(
            m(client(Some("192.168.1.1"), false, "db 2", "dave")),
            Some((8, HbaMethod::Md5))
        );
        // IPv4-mapped IPv6 addresses match IPv4 networks.
        assert_eq!(
            m(client(Some("::ffff:10.0.0.1"), false, "all", "bob")),
            Some((6, HbaMethod::Md5))
        );
    }

    #[test]
    fn no_rule_means_none() {
        let hba = Hba::parse("host app app 127.0.0.1/32 trust\n", "f").unwrap();
        assert!(hba
            .lookup(&client(Some("127.0.0.2"), false, "app", "app"))
            .is_none());
        assert!(hba.lookup(&client(None, false, "app", "app")).is_none());
        assert!(Hba::parse("", "f")
            .unwrap()
            .lookup(&client(None, false, "a", "b"))
            .is_none());
    }

    #[test]
    fn continuation_lines_keep_first_line_number() {
        let hba = Hba::parse("\nhost all all \\\n 0.0.0.0/0 md5\n", "f").unwrap();
        assert_eq!(hba.rules()[0].line, 2);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let cases = [
            ("hots all all 0.0.0.0/0 md5", "invalid connection type"),
            ("host all all 0.0.0.0/0 ident", "\"ident\" is not supported"),
            ("host all all 0.0.0.0/33 md5", "invalid CIDR mask"),
            (
                "host all all db.example.com md5",
                "host names are not supported",
            ),
            ("host all all 10.0.0.0 255.0.255.0 md5", "invalid IP mask"),
            ("host all all 10.0.0.0 md5", "invalid IP mask"),
            ("host all all", "end-of-line before IP address"),
            ("local all", "end-of-line before role"),
            ("local all all", "end-of-line before authentication method"),
            ("host all +admins 0.0.0.0/0 md5", "group membership"),
            ("host @dbs all 0.0.0.0/0 md5", "included files"),
            ("host samerole all 0.0.0.0/0 md5", "samerole"),
            ("host all all samehost md5", "samehost"),
            ("hostssl all all all md5 clientcert=verify-full", "option"),
            ("host \"all all 0.0.0.0/0 md5", "unterminated"),
            ("host all, all 0.0.0.0/0 md5", "invalid IP address \"md5\""),
            ("host a,,b all 0.0.0.0/0 md5", "empty entry"),
            ("hostgssenc all all all md5", "GSSAPI"),
        ];
        for (line, want) in cases {
            let text = format!("# header\n\n{line}\n");
            let e = Hba::parse(&text, "/etc/hba.conf").unwrap_err();
            assert_eq!(e.line, 3, "{line}");
            let shown = e.to_string();
            assert!(shown.starts_with("/etc/hba.conf:3: "), "{shown}");
            assert!(shown.contains(want), "{line}: {shown}");
        }
    }

    #[test]
    fn netmasks() {
        let p = |s: &str| mask_prefix(s.parse().unwrap());
        assert_eq!(p("255.255.255.255"), Some(32));
        assert_eq!(p("255.255.0.0"), Some(16));
        assert_eq!(p("0.0.0.0"), Some(0));
        assert_eq!(p("255.0.255.0"), None);
        assert_eq!(p("ffff:ffff::"), Some(32));
        assert!(in_net(
            "1.2.3.4".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
        assert!(in_net("::5".parse().unwrap(), "::".parse().unwrap(), 0));
        assert!(!in_net(
            "::1".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
            8
        ));
    }
}
