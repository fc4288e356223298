//! Finding the PostgreSQL server programs: a configured directory, `pg_config --bindir`, or
//! the highest `/usr/lib/postgresql/*/bin`.

use super::error::{HarnessError, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Programs a directory must hold to count as a PostgreSQL bin directory.
const REQUIRED: [&str; 4] = ["initdb", "pg_ctl", "postgres", "psql"];

/// A directory holding initdb, pg_ctl, postgres, psql, pg_basebackup, pg_rewind, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBin {
    dir: PathBuf,
}

impl PgBin {
    /// Uses `dir` as is if it holds the required programs.
    pub fn at(dir: &Path) -> Result<Self> {
        match missing(dir) {
            None => Ok(Self {
                dir: dir.to_path_buf(),
            }),
            Some(why) => Err(HarnessError::NoBinaries {
                tried: vec![format!("{} ({why})", dir.display())],
            }),
        }
    }

    /// Finds the binaries: `configured` first, then `pg_config --bindir`, then the highest
    /// version under `/usr/lib/postgresql/*/bin`. The error names every place tried.
    pub fn find(configured: Option<&Path>) -> Result<Self> {
        let mut tried = Vec::new();
        let mut candidates: Vec<(PathBuf, &str)> = Vec::new();
        if let Some(dir) = configured {
            candidates.push((dir.to_path_buf(), "configured"));
        }
        match pg_config_bindir() {
            Ok(dir) => candidates.push((dir, "pg_config --bindir")),
            Err(why) => tried.push(format!("pg_config --bindir ({why})")),
        }
        for dir in debian_bindirs() {
            candidates.push((dir, "/usr/lib/postgresql/*/bin"));
        }
        for (dir, source) in candidates {
            match missing(&dir) {
                None => return Ok(Self { dir }),
                Some(why) => tried.push(format!("{} from {source} ({why})", dir.display())),
            }
        }
        if !tried.iter().any(|t| t.contains("/usr/lib/postgresql/")) {
            tried.push("/usr/lib/postgresql/*/bin (none)".to_string());
        }
        Err(HarnessError::NoBinaries { tried })
    }

    /// The bin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The full path of one program, e.g. `path("initdb")`.
    pub fn path(&self, program: &str) -> PathBuf {
        self.dir.join(program)
    }

    /// The server's major version as printed by `postgres --version` (e.g. 15).
    pub fn major_version(&self) -> Result<u32> {
        let prog = self.path("postgres");
        let out = Command::new(&prog)
            .arg("--version")
            .output()
            .map_err(|e| HarnessError::io(format!("running {} --version", prog.display()), e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .filter_map(|w| w.split('.').next()?.parse::<u32>().ok())
            .next()
            .ok_or_else(|| HarnessError::Invalid(format!("unexpected version output {text:?}")))
    }
}

/// Why `dir` is not a bin directory, or `None` if it is.
fn missing(dir: &Path) -> Option<String> {
    if !dir.is_dir() {
        return Some("not a directory".to_string());
    }
    let absent: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|p| !dir.join(p).is_file())
        .collect();
    if absent.is_empty() {
        None
    } else {
        Some(format!("missing {}", absent.join(", ")))
    }
}

fn pg_config_bindir() -> std::result::Result<PathBuf, String> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("exit {}", out.status));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dir.is_empty() {
        return Err("empty output".to_string());
    }
    Ok(PathBuf::from(dir))
}

/// `/usr/lib/postgresql/<version>/bin`, highest version first.
fn debian_bindirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e
                .file_name()
                .to_str()?
                .split('.')
                .next()?
                .parse::<u32>()
                .ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_configured_dir_is_named_in_the_error_or_skipped() {
        let bogus = Path::new("/nonexistent/pg/bin");
        match PgBin::find(Some(bogus)) {
            Ok(found) => assert_ne!(found.dir(), bogus),
            Err(e) => assert!(e.to_string().contains("/nonexistent/pg/bin"), "{e}"),
        }
        let err = PgBin::at(bogus)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not a directory"), "{err}");
    }
}
