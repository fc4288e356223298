#!/usr/bin/env bash
# Fuzzes the front door (startup packet, frames, message views, SCRAM server) for a bounded
# time and prints how many executions ran without a crash.
#
#   benches/fuzz.sh [SECONDS]        (default 60)
#
# With a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`): libFuzzer on fuzz/fuzz_targets/front_door.rs, corpus in
# fuzz/corpus/front_door. Without them: the property tests of tests/properties.rs with a
# large PROPTEST_CASES, repeated until the time is up.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}

if cargo +nightly --version >/dev/null 2>&1 && cargo fuzz --version >/dev/null 2>&1; then
    mkdir -p fuzz/corpus/front_door
    # Built first, so that the time bound covers fuzzing only.
    cargo +nightly fuzz build -O front_door
    host=$(rustc -vV | sed -n 's/^host: //p')
    log=$(mktemp)
    "fuzz/target/$host/release/front_door" fuzz/corpus/front_door \
        -max_total_time="$secs" -max_len=4096 -print_final_stats=1 >"$log" 2>&1 || {
        tail -40 "$log"; echo "crash: see fuzz/artifacts and the log above" >&2; exit 1; }
    execs=$(awk '/^stat::number_of_executed_units/ {print $2}' "$log")
    rm -f "$log"
    echo "cargo-fuzz front_door: ${execs:-?} executions in ${secs}s without a crash"
else
    echo "no nightly toolchain or cargo-fuzz: running the property tests instead" >&2
    cases=${PROPTEST_CASES:-20000}
    end=$((SECONDS + secs)); rounds=0
    while ((SECONDS < end)); do
        PROPTEST_CASES=$cases cargo test --release --quiet --test properties >/dev/null
        rounds=$((rounds + 1))
    done
    echo "proptest: $rounds rounds x 9 properties x $cases cases in ${secs}s without a failure"
fi
