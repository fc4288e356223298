#!/usr/bin/env bash
# End-to-end pooler benchmark: PgBouncer vs pgsluice vs direct PostgreSQL, interleaved
# (A B C, A B C, ...), medians, in one run. Reports tps, average latency and the pooler
# process's own CPU microseconds per transaction (utime+stime from /proc over the run).
#
# Usage: benches/pooler_vs_pgbouncer.sh [seconds-per-run] [repetitions] [client counts...]
# Environment: CASES="name:pgbench-args:mode,..." (default: all), WORKERS=N pgsluice worker threads (default 1, the pooler's default; 0 = one per core), IDLE="1000 10000" idle-client counts (or "none"), SKIP_BUILD=1 to use the
# existing release binary, BASELINE=/path/to/another/pgsluice to run that binary too, interleaved as
# target "baseline" with the same configuration (regression checks of one change);
# SLUICE_KEYS="k = v;..." adds [pooler] keys to pgsluice's configuration only; SLUICE_HOST=unix
# points pgsluice (only) at PostgreSQL's Unix socket instead of TCP; COUNTS=1 adds
# each pooler's system calls and context switches per transaction (perf stat; this VM has no
# hardware counters); PROFILE=C adds a perf profile of each pooler under C clients.
# Example: benches/pooler_vs_pgbouncer.sh 5 3 1 16 64 256
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/scratch_pg.sh
SECS=${1:-5}; REPS=${2:-3}; shift 2 || true
CLIENTS=("${@:-1 16 64}"); read -r -a CLIENTS <<<"${CLIENTS[*]}"
BIN=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | tail -1)
[ -x "$BIN/initdb" ] || BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
command -v pgbouncer >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer; }
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet
PGSLUICE=${PGSLUICE:-$PWD/target/release/pgsluice}

WORK=$(mktemp -d /tmp/pgsluice-bench.XXXXXX); chmod 755 "$WORK"
AS=(); [ "$(id -u)" = 0 ] && { chown postgres "$WORK"; AS=(runuser -u postgres --); }
PGPORT=$((20000 + RANDOM % 10000)); BPORT=$((PGPORT + 1)); SPORT=$((PGPORT + 2)); MPORT=$((PGPORT + 3))
XPORT=$((PGPORT + 4)); XMPORT=$((PGPORT + 5))
ulimit -n 20000 2>/dev/null || true   # before the daemons start: 10k clients need the fds
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_scratch_pg
  rm -rf "$WORK"
}
trap cleanup EXIT

start_scratch_pg

echo '"postgres" ""' >"$WORK/userlist.txt"; chmod 644 "$WORK/userlist.txt"
cat >"$WORK/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$PGPORT dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 12000
logfile = $WORK/pgbouncer.log
unix_socket_dir =
INI
bench_pgsluice_toml "$WORK/pgsluice.toml" $SPORT "${WORKERS:-1}" "listen = \"127.0.0.1:$MPORT\""
chown -R postgres "$WORK" 2>/dev/null || true
# runuser starts it with the soft descriptor limit of 1,024 (10,000 idle clients need more).
"${AS[@]}" bash -c 'ulimit -n 20000; exec pgbouncer -q "$0"' "$WORK/pgbouncer.ini" & PIDS+=($!)
# SLUICE_KEYS="key = value;..." adds [pooler] keys to pgsluice's configuration only (not the
# baseline's): the cost of one setting, interleaved.
cp "$WORK/pgsluice.toml" "$WORK/baseline.src.toml"
# SLUICE_HOST=unix: pgsluice (not the baseline) reaches PostgreSQL over its Unix socket.
[ "${SLUICE_HOST:-}" = unix ] && sed -i "s|^host = \"127.0.0.1\"|host = \"$WORK\"|" "$WORK/pgsluice.toml"
if [ -n "${SLUICE_KEYS:-}" ]; then
  tr ';' '\n' <<<"$SLUICE_KEYS" >"$WORK/extra.keys"
  sed -i "/^\[pooler\]$/r $WORK/extra.keys" "$WORK/pgsluice.toml"
