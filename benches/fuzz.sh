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
    log=$(mktemp)
    cargo +nightly fuzz run -O front_door fuzz/corpus/front_door -- \
        -max_total_time="$secs" -max_len=4096 -print_final_stats=1 2>&1 | tee "$log" | grep -E "^(#|==|INFO: Running)" | tail -5
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
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
