#!/usr/bin/env bash
# Builds everything (the processor component, the `tracescrub` host and the
# `otelcol-tracescrub` collector distribution) and
# replays the bundled captures through the embedded default config.
# Usage: scripts/run.sh            processed files land in target/scrubbed/
set -euo pipefail
cd "$(dirname "$0")/.."

# RUSTUP_AUTO_INSTALL=0: nothing installs the guest target unless asked.
rustup target add wasm32-unknown-unknown
cargo build --release --locked -p tracescrub
# The collector distribution with the `tracescrub` processor (needs Go).
bash scripts/build-collector.sh
rm -rf target/scrubbed
exec target/release/tracescrub replay --out target/scrubbed testdata/captures
