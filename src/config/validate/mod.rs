//! Second stage of loading: [`RawConfig`] -> [`Config`], collecting every problem with its key.
//!
//! Defaults and bounds come from the key table (`config/keys`) through the [`check::Checker`];
//! one file per section holds the conversions and the checks that involve several keys.

mod agent;
mod check;
mod cluster;
mod databases;
mod pooler;

use super::model::*;
use super::raw::{RawConfig, RawControl};
use super::Problem;
pub use check::{parse_bytes, parse_duration};

/// Validates the whole file.
pub fn validate(raw: &RawConfig) -> Result<Config, Vec<Problem>> {
    let mut c = check::Checker::default();
    let pooler = pooler::pooler(&mut c, &raw.pooler);
    let cluster = raw.cluster.as_ref().map(|rc| cluster::cluster(&mut c, rc));
    let databases = databases::databases(&mut c, &raw.databases, &pooler, cluster.as_ref());
    let users = databases::users(&mut c, &raw.users);
    let agent = agent::agent(&mut c, &raw.agent, cluster.as_ref());
    if let Some(db) = pooler.auth_query.as_ref().and_then(|a| a.dbname.as_ref()) {
        if !databases.contains_key(db) && !databases.contains_key(WILDCARD_DATABASE) {
            c.bad(
                "pooler.auth_dbname",
                format!("no database {db:?}"),
                "name a [databases] entry",
            );
        }
    }
    let metrics = MetricsConfig {
        enabled: c.flag("metrics.enabled", raw.metrics.enabled),
        listen: c.socket("metrics.listen", &raw.metrics.listen),
    };
    if metrics.enabled && metrics.listen == pooler.listen {
        c.bad(
            "metrics.listen",
            format!("{} is also pooler's listen address", metrics.listen),
            "use another port",
        );
    }
    let control = control(&mut c, &raw.control);
    if c.problems.is_empty() {
        Ok(Config {
            pooler,
            databases,
            users,
            cluster,
            agent,
            metrics,
            control,
        })
    } else {
        Err(c.problems)
    }
}

/// `[control]`: the control-plane secret.
fn control(c: &mut check::Checker, r: &RawControl) -> ControlConfig {
    if r.secret_file.as_deref() == Some("") {
        c.bad(
            "control.secret_file",
            "must not be empty",
            "name a file holding the secret, or leave the key out",
        );
    }
    ControlConfig {
        secret_file: c.path("control.secret_file", &r.secret_file),
        protect_reads: c.flag("control.protect_reads", r.protect_reads),
    }
}
