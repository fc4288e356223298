//! PgBouncer's console contract: SHOW POOLS, STATS, DATABASES, CLIENTS, SERVERS, LISTS, USERS, MEM
//! and CONFIG start with PgBouncer 1.23's columns (names, order, types; read through DBD::Pg,
//! which reports the wire types), pgsluice's own columns come after them, the console's
//! pseudo-database `pgbouncer` is listed, and Munin's PgBouncer plugins report no negative
//! value (Debian's munin-plugins-core and libdbd-pg-perl; scripts/test.sh installs them).

use crate::util::{Fixture, PASSWORD};
use libtest_mimic::Failed;
use std::process::Command;

pub const TESTS: &[(&str, crate::Body)] = &[
    ("console_columns_match_pgbouncer", columns_match),
    ("console_munin_plugins_no_negative", munin_plugins),
];

/// PgBouncer 1.23's columns: `name:type` (DBD::Pg's type names).
const PGBOUNCER: &[(&str, &str)] = &[
    ("POOLS", "database:text,user:text,cl_active:int4,cl_waiting:int4,cl_active_cancel_req:int4,cl_waiting_cancel_req:int4,sv_active:int4,sv_active_cancel:int4,sv_being_canceled:int4,sv_idle:int4,sv_used:int4,sv_tested:int4,sv_login:int4,maxwait:int4,maxwait_us:int4,pool_mode:text"),
    ("STATS", "database:text,total_server_assignment_count:numeric,total_xact_count:numeric,total_query_count:numeric,total_received:numeric,total_sent:numeric,total_xact_time:numeric,total_query_time:numeric,total_wait_time:numeric,avg_server_assignment_count:numeric,avg_xact_count:numeric,avg_query_count:numeric,avg_recv:numeric,avg_sent:numeric,avg_xact_time:numeric,avg_query_time:numeric,avg_wait_time:numeric"),
    ("STATS_TOTALS", "database:text,server_assignment_count:numeric,xact_count:numeric,query_count:numeric,bytes_received:numeric,bytes_sent:numeric,xact_time:numeric,query_time:numeric,wait_time:numeric"),
    ("STATS_AVERAGES", "database:text,server_assignment_count:numeric,xact_count:numeric,query_count:numeric,bytes_received:numeric,bytes_sent:numeric,xact_time:numeric,query_time:numeric,wait_time:numeric"),
    ("TOTALS", "name:text,value:numeric"),
    ("DATABASES", "name:text,host:text,port:int4,database:text,force_user:text,pool_size:int4,min_pool_size:int4,reserve_pool:int4,server_lifetime:int4,pool_mode:text,max_connections:int4,current_connections:int4,paused:int4,disabled:int4"),
    ("CLIENTS", "type:text,user:text,database:text,replication:text,state:text,addr:text,port:int4,local_addr:text,local_port:int4,connect_time:text,request_time:text,wait:int4,wait_us:int4,close_needed:int4,ptr:text,link:text,remote_pid:int4,tls:text,application_name:text,prepared_statements:int4"),
    ("SERVERS", "type:text,user:text,database:text,replication:text,state:text,addr:text,port:int4,local_addr:text,local_port:int4,connect_time:text,request_time:text,wait:int4,wait_us:int4,close_needed:int4,ptr:text,link:text,remote_pid:int4,tls:text,application_name:text,prepared_statements:int4"),
    ("LISTS", "list:text,items:int4"),
    ("MEM", "name:text,size:int4,used:int4,free:int4,memtotal:int4"),
    ("USERS", "name:text,pool_size:text,pool_mode:text,max_user_connections:int4,current_connections:int4"),
    ("CONFIG", "key:text,value:text,default:text,changeable:text"),
];

