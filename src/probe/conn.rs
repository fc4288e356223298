//! SQL connections to the nodes for the agent and the pooler's discovery (tokio-postgres, no
//! TLS on these loopback/LAN links yet, and so never a cleartext password): who to connect as, a
//! bounded connect, connections kept between rounds, and small helpers returning text.

use crate::config::{ClusterConfig, NodeConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Why a SQL operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// Connecting or running the statement failed.
    #[error("{node}: {source}")]
    Postgres {
        /// Node name.
        node: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The TCP connection failed, or the server asked for a cleartext password.
    #[error("{node}: {source}")]
    Io {
        /// Node name.
        node: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The task probing it ended without an answer.
    #[error("{node}: probe task ended without an answer")]
    Lost {
        /// Node name.
        node: String,
    },
    /// It took longer than allowed.
    #[error("{node}: no answer within {timeout:?}")]
    Timeout {
        /// Node name.
        node: String,
        /// The limit.
        timeout: Duration,
    },
}

/// Where and as whom to connect to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Node name.
    pub name: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Login role (the cluster's superuser).
    pub user: String,
    /// Its password, if any.
    pub password: Option<String>,
    /// Database to connect to.
    pub dbname: String,
    /// `application_name`, so that each role's sessions can be told apart on the node.
    pub application_name: &'static str,
}

impl Target {
    /// The target for `node` of `cluster`, as its superuser in its probe database.
    pub fn new(
        cluster: &ClusterConfig,
        node: &NodeConfig,
        application_name: &'static str,
    ) -> Target {
        Target {
            name: node.name.clone(),
            host: node.host.clone(),
            port: node.port,
            user: cluster.superuser.clone(),
            password: cluster.superuser_password.clone(),
            dbname: cluster.probe_database.clone(),
            application_name,
        }
    }

    fn config(&self, timeout: Duration) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(self.application_name)
            .connect_timeout(timeout)
            .keepalives_idle(Duration::from_secs(5));
        if let Some(p) = &self.password {
            c.password(p);
        }
        c
    }

    fn err(&self, source: tokio_postgres::Error) -> SqlError {
        SqlError::Postgres {
            node: self.name.clone(),
            source,
        }
    }

    fn timeout(&self, timeout: Duration) -> SqlError {
        SqlError::Timeout {
            node: self.name.clone(),
            timeout,
        }
    }

    /// Connects within `timeout`; the connection task runs until the client is dropped. A
    /// cleartext password request is refused: the password never crosses plain TCP.
    pub async fn connect(&self, timeout: Duration) -> Result<Client, SqlError> {
        let cfg = self.config(timeout);
        let io = |source| SqlError::Io {
            node: self.name.clone(),
            source,
        };
        let fut = async {
            let stream = crate::net::no_cleartext::connect(&self.host, self.port)
                .await
                .map_err(io)?;
            cfg.connect_raw(stream, NoTls).await.map_err(|e| {
                match crate::net::no_cleartext::refusal_in(&e) {
                    Some(source) => io(source),
                    None => self.err(e),
                }
            })
        };
        let (client, conn) = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| self.timeout(timeout))??;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Runs `sql` (one or more statements) and returns every row of every statement as text,
    /// statements separated: `result[statement][row][column]`.
    pub async fn query(&self, sql: &str, timeout: Duration) -> Result<Vec<Rows>, SqlError> {
        let client = self.connect(timeout).await?;
        run_query(&client, self, sql, timeout).await
    }

    /// Runs `sql` and returns the first column of the first row of the first statement.
    pub async fn scalar(&self, sql: &str, timeout: Duration) -> Result<Option<String>, SqlError> {
        Ok(first(self.query(sql, timeout).await?))
    }
}

/// Open connections by node name, kept between rounds. In the agent the probes and the actions
/// share them: a failover then runs its statements on connections the last probe round already
/// authenticated (a new SCRAM handshake costs a round trip and, in debug builds, tens of
/// milliseconds of PBKDF2).
#[derive(Debug, Default)]
pub struct Conns {
    map: Mutex<HashMap<String, (Target, Arc<Client>)>>,
}

impl Conns {
    /// The open connection to `t`, or a new one (kept for next time). A kept connection made
    /// for another address or role of the same node (a reload changed it) is replaced.
    pub async fn get(&self, t: &Target, timeout: Duration) -> Result<Arc<Client>, SqlError> {
        let cached = self.map.lock().ok().and_then(|m| {
            m.get(&t.name)
                .filter(|(kept, c)| kept == t && !c.is_closed())
                .map(|(_, c)| c.clone())
        });
        if let Some(c) = cached {
            return Ok(c);
        }
        let c = Arc::new(t.connect(timeout).await?);
        if let Ok(mut m) = self.map.lock() {
            m.insert(t.name.clone(), (t.clone(), c.clone()));
        }
        Ok(c)
    }

    /// Keeps only the connections to nodes `keep` accepts (closing those to removed nodes).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|name, _| keep(name));
        }
    }

    /// Forgets the connection to `name` (after an error).
    pub fn evict(&self, name: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(name);
        }
    }

    /// Runs `sql` on `t` over the kept connection; after a failure on a kept connection, once
    /// more on a new one (the node may have restarted since).
    pub async fn query(
        &self,
        t: &Target,
        sql: &str,
        timeout: Duration,
    ) -> Result<Vec<Rows>, SqlError> {
        let client = self.get(t, timeout).await?;
        match run_query(&client, t, sql, timeout).await {
            Ok(rows) => Ok(rows),
            Err(_) if client.is_closed() => {
                self.evict(&t.name);
                let client = self.get(t, timeout).await?;
                run_query(&client, t, sql, timeout).await
            }
            Err(e) => Err(e),
        }
    }

    /// Runs each statement in order (statements that refuse a transaction block, such as
    /// `ALTER SYSTEM`, cannot share one simple query).
    pub async fn each(&self, t: &Target, sqls: &[&str], timeout: Duration) -> Result<(), SqlError> {
        for sql in sqls {
            self.query(t, sql, timeout).await?;
        }
        Ok(())
    }

    /// The first column of the first row of the first statement.
    pub async fn scalar(
        &self,
        t: &Target,
        sql: &str,
        timeout: Duration,
    ) -> Result<Option<String>, SqlError> {
        let rows = self.query(t, sql, timeout).await?;
        Ok(first(rows))
    }
}

fn first(rows: Vec<Rows>) -> Option<String> {
    rows.into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .and_then(|r| r.into_iter().next())
        .flatten()
}

/// Rows of one statement, each a vector of nullable text columns.
pub type Rows = Vec<Vec<Option<String>>>;

/// Runs `sql` on an open client; see [`Target::query`].
pub async fn run_query(
    client: &Client,
    target: &Target,
    sql: &str,
    timeout: Duration,
) -> Result<Vec<Rows>, SqlError> {
    let messages = tokio::time::timeout(timeout, client.simple_query(sql))
        .await
        .map_err(|_| target.timeout(timeout))?
        .map_err(|e| target.err(e))?;
    let mut out = vec![Vec::new()];
    for m in messages {
        match m {
            SimpleQueryMessage::Row(row) => {
                let cols = (0..row.len()).map(|i| row.get(i).map(str::to_string));
                if let Some(last) = out.last_mut() {
                    last.push(cols.collect());
                }
            }
            SimpleQueryMessage::CommandComplete(_) => out.push(Vec::new()),
            _ => {}
        }
    }
    out.pop();
    Ok(out)
}
