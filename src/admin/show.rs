//! `SHOW` commands that list objects: HELP, CONFIG, DATABASES, POOLS, CLIENTS, SERVERS,
//! USERS, LISTS, VERSION, STATE (MEM is in `mem.rs`). Column names follow PgBouncer's console; pgsluice-only
//! columns (node, role, epoch, paused) come after them.

use super::table::{s, Table};
use super::{format_time, Admin, AdminError, Show};
use crate::backend::clients::{now_us, ClientInfo, ClientState};
use crate::config::{Backend, Config, DatabaseConfig};
use crate::pool::Pool;
use bytes::BytesMut;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One line per command for `SHOW HELP`.
const HELP: &[&str] = &[
    "SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION|STATE|NODES",
    "SHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|LISTS|MEM",
    "SET key = value",
    "PAUSE [db]",
    "RESUME [db]",
    "DISABLE db",
    "ENABLE db",
    "RECONNECT [db]",
    "KILL db",
    "KILL_CLIENT id",
    "WAIT_CLOSE [db]",
    "RELOAD",
    "SHUTDOWN [WAIT_FOR_CLIENTS|WAIT_FOR_SERVERS]",
];

fn b(v: bool) -> Option<String> {
    s(i32::from(v))
}

impl Admin {
    pub(super) fn show(&self, what: Show, out: &mut BytesMut) -> Result<(), AdminError> {
        let table = match what {
            Show::Help => {
                crate::proto::builders::notice_response(
                    out,
                    "NOTICE",
                    "00000",
                    &format!("Console usage\n\t{}", HELP.join("\n\t")),
                );
                crate::proto::builders::command_complete(out, "SHOW");
                return Ok(());
            }
            Show::Config => self.config_table(),
            Show::Databases => self.databases(),
            Show::Pools => self.pools(),
            Show::Clients => self.clients(),
            Show::Servers => self.servers(),
            Show::Users => self.users(),
            Show::Lists => self.lists(),
            Show::Mem => self.mem(),
            Show::Version => {
                let mut t = Table::new(&["version"]);
                t.text_row(&[format!("pgsluice {}", env!("CARGO_PKG_VERSION"))]);
                t
            }
            Show::State => self.state(),
            Show::Nodes => self.nodes(),
            Show::Stats | Show::StatsTotals | Show::StatsAverages | Show::Totals => {
                self.stats_table(what)
            }
        };
        table.write(out, "SHOW");
        Ok(())
    }

    fn config_table(&self) -> Table {
        let now = self.ctx.config();
        let default = crate::config::validate(&Default::default()).ok();
        let mut t = Table::new(&["key", "value", "default", "changeable"]);
        let defaults = default.map(|d| super::control::settings(&d));
        for (key, value, changeable) in super::control::settings(&now) {
            let d = defaults
                .as_ref()
                .and_then(|ds| ds.iter().find(|(k, _, _)| *k == key))
                .map(|(_, v, _)| v.clone());
            t.row(vec![
                s(key),
                s(value),
                d,
                s(if changeable { "yes" } else { "no" }),
            ]);
        }
        t
    }

    fn databases(&self) -> Table {
        let config = self.ctx.config();
        let (topology, primary) = self.ctx.topology();
        let mut t = Table::typed(
            &[
                "name",
                "host",
                "port",
                "database",
                "force_user",
                "pool_size",
                "min_pool_size",
                "reserve_pool",
                "server_lifetime",
                "pool_mode",
                "max_connections",
                "current_connections",
                "paused",
                "disabled",
                "node",
                "role",
                "epoch",
            ],
            "ssissiiiisiiiissq",
        );
        for (name, db) in &config.databases {
            let (host, port, node) = match (&db.backend, &primary) {
                (Backend::Host { host, port }, _) => {
                    (s(host), s(port), Some(format!("{host}:{port}")))
                }
                (Backend::Cluster, Some(n)) => (s(&n.host), s(n.port), s(&n.name)),
                (Backend::Cluster, None) => (None, None, None),
            };
            let gate = self.ctx.gate.db(name);
            let role = match db.backend {
                Backend::Host { .. } => "server",
                Backend::Cluster => "primary",
            };
            t.row(vec![
                s(name),
                host,
                port,
                s(&db.dbname),
                db.user.clone(),
                s(db.pool_size),
                s(db.min_pool_size),
                s(db.reserve_pool_size),
                s(config.pooler.server_lifetime.as_secs()),
                s(db.pool_mode.as_str()),
                s(db.max_db_connections),
                s(self.ctx.pools.db_connections(name)),
                b(gate.is_paused() || self.ctx.gate.is_paused()),
                b(gate.is_disabled()),
                node,
                s(role),
                s(topology.epoch),
            ]);
        }
        // The admin console's pseudo-database, as PgBouncer lists its own.
        t.row(vec![
            s(CONSOLE_DB),
            None,
            s(config.pooler.listen.port()),
            s(CONSOLE_DB),
            s(CONSOLE_DB),
            s(0),
            s(0),
            s(0),
            s(config.pooler.server_lifetime.as_secs()),
            s("statement"),
            s(0),
            s(0),
            b(false),
            b(false),
            None,
            s("console"),
            s(topology.epoch),
        ]);
        t
    }

