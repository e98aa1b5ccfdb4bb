#!/usr/bin/env bash
# Runs the Python-driven serve tests (real SDK exporters, a real sink, the
# real `tracescrub serve` process) against the debug build.
#
#   bash host-harness/tests/serve_e2e/run.sh                 # all of them
#   bash host-harness/tests/serve_e2e/run.sh -k reload -x    # pytest arguments pass through
#
# Installs the pinned requirements into target/serve-venv (again only when
# requirements.txt changed) and builds the binary first. TRACESCRUB_BIN
# points the tests at another build (e.g. target/release/tracescrub).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
VENV=$REPO/target/serve-venv
PYTHON=${PYTHON:-python3}

req_sum=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python || $(cat "$VENV/.requirements.sha256" 2>/dev/null) != "$req_sum" ]]; then
  echo "serve tests: creating $VENV (pinned requirements)" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check --no-input -r "$HERE/requirements.txt"
  echo "$req_sum" >"$VENV/.requirements.sha256"
fi

if [[ -z ${TRACESCRUB_BIN:-} ]]; then
  (cd "$REPO" && cargo build -p tracescrub --bin tracescrub --locked -q)
fi

cd "$HERE"
# -p no:cacheprovider: write nothing into the source tree.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rfE "$@"
