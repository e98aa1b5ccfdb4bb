#!/usr/bin/env bash
# Rebuilds testdata/expected/ from scratch: every file of testdata/captures/
# processed by the `tracescrub` CLI under the default config, at the same
# relative path, in the format it came in.
#
#   bash scripts/regen-expected.sh
#
# host-harness/tests/captures.rs compares a fresh replay against these files
# byte for byte; run this after a change to the processor that is meant to
# change its output (and review the diff), or after new captures
# (testdata/capture/regenerate.sh calls it). Rebuilds the binary first, so
# the outputs always come from the code in the tree. Writes to a temporary
# directory and swaps it in only when the replay succeeded with no error, so
# a failed run leaves the old expected outputs untouched.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "regen-expected: cargo not found in PATH" >&2; exit 1; }

CAPTURES=testdata/captures
EXPECTED=testdata/expected
[[ -d $CAPTURES ]] || { echo "regen-expected: $CAPTURES does not exist" >&2; exit 1; }

# The component is built by host-harness/runtime/build.rs, for the wasm target.
if command -v rustup >/dev/null; then rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true; fi
cargo build --locked -q -p tracescrub --bin tracescrub

TMP=$(mktemp -d "testdata/.expected.XXXXXX")
LOG=$(mktemp)
trap 'rm -rf "$TMP" "$LOG"' EXIT

# `cargo run` of the binary just built. Exit status 1 means a batch failed:
# the expected outputs would lack it, so nothing is replaced.
if ! cargo run --locked -q -p tracescrub --bin tracescrub -- replay --out "$TMP" "$CAPTURES" >"$LOG"; then
  cat "$LOG" >&2
  echo "regen-expected: replay failed; $EXPECTED left as it was" >&2
  exit 1
fi
tail -n1 "$LOG"

rm -rf "$EXPECTED"
mv "$TMP" "$EXPECTED"
chmod 755 "$EXPECTED" # mktemp made it 700
echo "regen-expected: wrote $(find "$EXPECTED" -type f | wc -l) files to $EXPECTED"
