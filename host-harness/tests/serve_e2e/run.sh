#!/usr/bin/env bash
# Runs the Python-driven serve tests (real SDK exporters, a real sink, the
# real `tracescrub serve` process) against the debug build.
#
#   bash host-harness/tests/serve_e2e/run.sh                 # all of them
#   bash host-harness/tests/serve_e2e/run.sh -k reload -x    # pytest arguments pass through
#
# Installs the pinned requirements into target/serve-venv (venv.sh) and
# builds the binary first. TRACESCRUB_BIN points the tests at another build
# (e.g. target/release/tracescrub). The last line is cargo-style
# (`test result: ok. N passed; M failed; ...`), so scripts/test.sh counts it.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
VENV=$(bash "$HERE/venv.sh")

if [[ -z ${TRACESCRUB_BIN:-} ]]; then
  (cd "$REPO" && cargo build -p tracescrub --bin tracescrub --locked -q)
fi

cd "$HERE"
# -p no:cacheprovider: write nothing into the source tree.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rfE "$@"
