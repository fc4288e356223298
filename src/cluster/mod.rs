//! Throwaway PostgreSQL clusters from the installed binaries: a primary plus streaming
//! standbys on free loopback ports, for tests, the sandbox and the agent's tests.
//!
//! Synchronous on purpose (std::process): tests call it from `main` or a `#[test]` without a
//! runtime. As root, every server program runs as the `postgres` OS user (see [`RunAs`]).
//!
//! | file | job |
//! |---|---|
//! | `bins` | find initdb, pg_ctl, ... ([`PgBin`]) |
//! | `runas` | run programs as the data owner, chown ([`RunAs`]) |
//! | `ports` | free loopback ports, never handed out twice per process |
//! | `process` | run a program, errors with stderr tail; `/proc` and kill helpers |
//! | `conf` | edit postgresql.conf, quote conninfo and SQL |
//! | `passfile` | a private `PGPASSFILE` per program run: passwords never in argv ([`PassFile`]) |
//! | `node` | one server: start, stop, kill9, promote, psql ([`LocalNode`]) |
//! | `spec` | [`ClusterSpec`] (what to build), [`ClusterLayout`] (what was built) |
//! | `local` | [`LocalCluster`]: build, accessors, stop on drop |
//!
//! ```no_run
//! use pgsluice::cluster::{ClusterSpec, LocalCluster};
//! let cluster = LocalCluster::start(ClusterSpec::new(2))?;
//! cluster.primary().psql("postgres", "create table t(x int); insert into t values (1)")?;
//! cluster.wait_replicated(std::time::Duration::from_secs(10))?;
//! assert_eq!(cluster.standbys()[0].psql("postgres", "select x from t")?, "1");
//! # Ok::<(), pgsluice::cluster::HarnessError>(())
//! ```

mod bins;
pub mod conf;
mod error;
mod local;
mod node;
pub mod passfile;
pub mod ports;
pub mod process;
mod runas;
mod spec;

pub use bins::PgBin;
pub use error::{HarnessError, Result};
pub use local::LocalCluster;
pub use node::{LocalNode, StopMode};
pub use passfile::PassFile;
pub use runas::{set_mode, RunAs, DEFAULT_OS_USER};
pub use spec::{ClusterLayout, ClusterSpec, DatabaseSpec, NodeLayout};
