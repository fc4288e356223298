#!/usr/bin/env bash
# io_uring against epoll at the relay level (issue 17 item 3): starts a throwaway PostgreSQL,
# the single-threaded variants of benches/uring_relay.rs (tokio/epoll; a hand-held io_uring with
# receives re-armed per burst; the same with multishot receives into provided buffers; one
# server connection per client, bytes forwarded verbatim) and PgBouncer 1.18 in session mode for
# scale, then runs `pgbench -n -S` (simple protocol) through each, interleaved (A B C, A B C,
# ...), and prints medians per target: tps, average latency, the relay process's CPU
# microseconds per transaction (utime+stime from /proc over the run; "in kernel" is stime's
# share), and, from more interleaved rounds under `perf stat` (its tracepoint counting costs
# CPU, so it is kept out of the timed rounds), system calls and context switches per transaction.
#
# Usage: benches/uring_vs_epoll.sh [seconds-per-run] [repetitions] [client counts...]
# Environment: TARGETS="epoll uring uring-multi pgbouncer direct" (default: all), COUNT_REPS=N perf
# rounds (default 1, 0 = none), RELAY=/path/to/uring_relay to skip `cargo bench --no-run`,
# KEEP=1 to keep the work directory (logs).
# Example: benches/uring_vs_epoll.sh 5 3 1 16 64
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/scratch_pg.sh
SECS=${1:-5}; REPS=${2:-3}; shift 2 || true
CLIENTS=("${@:-1 16 64}"); read -r -a CLIENTS <<<"${CLIENTS[*]}"
TARGETS=${TARGETS:-epoll uring uring-multi pgbouncer direct}
COUNT_REPS=${COUNT_REPS:-1}
BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
command -v pgbouncer >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer; }
[ "$COUNT_REPS" = 0 ] || command -v perf >/dev/null || { echo "perf is needed for the counts (or COUNT_REPS=0)" >&2; exit 1; }
if [ -z "${RELAY:-}" ]; then
  RELAY=$(cargo bench --bench uring_relay --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
  [ -x "$RELAY" ] || { echo "could not build benches/uring_relay.rs" >&2; exit 1; }
fi

WORK=$(mktemp -d /tmp/pgsluice-uring.XXXXXX); chmod 755 "$WORK"
AS=(); [ "$(id -u)" = 0 ] && { chown postgres "$WORK"; AS=(runuser -u postgres --); }
PGPORT=$((20000 + RANDOM % 10000)); BPORT=$((PGPORT + 1)); EPORT=$((PGPORT + 2)); UPORT=$((PGPORT + 3)); MPORT=$((PGPORT + 4))
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_scratch_pg
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

start_scratch_pg

# PgBouncer in session mode: like the relays, one server connection per client.
echo '"postgres" ""' >"$WORK/userlist.txt"; chmod 644 "$WORK/userlist.txt"
cat >"$WORK/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$PGPORT dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = session
default_pool_size = 250
max_client_conn = 1000
logfile = $WORK/pgbouncer.log
unix_socket_dir =
INI
chown -R postgres "$WORK" 2>/dev/null || true
"${AS[@]}" pgbouncer -q "$WORK/pgbouncer.ini" & PIDS+=($!); BOUNCER_PARENT=$!
"$RELAY" epoll $EPORT "127.0.0.1:$PGPORT" 2>"$WORK/epoll.log" & PIDS+=($!); EPOLL=$!
"$RELAY" uring $UPORT "127.0.0.1:$PGPORT" 2>"$WORK/uring.log" & PIDS+=($!); URING=$!
"$RELAY" uring-multi $MPORT "127.0.0.1:$PGPORT" 2>"$WORK/uring-multi.log" & PIDS+=($!); MULTI=$!
for _ in $(seq 50); do
  [ "$(cat "$WORK"/epoll.log "$WORK"/uring*.log | grep -c listening)" = 3 ] && break; sleep 0.1
done
sleep 0.5
# The pgbouncer process itself (runuser is its parent when run as root).
BOUNCER=$(pgrep -n -x pgbouncer -P "$BOUNCER_PARENT" 2>/dev/null || echo "$BOUNCER_PARENT")

port_of() { case $1 in epoll) echo $EPORT;; uring) echo $UPORT;; uring-multi) echo $MPORT;; pgbouncer) echo $BPORT;; direct) echo $PGPORT;; esac; }
pid_of() { case $1 in epoll) echo $EPOLL;; uring) echo $URING;; uring-multi) echo $MULTI;; pgbouncer) echo $BOUNCER;; direct) echo 0;; esac; }

