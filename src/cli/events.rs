//! `pgsluice events [--follow] [-n N] [--json]`: the agent's event log from its state directory
//! (or from etcd with `state_store = "etcd"`, each event naming the agent that recorded it).

use crate::agent::store::tail_events;
use crate::config;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Keep printing new events as they are recorded.
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the latest events to print first.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the verb.
pub fn run(a: EventsArgs) -> anyhow::Result<ExitCode> {
    let cfg = config::load(&a.config.config)?;
    if let config::StateStoreConfig::Etcd(e) = &cfg.agent.state_store {
        return etcd_events(&a, e);
    }
    let dir = cfg.agent.state_dir;
    let (events, mut offset) = tail_events(&dir, 0)?;
    let print = |e: &crate::agent::events::Event| {
        if a.json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            println!("{}", e.line());
        }
    };
    events
        .iter()
        .skip(events.len().saturating_sub(a.lines))
        .for_each(print);
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let (more, next) = tail_events(&dir, offset)?;
        more.iter().for_each(print);
        offset = next;
    }
}

/// The same from etcd: every event under the prefix, then new ones by revision.
fn etcd_events(a: &EventsArgs, e: &config::EtcdConfig) -> anyhow::Result<ExitCode> {
    use crate::agent::store::StateStore;
    let store = crate::agent::store_etcd::EtcdStore::read_only(e.settings(), &e.prefix);
    let rt = super::agent::runtime()?;
    let (events, mut cursor) = rt.block_on(store.events(0))?;
    let print = |e: &crate::agent::events::Event| match a.json {
        true => println!("{}", serde_json::to_string(e).unwrap_or_default()),
        false => println!("{}", e.line()),
    };
    events
        .iter()
        .skip(events.len().saturating_sub(a.lines))
        .for_each(print);
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let (more, next) = rt.block_on(store.events(cursor))?;
        more.iter().for_each(print);
        cursor = next;
    }
}
