# Sourced by the benchmark scripts: a throwaway PostgreSQL (and the pgsluice configuration they
# share, below) in $WORK/data listening on
# 127.0.0.1:$PGPORT and on a Unix socket in $WORK, with pgbench's tables at scale 10.
# Needs BIN (PostgreSQL's bin directory), AS (the command prefix that runs as the postgres OS
# user, empty when not root), WORK and PGPORT.

start_scratch_pg() {
  "${AS[@]}" "$BIN/initdb" -D "$WORK/data" -U postgres --auth=trust >/dev/null
  cat >>"$WORK/data/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
max_connections = 300
shared_buffers = 256MB
fsync = off
CONF
  "${AS[@]}" "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null
  "$BIN/pgbench" -i -q -s 10 -h 127.0.0.1 -p "$PGPORT" -U postgres postgres >/dev/null 2>&1
}

stop_scratch_pg() {
  "${AS[@]}" "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
}

# The benchmarks' pgsluice configuration (transaction mode, pool 20, trust) in FILE:
# bench_pgsluice_toml FILE LISTEN_PORT WORKERS METRICS_SECTION_LINE
bench_pgsluice_toml() {
  cat >"$1" <<TOML
[pooler]
listen_port = $2
auth_type = "trust"
pool_mode = "transaction"
default_pool_size = 20
max_client_conn = 12000
workers = $3
log_connections = false
log_disconnections = false
stats_period = 0
[databases.postgres]
host = "127.0.0.1"
port = $PGPORT
[metrics]
$4
TOML
}
