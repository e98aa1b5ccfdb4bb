#!/usr/bin/env bash
# Runs the collector's end-to-end tests: the Python SDK's exporters send
# through a real `otelcol-tracescrub` to the capture sink.
#
#   bash collector/e2e/run.sh            # all of them
#   bash collector/e2e/run.sh -k sighup  # pytest arguments pass through
#
# Builds the collector (scripts/build-collector.sh) and saves the component
# (`tracescrub inspect --save`) unless OTELCOL_TRACESCRUB_BIN and
# TRACESCRUB_COMPONENT name prebuilt ones; uses the serve tests' pinned venv.
# The last line is cargo-style, so scripts/test.sh counts it.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
VENV=$(bash "$REPO/host-harness/tests/serve_e2e/venv.sh")

if [[ -z ${OTELCOL_TRACESCRUB_BIN:-} ]]; then
  bash "$REPO/scripts/build-collector.sh" >&2
fi
if [[ -z ${TRACESCRUB_COMPONENT:-} ]]; then
  (cd "$REPO" && cargo build -p tracescrub --bin tracescrub --locked -q)
  "$TARGET/debug/tracescrub" inspect --save "$TARGET/tracescrub_processor.wasm" >/dev/null
fi

cd "$HERE"
# -p no:cacheprovider: write nothing into the source tree.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rfE "$@"
