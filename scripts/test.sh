#!/usr/bin/env bash
# The whole test suite: lints, every crate's tests (the component is built by
# host-harness/build.rs), then a time-bounded fuzz smoke run.
# Usage: scripts/test.sh          (FUZZ_SECONDS=N to change the fuzz budget per target)
set -euo pipefail
cd "$(dirname "$0")/.."

# RUSTUP_AUTO_INSTALL=0 means rust-toolchain files install nothing: add the
# guest target explicitly (a no-op when present).
rustup target add wasm32-unknown-unknown

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
FUZZ_SECONDS="${FUZZ_SECONDS:-60}" bash scripts/fuzz-smoke.sh
