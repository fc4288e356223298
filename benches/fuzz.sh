#!/usr/bin/env bash
# Fuzzes a target for a bounded time and prints how many executions ran without a crash:
# `front_door` (startup packet, frames, message views, SCRAM server) or `forwarding` (the
# forwarder, prepared-statement flow and classifier, sans-IO, against scripted servers).
#
#   benches/fuzz.sh [SECONDS] [TARGET]        (defaults: 60, front_door)
#
# With a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`): libFuzzer on fuzz/fuzz_targets/TARGET.rs, corpus in
# fuzz/corpus/TARGET. Without them: the property tests of tests/properties.rs with a
# large PROPTEST_CASES, repeated until the time is up.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
target=${2:-front_door}

if cargo +nightly --version >/dev/null 2>&1 && cargo fuzz --version >/dev/null 2>&1; then
    mkdir -p "fuzz/corpus/$target"
    # Built first, so that the time bound covers fuzzing only.
    cargo +nightly fuzz build -O "$target"
    host=$(rustc -vV | sed -n 's/^host: //p')
    log=$(mktemp)
    "fuzz/target/$host/release/$target" "fuzz/corpus/$target" \
        -max_total_time="$secs" -max_len=4096 -print_final_stats=1 >"$log" 2>&1 || {
        tail -40 "$log"; echo "crash: see fuzz/artifacts and the log above" >&2; exit 1; }
    execs=$(awk '/^stat::number_of_executed_units/ {print $2}' "$log")
    rm -f "$log"
    echo "cargo-fuzz $target: ${execs:-?} executions in ${secs}s without a crash"
else
    echo "no nightly toolchain or cargo-fuzz: running the property tests instead" >&2
    cases=${PROPTEST_CASES:-20000}
    end=$((SECONDS + secs)); rounds=0
    while ((SECONDS < end)); do
        PROPTEST_CASES=$cases cargo test --release --quiet --test properties >/dev/null
        rounds=$((rounds + 1))
    done
    echo "proptest: $rounds rounds x 10 properties x $cases cases in ${secs}s without a failure"
fi
