//! Console command parsing: one SQL-like line -> [`Command`], case-insensitive keywords,
//! optional trailing semicolon, database names bare or double-quoted.

/// What `SHOW` can list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Help,
    Config,
    Databases,
    Pools,
    Clients,
    Servers,
    Users,
    Stats,
    StatsTotals,
    StatsAverages,
    Totals,
    Lists,
    /// PgBouncer's memory table, for the pooler's per-object records.
    Mem,
    Version,
    State,
    /// The cluster's nodes (role, health, lag, bans).
    Nodes,
}

/// How `SHUTDOWN` ends the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Exit now (SIGQUIT).
    Immediate,
    /// Stop accepting; close each client at its next transaction boundary (SIGTERM).
    WaitForClients,
    /// Stop accepting; hold new transactions and exit once every server is released (SIGINT).
    WaitForServers,
}

/// One console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(Show),
    Pause(Option<String>),
    Resume(Option<String>),
    Disable(String),
    Enable(String),
    Reconnect(Option<String>),
    Kill(String),
    KillClient(i32),
    Reload,
    Shutdown(ShutdownMode),
    WaitClose(Option<String>),
    Set { key: String, value: String },
}

impl Command {
    /// Whether a `stats_users` member may run it.
    pub fn read_only(&self) -> bool {
        matches!(self, Self::Show(_))
    }
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command: {0} (SHOW HELP lists the commands)")]
    Unknown(String),
    #[error("syntax: {0}")]
    Usage(&'static str),
}

const SHOWS: &[(&str, Show)] = &[
    ("help", Show::Help),
    ("config", Show::Config),
    ("databases", Show::Databases),
    ("pools", Show::Pools),
    ("clients", Show::Clients),
    ("servers", Show::Servers),
    ("users", Show::Users),
    ("stats", Show::Stats),
    ("stats_totals", Show::StatsTotals),
    ("stats_averages", Show::StatsAverages),
    ("totals", Show::Totals),
    ("lists", Show::Lists),
    ("mem", Show::Mem),
    ("version", Show::Version),
    ("state", Show::State),
    ("nodes", Show::Nodes),
];

/// Splits into words, keeping `"quoted names"` and `'quoted values'` whole (quotes removed).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut w = String::new();
            while let Some(x) = chars.next() {
                if x == c {
                    if chars.peek() == Some(&c) {
                        chars.next();
                        w.push(c);
                        continue;
                    }
                    break;
                }
                w.push(x);
            }
            out.push(w);
        } else if c == '=' {
            chars.next();
            out.push("=".into());
        } else {
            let mut w = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() || x == '=' {
                    break;
                }
                w.push(x);
                chars.next();
            }
            out.push(w);
        }
    }
    out
}

/// Parses one console line.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let line = line.trim().trim_end_matches(';').trim();
    let w = words(line);
    let Some(verb) = w.first() else {
        return Err(ParseError::Unknown(String::new()));
    };
    let arg = w.get(1).cloned();
    let one = |usage| match (&arg, w.len()) {
        (Some(a), 2) => Ok(a.clone()),
        _ => Err(ParseError::Usage(usage)),
    };
    let optional = |usage| match w.len() {
        1 => Ok(None),
        2 => Ok(arg.clone()),
        _ => Err(ParseError::Usage(usage)),
    };
    Ok(match verb.to_ascii_lowercase().as_str() {
        "show" => {
            let what = one("SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|...")?;
            let what = what.to_ascii_lowercase();
            match SHOWS.iter().find(|(n, _)| *n == what) {
                Some((_, s)) => Command::Show(*s),
                None => return Err(ParseError::Unknown(format!("SHOW {what}"))),
            }
        }
        "pause" => Command::Pause(optional("PAUSE [db]")?),
        "resume" => Command::Resume(optional("RESUME [db]")?),
        "disable" => Command::Disable(one("DISABLE db")?),
        "enable" => Command::Enable(one("ENABLE db")?),
        "reconnect" => Command::Reconnect(optional("RECONNECT [db]")?),
        "kill" => Command::Kill(one("KILL db")?),
        "kill_client" => Command::KillClient(
            one("KILL_CLIENT id")?
                .parse()
                .map_err(|_| ParseError::Usage("KILL_CLIENT id (the id column of SHOW CLIENTS)"))?,
        ),
        "reload" if w.len() == 1 => Command::Reload,
        "shutdown" => Command::Shutdown(
            match optional("SHUTDOWN [WAIT_FOR_CLIENTS|WAIT_FOR_SERVERS]")?
                .map(|m| m.to_ascii_lowercase())
                .as_deref()
            {
                None => ShutdownMode::Immediate,
                Some("wait_for_clients") => ShutdownMode::WaitForClients,
                Some("wait_for_servers") => ShutdownMode::WaitForServers,
                Some(_) => {
                    return Err(ParseError::Usage(
                        "SHUTDOWN [WAIT_FOR_CLIENTS|WAIT_FOR_SERVERS]",
                    ))
                }
            },
        ),
        "wait_close" => Command::WaitClose(optional("WAIT_CLOSE [db]")?),
        "set" => match w.as_slice() {
            [_, key, eq, value] if eq == "=" || eq.eq_ignore_ascii_case("to") => Command::Set {
                key: key.to_ascii_lowercase(),
                value: value.clone(),
            },
            _ => return Err(ParseError::Usage("SET key = value")),
        },
        _ => return Err(ParseError::Unknown(line.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse("show pools;"), Ok(Command::Show(Show::Pools)));
        assert_eq!(parse("SHOW NODES"), Ok(Command::Show(Show::Nodes)));
        assert_eq!(
            parse("SHOW STATS_TOTALS"),
            Ok(Command::Show(Show::StatsTotals))
        );
        assert_eq!(parse("PAUSE"), Ok(Command::Pause(None)));
        assert_eq!(
            parse("pause \"My Db\""),
            Ok(Command::Pause(Some("My Db".into())))
        );
        assert_eq!(parse("kill_client 42"), Ok(Command::KillClient(42)));
        assert_eq!(
            parse("shutdown wait_for_servers"),
            Ok(Command::Shutdown(ShutdownMode::WaitForServers))
        );
        assert_eq!(
            parse("SET query_wait_timeout='5s'"),
            Ok(Command::Set {
                key: "query_wait_timeout".into(),
                value: "5s".into()
            })
        );
        assert_eq!(
            parse("set Log_Connections to off"),
            Ok(Command::Set {
                key: "log_connections".into(),
                value: "off".into()
            })
        );
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(matches!(parse("select 1"), Err(ParseError::Unknown(_))));
        assert!(matches!(parse("show nothing"), Err(ParseError::Unknown(_))));
        assert!(matches!(parse("disable"), Err(ParseError::Usage(_))));
        assert!(matches!(parse("kill_client x"), Err(ParseError::Usage(_))));
        assert!(matches!(parse("shutdown later"), Err(ParseError::Usage(_))));
        assert!(parse("select 1")
            .unwrap_err()
            .to_string()
            .contains("SHOW HELP"));
        assert!(!Command::Reload.read_only());
    }
}
