#!/usr/bin/env bash
# Time-bounded fuzzing of every cargo-fuzz target in fuzz/: a smoke run for
# CI and for a developer before a push.
#
# Usage: scripts/fuzz-smoke.sh              (60 s per target)
#        FUZZ_SECONDS=600 scripts/fuzz-smoke.sh
#
# Prints one summary line per target and exits non-zero if any target
# crashed, i.e. found an input that breaks one of its asserted properties
# (see processor/tests/fuzz_regressions/checks.rs) or panics.
#
# Every crash becomes a regression test, before or with its fix:
#   1. minimize it:  RUSTC_BOOTSTRAP=1 cargo fuzz tmin <target> fuzz/artifacts/<target>/crash-<hash>
#   2. copy the (minimized) input to processor/tests/fuzz_regressions/<target>/,
#      named for what it breaks (e.g. `label-length-prefix-overflow`);
#   3. `cargo test -p tracescrub-processor --test fuzz_regressions` now
#      replays it through the same checks as the target, and keeps doing so
#      in every test run: it must fail before the fix and pass after.
#
# Toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer, sanitizer
# coverage passes). This project builds on stable rustc only, so
# RUSTC_BOOTSTRAP=1 makes stable accept them. No nightly toolchain is needed.
#
# Sanitizer: cargo-fuzz's default, AddressSanitizer, is kept. It builds and
# runs on stable with RUSTC_BOOTSTRAP=1 (it needs no instrumented std, unlike
# MemorySanitizer), and although our own code has no `unsafe`, the engine's
# dependencies (globset, regex-automata, memchr, aho-corasick) do. It costs
# about half the executions per second; `-s none` would be the fallback if
# it ever stopped building. Builds are release with debug assertions and
# overflow checks on (cargo-fuzz's default), so arithmetic overflow in the
# length bookkeeping is a crash too.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
CARGO_FUZZ_VERSION=0.13.2
TARGETS=(process scan detectors)
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# Fail here, not halfway, if fuzz/Cargo.lock is out of date.
cargo fetch --locked --manifest-path fuzz/Cargo.toml >/dev/null

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
summary=()
failed=0
for target in "${TARGETS[@]}"; do
    log="$logs/$target.log"
    mkdir -p "fuzz/corpus/$target"
    # The first corpus directory receives new inputs (it is git-ignored);
    # fuzz/seeds/<target> holds the committed starting points.
    status=0
    cargo fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -dict="fuzz/$target.dict" -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    corpus="$(find "fuzz/corpus/$target" -type f | wc -l)"
    if [ "$status" -eq 0 ]; then
        summary+=("$target: ok, ${execs:-?} execs in ${FUZZ_SECONDS}s, corpus $corpus inputs")
    else
        failed=1
        artifact="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)"
        echo "---- $target failed (exit $status); last lines of its log:" >&2
        tail -n 60 "$log" >&2
        summary+=("$target: FAILED (exit $status) after ${execs:-?} execs; input: ${artifact:-see log above}; add it to processor/tests/fuzz_regressions/$target/")
    fi
done

printf '%s\n' "${summary[@]}"
exit "$failed"
