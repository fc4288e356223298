#!/usr/bin/env bash
# User-space instructions per transaction of a pooler binary, exact and independent of the
# machine's load: the pooler runs under callgrind with instrumentation off, pgbench warms it
# up, then instrumentation is switched on for `pgbench -n -S -c CLIENTS -t TX/CLIENTS` and
# the counts are dumped. Prints `Ir/tx` (callgrind's `summary` + `totals` lines, so twice the
# instructions; compare binaries with the same script) and leaves the dump for
# `callgrind_annotate`.
#
# Usage: benches/callgrind_per_tx.sh BINARY CLIENTS TX [OUT]   (needs valgrind)
# Example: benches/callgrind_per_tx.sh target/release/pgsluice 64 6400 /tmp/cg-64.out
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/scratch_pg.sh
B=$(realpath "$1"); C=$2; TX=$3; OUT=${4:-/tmp/callgrind-per-tx.out}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
WORK=$(mktemp -d /tmp/pgsluice-cg.XXXXXX); chmod 755 "$WORK"
AS=(); [ "$(id -u)" = 0 ] && { chown postgres "$WORK"; AS=(runuser -u postgres --); }
PGPORT=$((20000 + RANDOM % 10000)); SPORT=$((PGPORT + 1))
VP=""
cleanup() {
  [ -n "$VP" ] && { kill "$VP" 2>/dev/null; wait "$VP" 2>/dev/null || true; }
  stop_scratch_pg
  rm -rf "$WORK"
}
trap cleanup EXIT
start_scratch_pg
bench_pgsluice_toml "$WORK/p.toml" $SPORT "${WORKERS:-2}" "enabled = false"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.out" \
  "$B" pooler -c "$WORK/p.toml" 2>"$WORK/vg.log" & VP=$!
for _ in $(seq 150); do "$BIN/pg_isready" -q -h 127.0.0.1 -p $SPORT && break; sleep 0.2; done
pgb() { "$BIN/pgbench" -n -S -c "$C" -j 2 "$@" -h 127.0.0.1 -p $SPORT -U postgres postgres; }
pgb -t 20 >/dev/null 2>&1
callgrind_control -i on $VP >/dev/null
out=$(pgb -t $((TX / C)) 2>&1)
callgrind_control -d $VP >/dev/null 2>&1
n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
dump=$(ls -S "$WORK"/cg.out* | head -1)
ir=$(grep -h '^summary:\|^totals:' "$dump" | awk '{s+=$2} END{print s}')
cp "$dump" "$OUT"
echo "binary=$B clients=$C tx=$n Ir=$ir Ir/tx=$((ir / n)) dump=$OUT"
