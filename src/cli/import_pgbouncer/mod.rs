//! `pgsluice import-pgbouncer PGBOUNCER.INI [--userlist FILE] [-o pgsluice.toml]`: read a
//! PgBouncer configuration, write the equivalent pgsluice TOML, report every key's fate.
//!
//! `parser` reads the ini and connection strings, `keys` is the table of `[pgbouncer]`
//! settings, `mapping` and `entries` build the TOML (`output`) and the `report`.

mod entries;
mod keys;
mod mapping;
mod output;
mod parser;
mod report;

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// `import-pgbouncer` arguments.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// PgBouncer's configuration file (pgbouncer.ini).
    pub ini: PathBuf,
    /// The userlist to use instead of the ini's `auth_file`.
    #[arg(long)]
    pub userlist: Option<PathBuf>,
    /// Where to write the pgsluice configuration (default: standard output, and the report
    /// goes to standard error).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

/// Imports; exit code 0 when the written file passes validation, 1 when it does not (the
/// file is still written, and the problems are printed).
pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let ini = std::path::absolute(&args.ini).unwrap_or_else(|_| args.ini.clone());
    let entries = parser::read_ini(&ini)?;
    let imported = mapping::import(&ini, &entries, args.userlist.as_deref());
    let text = imported.doc.render();
    let report = imported.report.render();
    match &args.output {
        Some(path) => {
            write_private(path, &text).with_context(|| format!("writing {}", path.display()))?;
            print!("{report}");
            println!("wrote {}", path.display());
        }
        None => {
            print!("{text}");
            eprint!("{report}");
        }
    }
    let shown = args
        .output
        .as_ref()
        .map_or("the output".to_string(), |p| p.display().to_string());
    match crate::config::from_str(&text, &shown) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("the written configuration does not pass check-config yet:");
            for line in e.lines() {
                eprintln!("  {line}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// Writes the file readable by its owner only: it may hold passwords of `[databases]` entries.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}
