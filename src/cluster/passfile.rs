//! A private libpq password file for one PostgreSQL program run (pg_basebackup, pg_rewind):
//! the password reaches the program through `PGPASSFILE`, never its command line (which `ps`
//! shows to every user). The file lives in a fresh directory (mode 0700) owned by whoever runs
//! the program, is mode 0600, and is deleted with its directory when the value is dropped.

use super::error::{HarnessError, Result};
use super::runas::{set_mode, RunAs};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The password file of one run; dropping it deletes the file.
#[derive(Debug)]
pub struct PassFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl PassFile {
    /// A file holding `password` for every host, port, database and user (the conninfo the
    /// program gets names them), readable only by `run_as`'s user.
    pub fn new(run_as: &RunAs, password: &str) -> Result<PassFile> {
        if password.contains(['\n', '\r']) {
            return Err(HarnessError::Invalid(
                "a password with a line break cannot be handed to libpq programs".into(),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("pgsluice-pgpass-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating a private directory", e))?;
        set_mode(dir.path(), 0o700)?;
        run_as.own(dir.path())?;
        let path = dir.path().join("pgpass");
        run_as.write_file(&path, &format!("*:*:*:*:{}\n", escape(password)), 0o600)?;
        Ok(PassFile { _dir: dir, path })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Points `cmd` at the file (`PGPASSFILE`).
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("PGPASSFILE", &self.path);
    }
}

/// `\` and `:` escaped as `.pgpass` requires.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' || c == ':' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A password file when there is a password.
pub fn for_password(run_as: &RunAs, password: Option<&str>) -> Result<Option<PassFile>> {
    password.map(|p| PassFile::new(run_as, p)).transpose()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_is_private_escaped_and_deleted_on_drop() {
        let run_as = RunAs::current();
        let f = PassFile::new(&run_as, "pa:ss\\word").unwrap();
        let path = f.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "*:*:*:*:pa\\:ss\\\\word\n"
        );
        let mut cmd = Command::new("true");
        f.apply(&mut cmd);
        let env: Vec<_> = cmd.get_envs().collect();
        assert_eq!(
            env,
            vec![(std::ffi::OsStr::new("PGPASSFILE"), Some(path.as_os_str()))]
        );
        drop(f);
        assert!(!path.exists(), "deleted with its value");
        assert!(!path.parent().unwrap().exists());
        assert!(PassFile::new(&run_as, "two\nlines").is_err());
    }
}