    fn pools(&self) -> Table {
        let clients = self.ctx.clients.all();
        let now = now_us();
        let mut t = Table::typed(
            &[
                "database",
                "user",
                "cl_active",
                "cl_waiting",
                "cl_active_cancel_req",
                "cl_waiting_cancel_req",
                "sv_active",
                "sv_active_cancel",
                "sv_being_canceled",
                "sv_idle",
                "sv_used",
                "sv_tested",
                "sv_login",
                "maxwait",
                "maxwait_us",
                "pool_mode",
                "node",
                "paused",
                "role",
                "cl_pinned",
            ],
            "ssiiiiiiiiiiiiissisi",
        );
        let view = self.ctx.cluster_view();
        for p in sorted_pools(&self.ctx.pools.all()) {
            let mine = clients.iter().filter(|c| of_pool(c, &p));
            let (mut active, mut waiting, mut oldest) = (0, 0, now);
            for c in mine {
                match c.state() {
                    ClientState::Waiting => {
                        waiting += 1;
                        oldest = oldest.min(c.wait_since_us().unwrap_or(now));
                    }
                    ClientState::Login => {}
                    _ => active += 1,
                }
            }
            let wait = now.saturating_sub(oldest);
            let (idle, total) = p.counts();
            let sv_active = p.active();
            t.row(vec![
                s(&p.database),
                s(&p.user),
                s(active),
                s(waiting),
                s(0),
                s(0),
                s(sv_active),
                s(0),
                s(0),
                s(idle),
                s(0),
                s(0),
                s(total.saturating_sub(idle + sv_active)),
                s(wait / 1_000_000),
                s(wait % 1_000_000),
                s(p.settings().mode.as_str()),
                s(&p.spec().node),
                b(self.ctx.gate.is_paused() || self.ctx.gate.db(&p.database).is_paused()),
                view.index(&p.spec().node)
                    .map(|i| view.nodes[i].role.as_str().to_string()),
                s(p.stats.pinned.load(std::sync::atomic::Ordering::Relaxed)),
            ]);
        }
        // The console's pseudo-pool: its clients (this session included) are active.
        let console = clients.iter().filter(|c| c.console).count();
        let mut row = vec![s(CONSOLE_DB), s(CONSOLE_DB), s(console)];
        row.extend((0..12).map(|_| s(0)));
        row.extend([s("statement"), None, b(false), s("console"), s(0)]);
        t.row(row);
        t
    }

    fn clients(&self) -> Table {
        let now = now_us();
        let listen = self.ctx.config().pooler.listen;
        let mut t = Table::typed(CONNECTION_COLUMNS, CONNECTION_TYPES);
        for c in self.ctx.clients.all() {
            let state = match c.state() {
                ClientState::Waiting => "waiting",
                ClientState::Login => "login",
                _ => "active",
            };
            let (addr, port) = peer(&c);
            let wait = c.wait_since_us().map_or(0, |w| now.saturating_sub(w));
            t.row(vec![
                s("C"),
                s(c.user()),
                s(c.database()),
                s("none"),
                s(state),
                addr,
                s(port),
                s(listen.ip()),
                s(listen.port()),
                s(format_time(c.connect_time_us)),
                s(format_time(c.request_time_us())),
                s(wait / 1_000_000),
                s(wait % 1_000_000),
                b(c.close_requested().is_some()),
                s(format!("0x{:x}", c.id)),
                c.server_pid().map(|p| format!("0x{p:x}")),
                s(0),
                None,
                s(c.application_name()),
                s(0),
                s(c.id),
            ]);
        }
        t
    }

