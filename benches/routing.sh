#!/usr/bin/env bash
# Read routing benchmark: select-only pgbench through one pgsluice process, database `auto`
# (policy auto over a primary and 2 streaming standbys) vs database `primary` (policy primary,
# same cluster, same pooler), and PostgreSQL's primary directly; interleaved runs, medians.
# Reports tps, average latency, the pooler's CPU microseconds per transaction, and where the
# `auto` transactions ran (xact_commit deltas per node).
#
# Usage: benches/routing.sh [seconds-per-run] [repetitions] [client counts...]
# Environment: SKIP_BUILD=1 to use the existing release binary.
# Example: benches/routing.sh 10 3 1 16 64
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}; REPS=${2:-3}; shift 2 || true
CLIENTS=("${@:-1 16 64}"); read -r -a CLIENTS <<<"${CLIENTS[*]}"
BIN=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | tail -1)
[ -x "$BIN/initdb" ] || BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
PGSLUICE=$PWD/target/release/pgsluice

WORK=$(mktemp -d /tmp/pgsluice-routing.XXXXXX); chmod 755 "$WORK"
AS=(); [ "$(id -u)" = 0 ] && { chown postgres "$WORK"; AS=(runuser -u postgres --); }
BASE=$((20000 + RANDOM % 10000))
PORTS=($BASE $((BASE + 1)) $((BASE + 2))); SPORT=$((BASE + 3)); MPORT=$((BASE + 4))
SLUICE=0
cleanup() {
  [ "$SLUICE" != 0 ] && kill "$SLUICE" 2>/dev/null || true
  for i in 0 1 2; do "${AS[@]}" "$BIN/pg_ctl" -D "$WORK/n$i" -m immediate stop >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

"${AS[@]}" "$BIN/initdb" -D "$WORK/n0" -U postgres --auth=trust >/dev/null
cat >>"$WORK/n0/postgresql.conf" <<CONF
port = ${PORTS[0]}
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
max_connections = 300
shared_buffers = 128MB
fsync = off
wal_level = replica
max_wal_senders = 10
hot_standby = on
CONF
"${AS[@]}" "$BIN/pg_ctl" -D "$WORK/n0" -l "$WORK/n0.log" -w start >/dev/null
"$BIN/pgbench" -i -q -s 10 -h 127.0.0.1 -p "${PORTS[0]}" -U postgres postgres >/dev/null 2>&1
for i in 1 2; do
  "${AS[@]}" "$BIN/pg_basebackup" -h 127.0.0.1 -p "${PORTS[0]}" -U postgres -D "$WORK/n$i" -R -X stream -c fast
  echo "port = ${PORTS[$i]}" >>"$WORK/n$i/postgresql.auto.conf"
  "${AS[@]}" "$BIN/pg_ctl" -D "$WORK/n$i" -l "$WORK/n$i.log" -w start >/dev/null
done

cat >"$WORK/pgsluice.toml" <<TOML
[pooler]
listen_port = $SPORT
auth_type = "trust"
pool_mode = "transaction"
default_pool_size = 20
max_client_conn = 1000
log_connections = false
log_disconnections = false
stats_period = 0
probe_interval = "500ms"
[databases.auto]
dbname = "postgres"
policy = "auto"
[databases.primary]
dbname = "postgres"
[users.postgres]
[cluster]
superuser = "postgres"
[[cluster.nodes]]
name = "n0"
port = ${PORTS[0]}
[[cluster.nodes]]
name = "n1"
port = ${PORTS[1]}
[[cluster.nodes]]
name = "n2"
port = ${PORTS[2]}
[metrics]
listen = "127.0.0.1:$MPORT"
TOML
RUST_LOG=warn "$PGSLUICE" pooler -c "$WORK/pgsluice.toml" 2>"$WORK/pgsluice.log" & SLUICE=$!
sleep 2

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
commits() { "$BIN/psql" -XAtq -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "select xact_commit from pg_stat_database where datname = 'postgres'"; }

# run PORT DB PID CLIENTS -> "tps lat_ms cpu_us_per_tx"
run() {
  local port=$1 db=$2 pid=$3 c=$4 before=0 after=0 out tps lat tx cpu="-"
  [ "$pid" != 0 ] && before=$(cpu_ticks "$pid")
  out=$("$BIN/pgbench" -n -S -M simple -c "$c" -j $(( c < 4 ? c : 4 )) -T "$SECS" -h 127.0.0.1 -p "$port" -U postgres "$db" 2>&1 || true)
  [ "$pid" != 0 ] && after=$(cpu_ticks "$pid")
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
  tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  [ "$pid" != 0 ] && [ "${tx:-0}" -gt 0 ] && cpu=$(awk -v a="$after" -v b="$before" -v t="$TCK" -v n="$tx" 'BEGIN{printf "%.1f", (a-b)/t*1e6/n}')
  echo "${tps:-0} ${lat:-0} $cpu"
}
vals() { tr ' ' '\n' <<<"$1" | grep -v -- '^-$' | grep . || true; }
median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) {print "-"} else if (NR%2) {print a[(NR+1)/2]} else {printf "%.2f", (a[NR/2]+a[NR/2+1])/2} }'; }

declare -A SHARE=()
printf "| clients | target | tps (median) | avg latency ms | pooler CPU us/tx | tps vs policy primary | latency vs policy primary |\n|---|---|---|---|---|---|---|\n"
for c in "${CLIENTS[@]}"; do
  declare -A T=() L=() U=()
  for r in $(seq "$REPS"); do
    for t in primary auto direct; do
      case $t in
        direct) read -r tps lat cpu < <(run "${PORTS[0]}" postgres 0 "$c");;
        auto)
          b=(); for i in 0 1 2; do b+=("$(commits "${PORTS[$i]}")"); done
          read -r tps lat cpu < <(run "$SPORT" auto "$SLUICE" "$c")
          for i in 0 1 2; do SHARE[$i]=$(( ${SHARE[$i]:-0} + $(commits "${PORTS[$i]}") - ${b[$i]} )); done;;
        *) read -r tps lat cpu < <(run "$SPORT" "$t" "$SLUICE" "$c");;
      esac
      T[$t]+="$tps "; L[$t]+="$lat "; U[$t]+="$cpu "
    done
  done
  bt=$(vals "${T[primary]}" | median); bl=$(vals "${L[primary]}" | median)
  for t in primary auto direct; do
    mt=$(vals "${T[$t]}" | median); ml=$(vals "${L[$t]}" | median); mu=$(vals "${U[$t]}" | median)
    rt=$(awk -v a="$mt" -v b="$bt" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-"}')
    rl=$(awk -v a="$ml" -v b="$bl" 'BEGIN{ if (b>0) printf "%+.3f ms", a-b; else print "-"}')
    echo "| $c | $t | $mt | $ml | $mu | $rt | $rl |"
  done
  unset T L U
done
echo
echo "Transactions of the auto runs per node (xact_commit deltas, probes included):" \
  "n0 (primary) ${SHARE[0]}, n1 ${SHARE[1]}, n2 ${SHARE[2]}"