fi
RUST_LOG=warn "$PGSLUICE" pooler -c "$WORK/pgsluice.toml" 2>"$WORK/pgsluice.log" & PIDS+=($!); SLUICE=$!
TARGETS="pgbouncer pgsluice direct"
if [ -n "${BASELINE:-}" ]; then
  sed -e "s/^listen_port = $SPORT/listen_port = $XPORT/" -e "s/:$MPORT/:$XMPORT/" \
    "$WORK/baseline.src.toml" >"$WORK/baseline.toml"
  # BASE_WORKERS=N: the baseline runs with `workers = N` (compare runtime shapes of one binary).
  [ -n "${BASE_WORKERS:-}" ] && sed -i "s/^workers = .*/workers = $BASE_WORKERS/" "$WORK/baseline.toml"
  RUST_LOG=warn "$BASELINE" pooler -c "$WORK/baseline.toml" 2>"$WORK/baseline.log" & PIDS+=($!); BASE=$!
  TARGETS="pgbouncer pgsluice baseline direct"
fi
sleep 1
# The pgbouncer process itself (runuser is its parent when run as root).
BOUNCER=$(pgrep -n -x pgbouncer -P "${PIDS[0]}" 2>/dev/null || echo "${PIDS[0]}")

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# run TARGET PORT PID CLIENTS MODE SCRIPT -> "tps lat_ms cpu_us_per_tx"
run() {
  local port=$1 pid=$2 c=$3 mode=$4 extra=$5 before after out tps lat tx p99
  local logs="$WORK/pgblog.$port"
  rm -f "$logs".*
  before=0; [ "$pid" != 0 ] && before=$(cpu_ticks "$pid")
  local perfpid=""
  if [ -n "${COUNTS:-}" ] && [ "$pid" != 0 ]; then
    perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$pid" -o "$WORK/perf.$port" 2>/dev/null & perfpid=$!
  fi
  out=$("$BIN/pgbench" -n $extra -M "$mode" -c "$c" -j $(( c < 4 ? c : 4 )) -T "$SECS" --log --log-prefix="$logs" -h 127.0.0.1 -p "$port" -U postgres postgres 2>&1 || true)
  after=0; [ "$pid" != 0 ] && after=$(cpu_ticks "$pid")
  [ -n "$perfpid" ] && { kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true; }
  # Per-transaction log: the third field is the latency in microseconds.
  p99=$(cat "$logs".* 2>/dev/null | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END{ if (NR==0) print 0; else printf "%.3f", a[int(NR*0.99)+(NR*0.99>int(NR*0.99))]/1000 }')
  rm -f "$logs".*
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
  tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  local cpu="-"
  [ "$pid" != 0 ] && [ "${tx:-0}" -gt 0 ] && cpu=$(awk -v a="$after" -v b="$before" -v t="$TCK" -v n="$tx" 'BEGIN{printf "%.1f", (a-b)/t*1e6/n}')
  # COUNTS=1: the pooler's system calls and context switches per transaction (perf stat on
  # its PID): steadier than CPU time on a loaded machine.
  if [ -n "$perfpid" ] && [ "${tx:-0}" -gt 0 ]; then
    local sc cs
    sc=$(awk -F, '/sys_enter/{print $1}' "$WORK/perf.$port"); cs=$(awk -F, '/context-switches/{print $1}' "$WORK/perf.$port")
    echo "COUNTS $port $c syscalls/tx=$(awk -v a="${sc:-0}" -v n="$tx" 'BEGIN{printf "%.2f", a/n}') cswitch/tx=$(awk -v a="${cs:-0}" -v n="$tx" 'BEGIN{printf "%.2f", a/n}')" >>"$WORK/counts.log"
  fi
  echo "${tps:-0} ${lat:-0} $cpu ${p99:-0}"
}
vals() { tr ' ' '\n' <<<"$1" | grep -v -- '^-$' | grep . || true; }
median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) {print "-"} else if (NR%2) {print a[(NR+1)/2]} else {printf "%.2f", (a[NR/2]+a[NR/2+1])/2} }'; }

