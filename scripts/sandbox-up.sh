#!/usr/bin/env bash
# The README's first command: installs what building pgsluice and running its sandbox need
# when it is missing (protoc for the etcd client crate, the PostgreSQL 15 server with contrib,
# etcd for `--agents N` with N > 1), then runs `pgsluice sandbox up` with the arguments given.
#
# Installing needs root on Debian 12 (or similar) with apt; without root the script names the
# missing packages and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# jemalloc, the binary's default allocator, is built from source (make, cc).
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
ls /usr/lib/postgresql/15/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql-15)
ls /usr/share/postgresql/15/extension/pg_prewarm.control >/dev/null 2>&1 || need_apt+=(postgresql-contrib-15)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client-15)
case " $* " in
  *" --agents 1 "*) ;;
  *" --agents "*) command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server) ;;
esac

. scripts/apt-need.sh scripts/sandbox-up.sh

exec cargo run --release --quiet -- sandbox up "$@"
