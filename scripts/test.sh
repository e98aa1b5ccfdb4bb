#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests (the component
# is built by host-harness/build.rs), then a time-bounded fuzz smoke run.
# Usage: scripts/test.sh          (FUZZ_SECONDS=N to change the fuzz budget per target)
set -euo pipefail
cd "$(dirname "$0")/.."

# RUSTUP_AUTO_INSTALL=0 means rust-toolchain files install nothing: add the
# guest target explicitly (a no-op when present).
rustup target add wasm32-unknown-unknown

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}" bash scripts/fuzz-smoke.sh

# One closing line over all test binaries (pipefail above already failed
# the run if any test did).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