printf "| case | clients | target | tps (median) | avg latency ms | p99 latency ms | pooler CPU us/tx | tps vs PgBouncer | CPU vs PgBouncer |\n|---|---|---|---|---|---|---|---|---|\n"
# "prepared": pgsluice and direct run -M prepared; PgBouncer 1.18 cannot (it aborts with
# 'prepared statement "P_0" already exists' in transaction mode), so it runs -M extended.
[ "${CASES:-}" = none ] && SPECS=() || IFS=, read -r -a SPECS <<<"${CASES:-select-only simple:-S:simple,select-only extended:-S:extended,select-only prepared:-S:prepared,tpcb-like:--:simple}"
for spec in "${SPECS[@]}"; do
  IFS=: read -r name extra mode <<<"$spec"; [ "$extra" = "--" ] && extra=""
  for c in "${CLIENTS[@]}"; do
    [ "$name" = "tpcb-like" ] && [ "$c" != 64 ] && continue
    declare -A T=() L=() U=() Q=()
    for r in $(seq "$REPS"); do
      for t in $TARGETS; do
        case $t in pgbouncer) p=$BPORT; pid=$BOUNCER;; pgsluice) p=$SPORT; pid=$SLUICE;; baseline) p=$XPORT; pid=$BASE;; direct) p=$PGPORT; pid=0;; esac
        m=$mode; [ "$t" = pgbouncer ] && [ "$mode" = prepared ] && m=extended
        read -r tps lat cpu p99 < <(run "$p" "$pid" "$c" "$m" "$extra")
        T[$t]+="$tps "; L[$t]+="$lat "; U[$t]+="$cpu "; Q[$t]+="$p99 "
      done
    done
    bt=$(vals "${T[pgbouncer]}" | median); bu=$(vals "${U[pgbouncer]}" | median)
    for t in $TARGETS; do
      mt=$(vals "${T[$t]}" | median); ml=$(vals "${L[$t]}" | median)
      mu=$(vals "${U[$t]}" | median)
      rt=$(awk -v a="$mt" -v b="$bt" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-"}')
      ru="-"; [ "$mu" != "-" ] && ru=$(awk -v a="$mu" -v b="$bu" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-"}')
      mq=$(vals "${Q[$t]}" | median)
      echo "| $name | $c | $t | $mt | $ml | $mq | $mu | $rt | $ru |"
    done
    if [ -s "$WORK/counts.log" ]; then
      for t in $TARGETS; do
        case $t in pgbouncer) p=$BPORT;; pgsluice) p=$SPORT;; baseline) p=$XPORT;; *) continue;; esac
        for k in syscalls cswitch; do
          m=$(grep "^COUNTS $p " "$WORK/counts.log" | sed -n "s/.* $k\/tx=\([^ ]*\).*/\1/p" | median)
          printf "%s %s=%s " "$t" "$k/tx" "$m"
        done
        echo
      done
      rm -f "$WORK/counts.log"
    fi
    unset T L U Q
  done
done

# Idle clients: RSS growth per idle client and SELECT 1 latency with them attached.
if [ "${IDLE:-1000 10000}" != "none" ]; then
  ulimit -n 20000 2>/dev/null || true
  cargo bench --quiet --bench idle_clients --no-run 2>/dev/null
  printf "\n| idle clients | target | bytes per idle client | kept per client 3 s after they left | connect s | SELECT 1 p50 ms | p99 ms |\n|---|---|---|---|---|---|---|\n"
  for n in ${IDLE:-1000 10000}; do
    for t in pgbouncer pgsluice; do
      case $t in pgbouncer) p=$BPORT; pid=$BOUNCER;; pgsluice) p=$SPORT; pid=$SLUICE;; esac
      line=$(cargo bench --quiet --bench idle_clients -- 127.0.0.1 "$p" "$pid" "$n" 2>&1 | grep '^clients=' || echo "failed")
      get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$line"; }
      echo "| $n | $t | $(get bytes_per_idle_client) | $(get bytes_kept_per_client) | $(get connect_s) | $(get select1_p50_ms) | $(get select1_p99_ms) |"
    done
  done
fi

# PROFILE=C: one more `-S` run of C clients through each pooler under `perf record -g` (SECS
# seconds): the share of the pooler's samples in the kernel, in its own code and in
# libraries, and its hottest symbols (user and kernel).
if [ -n "${PROFILE:-}" ]; then
  for t in pgbouncer pgsluice; do
    case $t in pgbouncer) p=$BPORT; pid=$BOUNCER;; pgsluice) p=$SPORT; pid=$SLUICE;; esac
    perf record -q -g -p "$pid" -o "$WORK/perf.$t" >/dev/null 2>&1 & rec=$!
    sleep 0.5
    "$BIN/pgbench" -n -S -c "$PROFILE" -j 4 -T "$SECS" -h 127.0.0.1 -p "$p" -U postgres postgres >/dev/null 2>&1 || true
    kill -INT "$rec"; wait "$rec" 2>/dev/null || true
    printf "\nperf, %s, -S, %s clients: samples by object\n" "$t" "$PROFILE"
    perf report -i "$WORK/perf.$t" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -6 || true
    echo "hottest symbols"
    perf report -i "$WORK/perf.$t" --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -12 || true
  done
fi
