#!/usr/bin/env bash
# The project's test command (README, CI): install or check what the tests need, then run
# `cargo fmt --check`, `cargo clippy --all-targets -D warnings` and `cargo test --locked`.
#
# Installing needs root on Debian 12 (or similar) with apt. Without root, the script lists the
# missing packages and stops, so that no test fails later for a missing program.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# The build itself: etcd-client compiles etcd's .proto files with protoc.
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# jemalloc, the binary's default allocator, is built from source by tikv-jemalloc-sys (make, cc).
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v pg_config >/dev/null 2>&1 || need_apt+=(postgresql-common)
ls /usr/lib/postgresql/15/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql-15)
ls /usr/share/postgresql/15/extension/pg_prewarm.control >/dev/null 2>&1 || need_apt+=(postgresql-contrib-15)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client-15)
command -v pgbench >/dev/null 2>&1 || need_apt+=(postgresql-client-15)
# The agent's etcd tests start a local etcd and use etcdctl.
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
# The partition tests (tests/partition) build network namespaces (root) and start PostgreSQL
# inside them as its OS user with setpriv.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
# promtool checks the /metrics output and the alerting rules in monitoring/; systemd-analyze
# verifies the units in systemd/; dpkg-deb builds the package in packaging/.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || need_apt+=(dpkg)
# The console contract test runs Munin's PgBouncer plugins and reads types through DBD::Pg.
[ -e /usr/share/munin/plugins/pgbouncer_connections ] || need_apt+=(munin-plugins-core)
perl -MDBD::Pg -e1 >/dev/null 2>&1 || need_apt+=(libdbd-pg-perl)
# The import round trip serves the same pgbouncer.ini with PgBouncer itself.
new_pgbouncer=no
command -v pgbouncer >/dev/null 2>&1 || { need_apt+=(pgbouncer); new_pgbouncer=yes; }
# The prepared-statement driver test (tests/drivers/prepared_drivers.py) runs python3.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)

. scripts/apt-need.sh scripts/test.sh
# The tests start their own PgBouncer; the service Debian's package starts (localhost:6432,
# pgsluice's default port too) is not wanted.
if [ "$new_pgbouncer" = yes ] && [ -d /run/systemd/system ]; then
  systemctl disable --now pgbouncer.service >/dev/null 2>&1 || true
fi

# Python drivers for tests/drivers/prepared_drivers.py.
if ! python3 -c 'import psycopg, asyncpg' >/dev/null 2>&1; then
  # Debian 12 marks the system Python as externally managed; the drivers go beside it.
  python3 -m pip install -q --break-system-packages "psycopg[binary]" asyncpg 2>/dev/null \
    || python3 -m pip install -q "psycopg[binary]" asyncpg
fi

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