/// Runs `SHOW what` through DBD::Pg (simple protocol, as Munin does): the columns as
/// `name:type` and the rows (tab-separated, NULL as empty).
fn show(fx: &Fixture, what: &str) -> Result<(String, Vec<Vec<String>>), Failed> {
    let script = r#"
        use DBI;
        my ($port, $pw, $cmd) = @ARGV;
        my $d = DBI->connect("dbi:Pg:host=127.0.0.1;port=$port;dbname=pgbouncer", "app", $pw,
            {pg_server_prepare => 0, RaiseError => 1, PrintError => 0});
        my $s = $d->prepare("SHOW $cmd");
        $s->execute;
        print join(",", map { "$s->{NAME}[$_]:$s->{pg_type}[$_]" } 0 .. $#{$s->{NAME}}), "\n";
        while (my $r = $s->fetchrow_arrayref) { print join("\t", map { $_ // "" } @$r), "\n"; }
    "#;
    let out = Command::new("perl")
        .args(["-e", script, &fx.port.to_string(), PASSWORD, what])
        .output()
        .map_err(|e| format!("perl: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SHOW {what} through DBD::Pg failed (is Debian's libdbd-pg-perl installed?): {stderr}"
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let rows = lines
        .map(|l| l.split('\t').map(String::from).collect())
        .collect();
    Ok((header, rows))
}

fn columns_match(fx: &Fixture) -> Result<(), Failed> {
    for (what, want) in PGBOUNCER {
        let (header, rows) = show(fx, what)?;
        assert!(
            header == *want || header.starts_with(&format!("{want},")),
            "SHOW {what}: PgBouncer's columns first, then pgsluice's\n want {want}\n got  {header}"
        );
        let ncol = header.split(',').count();
        for r in &rows {
            assert_eq!(r.len(), ncol, "SHOW {what}: row {r:?}");
        }
        let types: Vec<&str> = header
            .split(',')
            .map(|c| c.rsplit(':').next().unwrap_or(""))
            .collect();
        for r in &rows {
            for (v, t) in r.iter().zip(&types) {
                if matches!(*t, "int4" | "int8" | "numeric") && !v.is_empty() {
                    let n: f64 = v
                        .parse()
                        .map_err(|_| format!("SHOW {what}: {v:?} is not a {t}"))?;
                    assert!(n >= 0.0, "SHOW {what}: negative {v} in {r:?}");
                }
            }
        }
    }
    // The console's pseudo-database, with this very session active in it.
    let (_, pools) = show(fx, "POOLS")?;
    let admin = pools
        .iter()
        .find(|r| r[0] == "pgbouncer" && r[1] == "pgbouncer");
    let admin = admin.ok_or_else(|| format!("no pgbouncer pool in {pools:?}"))?;
    assert!(
        admin[2].parse::<u32>()? >= 1,
        "cl_active of the console: {admin:?}"
    );
    assert_eq!(admin[15], "statement");
    let (_, dbs) = show(fx, "DATABASES")?;
    assert!(
        dbs.iter()
            .any(|r| r[0] == "pgbouncer" && r[4] == "pgbouncer"),
        "{dbs:?}"
    );
    let (_, clients) = show(fx, "CLIENTS")?;
    assert!(
        clients
            .iter()
            .any(|r| r[1] == "app" && r[2] == "pgbouncer" && r[4] == "active"),
        "{clients:?}"
    );
    let (_, stats) = show(fx, "STATS")?;
    assert!(stats.iter().any(|r| r[0] == "pgbouncer"), "{stats:?}");
    let (_, lists) = show(fx, "LISTS")?;
    let items = |k: &str| lists.iter().find(|r| r[0] == k).map(|r| r[1].clone());
    assert_eq!(
        items("databases").map(|v| v.parse::<usize>()),
        Some(Ok(dbs.len()))
    );
    assert_eq!(
        items("pools").map(|v| v.parse::<usize>()),
        Some(Ok(pools.len()))
    );
    // SHOW MEM: every record has a size, and memtotal is size times used.
    let (_, mem) = show(fx, "MEM")?;
    let row = |k: &str| -> Result<Vec<u64>, Failed> {
        let r = mem
            .iter()
            .find(|r| r[0] == k)
            .ok_or(format!("no {k} in {mem:?}"))?;
        Ok(r[1..]
            .iter()
            .map(|v| v.parse().unwrap_or(u64::MAX))
            .collect())
    };
    for k in ["db_cache", "pool_cache", "client_cache", "server_cache"] {
        let r = row(k)?;
        assert!(r[0] > 0 && r[3] == r[0] * r[1], "SHOW MEM {k}: {r:?}");
    }
    // This console session is one of the clients counted (other tests come and go).
    assert!(row("client_cache")?[1] >= 1, "{mem:?}");
    Ok(())
}

/// Runs Munin's `plugin` (with `config` or not) against the console on `port` as `app`;
/// returns its output.
pub fn munin(port: u16, plugin: &str, config: bool) -> Result<String, Failed> {
    let path = format!("/usr/share/munin/plugins/{plugin}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: install Debian's munin-plugins-core and libdbd-pg-perl"
    );
    let out = Command::new("perl")
        .arg(&path)
        .args(config.then_some("config"))
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGUSER", "app")
        .env("PGPASSWORD", PASSWORD)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "{plugin}: {stderr}"
    );
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// The `(field, value)` pairs of a plugin's values output; every value must be a
/// non-negative number and every field must have a label in `config`.
pub fn munin_values(plugin: &str, values: &str, config: &str) -> Result<Vec<String>, Failed> {
    let mut seen = Vec::new();
    for line in values.lines() {
        let (key, value) = line.split_once(' ').ok_or(format!("{plugin}: {line:?}"))?;
        let field = key
            .strip_suffix(".value")
            .ok_or(format!("{plugin}: {line:?}"))?;
        let v: f64 = value.parse().map_err(|_| format!("{plugin}: {line:?}"))?;
        assert!(v >= 0.0, "{plugin}: negative value in {line:?}\n{values}");
        assert!(
            config.contains(&format!("{field}.label")),
            "{field} not in config:\n{config}"
        );
        seen.push(field.to_string());
    }
    Ok(seen)
}

/// Munin's `pgbouncer_connections` and `pgbouncer_requests` against the console.
fn munin_plugins(fx: &Fixture) -> Result<(), Failed> {
    for plugin in ["pgbouncer_connections", "pgbouncer_requests"] {
        let values = munin(fx.port, plugin, false)?;
        let config = munin(fx.port, plugin, true)?;
        let seen = munin_values(plugin, &values, &config)?;
        if plugin == "pgbouncer_connections" {
            assert_eq!(
                seen,
                ["cl_active", "cl_waiting", "sv_active", "sv_idle"],
                "{values}"
            );
        } else {
            // One field per database, the console excluded (as with PgBouncer).
            assert!(seen.iter().any(|f| f == "app"), "{plugin}:\n{values}");
            assert!(
                !seen.iter().any(|f| f == "pgbouncer"),
                "{plugin}:\n{values}"
            );
        }
    }
    Ok(())
}
