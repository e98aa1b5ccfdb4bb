#!/usr/bin/env bash
# Load run for `tracescrub serve`, and the same load through rotel (from PyPI,
# with host-harness/examples/serve_load/rotel_processor.py, the same rules in
# Python), one after the other in one run, on 127.0.0.1 only. A benchmark,
# not a test: it asserts nothing about speed.
#
#   bash scripts/serve-load.sh                 # 10 s per target
#   SECONDS_PER_TARGET=3 bash scripts/serve-load.sh
#   CONCURRENCY=8 WORKERS=2 SPANS_PER_BATCH=1000 bash scripts/serve-load.sh
#
# Builds the release binary and the load example, sets up target/serve-venv
# (for rotel), then runs host-harness/examples/serve_load (see its docs for
# how spans/s and the added latency are measured). The last line is
#   serve-load: tracescrub_spans_per_s=N rotel_spans_per_s=N ratio=R p50_added_ms=X p99_added_ms=Y
# NO_ROTEL=1 skips rotel.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -q -p tracescrub --bin tracescrub --example serve_load

rotel_args=()
if [[ -z ${NO_ROTEL:-} ]]; then
  venv=$(bash host-harness/tests/serve_e2e/venv.sh)
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  rotel_args=(--rotel "$site/rotel/rotel-agent" --rotel-processor host-harness/examples/serve_load/rotel_processor.py)
  # rotel-agent embeds CPython and links libpython3.11.so: point it at the
  # venv's interpreter's library directory in case the loader can't find it.
  libdir=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
  export LD_LIBRARY_PATH=${libdir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

target=${CARGO_TARGET_DIR:-target}
worker_args=()
[[ -n ${WORKERS:-} ]] && worker_args=(--workers "$WORKERS")

exec "$target/release/examples/serve_load" \
  --tracescrub "$target/release/tracescrub" \
  --seconds "${SECONDS_PER_TARGET:-10}" \
  --concurrency "${CONCURRENCY:-8}" \
  --spans-per-batch "${SPANS_PER_BATCH:-1000}" \
  --latency-samples "${LATENCY_SAMPLES:-2000}" \
  --workdir "$target/serve-load" \
  "${worker_args[@]}" "${rotel_args[@]}"
