#!/usr/bin/env bash
# Makes sure target/serve-venv (under $CARGO_TARGET_DIR if set) holds exactly
# requirements.txt (reinstalled only when that file changed) and prints the
# venv's path. Used by run.sh and scripts/serve-load.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
VENV=${CARGO_TARGET_DIR:-$REPO/target}/serve-venv
PYTHON=${PYTHON:-python3}

req_sum=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python || $(cat "$VENV/.requirements.sha256" 2>/dev/null) != "$req_sum" ]]; then
  echo "serve tests: creating $VENV (pinned requirements)" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" >&2
  timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check --no-input -r "$HERE/requirements.txt" >&2
  echo "$req_sum" >"$VENV/.requirements.sha256"
fi
echo "$VENV"
