//! Running PostgreSQL programs as the owner of the data directories: as root that is an
//! unprivileged OS user (`runuser -u postgres --`), otherwise the current user.

use super::error::{HarnessError, Result};
use nix::unistd::{Gid, Uid, User};
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Environment variables that would redirect libpq programs away from what the harness asks.
const PG_ENV: [&str; 14] = [
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGDATA",
    "PGSSLMODE",
    "PGTARGETSESSIONATTRS",
    "PGAPPNAME",
];

/// The default OS user that owns data directories when the harness runs as root.
pub const DEFAULT_OS_USER: &str = "postgres";

#[derive(Debug, Clone, PartialEq, Eq)]
struct OsUser {
    name: String,
    uid: Uid,
    gid: Gid,
}

/// Who runs the server programs and owns their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    user: Option<OsUser>,
}

impl RunAs {
    /// Run everything as the current user.
    pub fn current() -> Self {
        Self { user: None }
    }

    /// As root: switch to `os_user` (default `postgres`), which must exist and not be root.
    /// As anyone else: run directly (`os_user` is then ignored: switching needs root).
    pub fn detect(os_user: Option<&str>) -> Result<Self> {
        if !Uid::effective().is_root() {
            return Ok(Self::current());
        }
        let name = os_user.unwrap_or(DEFAULT_OS_USER);
        let user = User::from_name(name)
            .map_err(|e| HarnessError::OsUser {
                user: name.to_string(),
                message: e.to_string(),
            })?
            .ok_or_else(|| HarnessError::OsUser {
                user: name.to_string(),
                message: "no such user (as root the servers must run as an unprivileged user; \
                          create it, e.g. by installing the postgresql package)"
                    .to_string(),
            })?;
        if user.uid.is_root() {
            return Err(HarnessError::OsUser {
                user: name.to_string(),
                message: "is root; PostgreSQL refuses to run as root".to_string(),
            });
        }
        Ok(Self {
            user: Some(OsUser {
                name: name.to_string(),
                uid: user.uid,
                gid: user.gid,
            }),
        })
    }

    /// The OS user switched to, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.name.as_str())
    }

    /// A command running `program` as the data owner, from `/` (the owner may not be able to
    /// enter the current directory) and without `PG*` variables that would redirect it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = match &self.user {
            Some(u) => {
                let mut c = Command::new(runuser());
                c.args(["-u", &u.name, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.current_dir("/");
        for var in PG_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Gives `path` to the data owner (no-op when running directly).
    pub fn own(&self, path: &Path) -> Result<()> {
        if let Some(u) = &self.user {
            nix::unistd::chown(path, Some(u.uid), Some(u.gid)).map_err(|e| {
                HarnessError::io(format!("chown {} to {}", path.display(), u.name), e.into())
            })?;
        }
        Ok(())
    }

    /// Creates `path` (and missing parents), mode 0700, owned by the data owner.
    pub fn create_dir(&self, path: &Path) -> Result<()> {
        std::fs::create_dir_all(path)
            .map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))?;
        set_mode(path, 0o700)?;
        self.own(path)
    }

    /// Writes a file owned by the data owner with the given mode.
    pub fn write_file(&self, path: &Path, contents: &str, mode: u32) -> Result<()> {
        std::fs::write(path, contents)
            .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
        set_mode(path, mode)?;
        self.own(path)
    }
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| HarnessError::io(format!("chmod {mode:o} {}", path.display()), e))
}

fn runuser() -> &'static str {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("runuser")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_runs_the_program_itself_from_root_dir() {
        let cmd = RunAs::current().command("/bin/true");
        assert_eq!(cmd.get_program(), "/bin/true");
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/")));
    }

    #[test]
    fn as_root_a_missing_user_is_a_clear_error() {
        if !Uid::effective().is_root() {
            return;
        }
        let err = RunAs::detect(Some("no-such-user-pgsluice")).err();
        assert!(matches!(err, Some(HarnessError::OsUser { .. })), "{err:?}");
    }
}