# Every target must relay a query, a 4 MB answer, an 8 MB COPY read slowly and a 4 MB query intact
# (the script fails loudly otherwise) before anything is measured: the large ones cross many
# buffers each way, and the slow reader makes the relay wait for a full socket.
BIG=$(head -c 3000000 /dev/urandom | base64 -w0)
for t in $TARGETS; do
  q() { "$BIN/psql" -h 127.0.0.1 -p "$(port_of "$t")" -U postgres -d postgres -At "$@" 2>&1 || true; }
  got=$(q -c "SELECT 40 + 2")
  [ "$got" = 42 ] || { echo "target $t did not answer SELECT 40 + 2: $got" >&2; cat "$WORK"/*.log >&2; exit 1; }
  got=$(q -c "SELECT repeat('x', 4000000)" | md5sum)
  [ "$got" = "$(head -c 4000000 /dev/zero | tr '\0' x | (cat; echo) | md5sum)" ] || { echo "target $t mangled a 4 MB answer" >&2; exit 1; }
  # COPY streams through psql to a reader that starts late: the relay meets a full socket.
  got=$(q -c "COPY (SELECT repeat('x', 1000) FROM generate_series(1, 8000)) TO STDOUT" | (sleep 1; md5sum))
  [ "$got" = "$(yes "$(head -c 1000 /dev/zero | tr '\0' x)" | head -8000 | md5sum)" ] || { echo "target $t mangled a slowly read COPY" >&2; exit 1; }
  got=$(printf "SELECT md5('%s');\n" "$BIG" | q)
  [ "$got" = "$(printf '%s' "$BIG" | md5sum | cut -d' ' -f1)" ] || { echo "target $t mangled a 4 MB query: $got" >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sys_ticks() { awk '{print $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# pgb PORT CLIENTS -> pgbench's output
pgb() {
  "$BIN/pgbench" -n -S -M simple -c "$2" -j $(( $2 < 4 ? $2 : 4 )) -T "$SECS" -h 127.0.0.1 -p "$1" -U postgres postgres 2>&1 || true
}
field() { sed -n "s/$1/\1/p"; }

# timed TARGET CLIENTS -> "tps latency_ms cpu_us_per_tx kernel_percent_of_it"
timed() {
  local pid out before=0 after=0 sbefore=0 safter=0 tx cpu="-" kern="-"
  pid=$(pid_of "$1")
  [ "$pid" != 0 ] && { before=$(cpu_ticks "$pid"); sbefore=$(sys_ticks "$pid"); }
  out=$(pgb "$(port_of "$1")" "$2")
  [ "$pid" != 0 ] && { after=$(cpu_ticks "$pid"); safter=$(sys_ticks "$pid"); }
  tx=$(field '^number of transactions actually processed: \([0-9]*\).*' <<<"$out")
  [ "$pid" != 0 ] && [ "${tx:-0}" -gt 0 ] && cpu=$(awk -v a="$after" -v b="$before" -v t="$TCK" -v n="$tx" 'BEGIN{printf "%.1f", (a-b)/t*1e6/n}')
  [ "$pid" != 0 ] && [ "$after" -gt "$before" ] && kern=$(awk -v a="$after" -v b="$before" -v x="$safter" -v y="$sbefore" 'BEGIN{printf "%.0f", (x-y)*100/(a-b)}')
  echo "$(field '^tps = \([0-9]*\).*' <<<"$out" | head -1) $(field '^latency average = \([0-9.]*\) ms' <<<"$out") $cpu $kern"
}

# counted TARGET CLIENTS -> "syscalls_per_tx context_switches_per_tx" (perf stat on the PID)
counted() {
  local pid perfpid out tx sc cs
  pid=$(pid_of "$1")
  perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$pid" -o "$WORK/perf.out" 2>/dev/null & perfpid=$!
  sleep 0.2
  out=$(pgb "$(port_of "$1")" "$2")
  kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true
  tx=$(field '^number of transactions actually processed: \([0-9]*\).*' <<<"$out")
  sc=$(awk -F, '/sys_enter/{print $1}' "$WORK/perf.out"); cs=$(awk -F, '/context-switches/{print $1}' "$WORK/perf.out")
  awk -v s="${sc:-0}" -v c="${cs:-0}" -v n="${tx:-0}" 'BEGIN{ if (n>0) printf "%.2f %.2f\n", s/n, c/n; else print "- -" }'
}

median() { tr ' ' '\n' | grep -v -- '^-$' | grep . | sort -g | awk '{a[NR]=$1} END{ if (NR==0) {print "-"} else if (NR%2) {print a[(NR+1)/2]} else {printf "%.2f", (a[NR/2]+a[NR/2+1])/2} }'; }

echo "uring_vs_epoll: $(date -u '+%F %H:%M UTC'), $(nproc) cores, kernel $(uname -r), pgbench -n -S -M simple, $SECS s x $REPS timed rounds + $COUNT_REPS perf round(s)"
printf "| clients | target | tps | avg latency ms | relay CPU us/tx | in kernel | CPU vs epoll | syscalls/tx | context switches/tx |\n|---|---|---|---|---|---|---|---|---|\n"
for c in "${CLIENTS[@]}"; do
  declare -A T=() L=() U=() K=() S=() X=() R=()
  for _ in $(seq "$REPS"); do
    for t in $TARGETS; do
      read -r tps lat cpu kern < <(timed "$t" "$c")
      T[$t]+="$tps "; L[$t]+="$lat "; U[$t]+="$cpu "; K[$t]+="$kern "
    done
    # Per-round ratio of CPU per transaction against the epoll relay of the same round.
    ecpu=$(awk '{print $NF}' <<<"${U[epoll]:-}")
    for t in $TARGETS; do
      cur=$(awk '{print $NF}' <<<"${U[$t]}")
      R[$t]+="$(awk -v a="$cur" -v b="${ecpu:--}" 'BEGIN{ if (b+0>0 && a!="-") printf "%.2f", a/b; else print "-"}') "
    done
  done
  for _ in $(seq "$COUNT_REPS"); do
    for t in $TARGETS; do
      [ "$(pid_of "$t")" = 0 ] && continue
      read -r sc cs < <(counted "$t" "$c")
      S[$t]+="$sc "; X[$t]+="$cs "
    done
  done
  for t in $TARGETS; do
    echo "| $c | $t | $(median <<<"${T[$t]}") | $(median <<<"${L[$t]}") | $(median <<<"${U[$t]}") | $(median <<<"${K[$t]}")% | $(median <<<"${R[$t]}") (${R[$t]% }) | $(median <<<"${S[$t]:-}") | $(median <<<"${X[$t]:-}") |"
  done
  unset T L U K S X R
done
for p in $EPOLL $URING $MULTI; do
  kill -0 "$p" 2>/dev/null || { echo "a relay exited during the run:" >&2; cat "$WORK"/epoll.log "$WORK"/uring*.log >&2; exit 1; }
done
