//! `pgsluice check-config`: validate a configuration file and the files it names
//! (`auth_file`, `auth_hba_file`, `client_tls_*`, `server_tls_*`, `[control] secret_file`), and
//! list every problem, each value problem followed by its key's doc line and default from the
//! key table.

use crate::auth::hba::Hba;
use crate::config;
use crate::daemon::load_auth_file;
use crate::tls::server::server_config;
use std::path::Path;
use std::process::ExitCode;

/// Prints "ok" and returns 0, or prints each problem and returns 1.
pub fn run(path: &Path) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(config::ConfigError::Invalid { problems, .. }) => {
            for p in problems {
                println!("{p}");
                if let Some(key) = config::keys::find(&p.key) {
                    println!("    {}", explain(key));
                }
            }
            return ExitCode::from(1);
        }
        Err(e) => {
            for line in e.lines() {
                println!("{line}");
            }
            return ExitCode::from(1);
        }
    };
    let mut problems = Vec::new();
    if let Err(e) = load_auth_file(&config) {
        problems.push(e.to_string());
    }
    if let Some(Err(e)) = config.pooler.auth_hba_file.as_deref().map(Hba::load) {
        problems.push(format!("auth_hba_file: {e}"));
    }
    if let Err(e) = server_config(&config.pooler.client_tls) {
        problems.push(e.to_string());
    }
    if let Err(e) = crate::tls::client::client_config(&config.pooler.server_tls) {
        problems.push(e.to_string());
    }
    if let Some(Err(e)) = config
        .control
        .secret_file
        .as_deref()
        .map(crate::net::secret::read)
    {
        problems.push(e.to_string());
    }
    if problems.is_empty() {
        println!("ok");
        return ExitCode::SUCCESS;
    }
    for p in problems {
        println!("{p}");
    }
    ExitCode::from(1)
}

/// `name: doc line (default: ...)`, printed under a problem with that key.
fn explain(key: &config::keys::Key) -> String {
    format!(
        "{}: {} (default: {})",
        key.name,
        key.doc,
        key.doc_default().replace('`', "")
    )
}
