#!/usr/bin/env bash
# What each part of an idle client costs: the pooler runs under valgrind's massif, CLIENTS
# idle clients log in (trust) and stay, and a detailed heap snapshot is taken while they are
# idle. Prints each allocation site with its bytes per client (benches/massif_sites.py).
# Needs a glibc build: massif sees malloc, not jemalloc's own pages:
#   cargo build --release --no-default-features && cp target/release/pgsluice /tmp/pgsluice-glibc
#
# Usage: benches/idle_massif.sh BINARY [CLIENTS]   (needs valgrind and python3)
# Example: benches/idle_massif.sh /tmp/pgsluice-glibc 2000
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/scratch_pg.sh
B=$(realpath "$1"); N=${2:-2000}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
WORK=$(mktemp -d /tmp/pgsluice-massif.XXXXXX); chmod 755 "$WORK"
AS=(); [ "$(id -u)" = 0 ] && { chown postgres "$WORK"; AS=(runuser -u postgres --); }
PGPORT=$((20000 + RANDOM % 10000)); SPORT=$((PGPORT + 1))
VP=""; HP=""
cleanup() {
  [ -n "$HP" ] && { kill "$HP" 2>/dev/null; wait "$HP" 2>/dev/null || true; }
  [ -n "$VP" ] && { kill -INT "$VP" 2>/dev/null; wait "$VP" 2>/dev/null || true; }
  stop_scratch_pg
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n $((N + 1000))
start_scratch_pg
bench_pgsluice_toml "$WORK/p.toml" $SPORT 1 "enabled = false"
RUST_LOG=warn valgrind --tool=massif --vgdb=yes --depth=40 --threshold=0.3 \
  --massif-out-file="$WORK/massif.end" "$B" pooler -c "$WORK/p.toml" >"$WORK/vg.log" 2>&1 & VP=$!
for _ in $(seq 1 100); do
  python3 - "$SPORT" <<'PY' 2>/dev/null && break
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
PY
  sleep 0.2
done
python3 benches/massif_sites.py hold "$SPORT" "$N" 60 >"$WORK/hold.out" & HP=$!
for _ in $(seq 1 600); do grep -q held "$WORK/hold.out" 2>/dev/null && break; sleep 0.5; done
grep -q held "$WORK/hold.out" || { echo "the clients did not all log in" >&2; exit 1; }
sleep 3
vgdb --pid="$VP" detailed_snapshot "$WORK/massif.idle" >/dev/null
python3 benches/massif_sites.py sites "$WORK/massif.idle" "$N"