    fn servers(&self) -> Table {
        let clients = self.ctx.clients.all();
        let now = now_us();
        let types = format!("{CONNECTION_TYPES}s");
        let mut t = Table::typed(&[CONNECTION_COLUMNS, &["node"]].concat(), &types);
        for p in sorted_pools(&self.ctx.pools.all()) {
            let spec = p.spec();
            let row =
                |state: &str, pid: i32, client: Option<&Arc<ClientInfo>>, age: Option<u64>| {
                    vec![
                        s("S"),
                        s(&p.user),
                        s(&p.database),
                        s("none"),
                        s(state),
                        s(&spec.host),
                        s(spec.port),
                        None,
                        None,
                        age.map(|a| format_time(now.saturating_sub(a))),
                        client.map(|c| format_time(c.request_time_us())),
                        s(0),
                        s(0),
                        b(false),
                        s(format!("0x{pid:x}")),
                        client.map(|c| format!("0x{:x}", c.id)),
                        s(pid),
                        None,
                        client.map(|c| c.application_name().to_string()),
                        s(0),
                        s(pid),
                        s(&spec.node),
                    ]
                };
            for c in clients.iter().filter(|c| of_pool(c, &p)) {
                if let Some(pid) = c.server_pid() {
                    t.row(row("active", pid, Some(c), None));
                }
            }
            for idle in p.idle_servers() {
                let age = idle.age.as_micros() as u64;
                t.row(row("idle", idle.pid, None, Some(age)));
            }
        }
        t
    }

    fn users(&self) -> Table {
        let config = self.ctx.config();
        let mut t = Table::typed(
            &[
                "name",
                "pool_size",
                "pool_mode",
                "max_user_connections",
                "current_connections",
            ],
            "sssii",
        );
        for (name, u) in &config.users {
            t.row(vec![
                s(name),
                u.pool_size.map(|n| n.to_string()),
                u.pool_mode.map(|m| m.as_str().to_string()),
                s(if u.max_user_connections > 0 {
                    u.max_user_connections
                } else {
                    config.pooler.max_user_connections
                }),
                s(self.ctx.pools.user_connections(name)),
            ]);
        }
        t
    }

    fn lists(&self) -> Table {
        let config = self.ctx.config();
        let pools = self.ctx.pools.all();
        let clients = self.ctx.clients.all();
        let logins = self.ctx.totals.clients.load(Ordering::Relaxed);
        let servers: usize = pools.iter().map(|p| p.counts().1).sum();
        let mut t = Table::typed(&["list", "items"], "si");
        // The console's pseudo-database and pool count, as in SHOW DATABASES and POOLS; no
        // peers and no asynchronous DNS resolver, so those lists are empty.
        for (k, v) in [
            ("databases", config.databases.len() + 1),
            ("users", config.users.len()),
            ("peers", 0),
            ("pools", pools.len() + 1),
            ("peer_pools", 0),
            ("free_clients", 0),
            ("used_clients", clients.len()),
            ("login_clients", logins.saturating_sub(clients.len())),
            ("free_servers", 0),
            ("used_servers", servers),
            ("dns_names", 0),
            ("dns_zones", 0),
            ("dns_queries", 0),
            ("dns_pending", 0),
        ] {
            t.text_row(&[k.to_string(), v.to_string()]);
        }
        t
    }

    fn state(&self) -> Table {
        let paused = self.ctx.gate.is_paused();
        let shutting = self.ctx.shutting_down.load(Ordering::Relaxed);
        let mut t = Table::new(&["active", "paused", "suspended", "shutting_down", "pid"]);
        let yn = |v: bool| if v { "yes" } else { "no" }.to_string();
        t.text_row(&[
            yn(!paused && !shutting),
            yn(paused),
            yn(false),
            yn(shutting),
            std::process::id().to_string(),
        ]);
        t
    }
}

/// The name of the console's pseudo-database in `SHOW POOLS`, `DATABASES`, `CLIENTS` and
/// `STATS`, as PgBouncer shows its own (monitoring tools skip or subtract it by that name).
pub(super) const CONSOLE_DB: &str = "pgbouncer";

/// Types of [`CONNECTION_COLUMNS`] (PgBouncer 1.23's, then `id`), see [`Table::typed`].
const CONNECTION_TYPES: &str = "ssssssisiTTiiississii";

/// Columns shared by `SHOW CLIENTS` and `SHOW SERVERS`: PgBouncer 1.23's names and order,
/// then pgsluice's `id` (the client's or server's id, as `KILL_CLIENT` takes it).
const CONNECTION_COLUMNS: &[&str] = &[
    "type",
    "user",
    "database",
    "replication",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
    "id",
];

fn peer(c: &ClientInfo) -> (Option<String>, u16) {
    match c.peer {
        crate::net::stream::Peer::Tcp(a) => (s(a.ip()), a.port()),
        crate::net::stream::Peer::Unix => (s("unix"), 0),
    }
}

fn of_pool(c: &ClientInfo, p: &Pool) -> bool {
    !c.console && c.database() == &*p.database && c.pool_user() == &*p.user
}

fn sorted_pools(pools: &[Arc<Pool>]) -> Vec<Arc<Pool>> {
    let mut v = pools.to_vec();
    v.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
    v
}

/// The database entry of `name`, if configured (or served by the wildcard entry).
pub(super) fn database<'a>(
    config: &'a Config,
    name: &str,
) -> Option<std::borrow::Cow<'a, DatabaseConfig>> {
    config.database(name)
}
