#!/usr/bin/env bash
# Side by side in one collector and one run: one otelcol-tracescrub process
# with three trace pipelines on the same inputs, on 127.0.0.1 only:
#   base: OTLP/HTTP receiver -> OTLP/HTTP exporter (no processor), the baseline
#   A:    the same, with the `tracescrub` processor on its default config
#   B:    the same, with contrib's filter, transform and redaction processors
#         configured for the platform's rules (collector/compare/otelcol.yaml
#         says how, and where they cannot match tracescrub)
# A benchmark and a report, not a test: it exits non-zero only when it could
# not run, never because a target was missed.
#
#   bash scripts/collector-compare.sh                    # about a minute after the builds
#   LOAD_SECONDS=2 LOAD_SLICES=2 LATENCY_SAMPLES=60 BENCH_ROUNDS=2 BENCH_REPEATS=1 \
#     bash scripts/collector-compare.sh                  # short (CI)
#
# It reports, for A and B (collector/compare/compare.py has the details):
# - spans per CPU-second: the collector's CPU time (/proc/PID/stat) while
#   CONCURRENCY keep-alive clients send 1000-span OTLP/HTTP protobuf batches
#   (built from the captures' shape) to one pipeline for LOAD_SECONDS;
# - p50 and p99 added latency per 1000-span batch: request time through the
#   pipeline minus through base, over LATENCY_SAMPLES rounds (exports are
#   synchronous, so a request is answered after its batch reached the sink);
# - on every file of testdata/captures, sent as it is: personal numbers left
#   (`tracescrub audit --raw` on what the sink got), noisy spans left (spans
#   the default config drops, found at the sink) and spans lost (spans the
#   default config keeps, missing at the sink);
# and wazero_vs_wasmtime: `tracescrub-conformance bench` (the processor's
# wazero host) against `tracescrub bench` (wasmtime, the wasm pass) on the
# same batches, BENCH_REPEATS pairs back to back, the median pair's ratio.
# The last line is
#   collector-compare: tracescrub_spans_per_cpu_s=N contrib_spans_per_cpu_s=N ratio=R tracescrub_leaks=N contrib_leaks=N tracescrub_noisy_left=N contrib_noisy_left=N wazero_vs_wasmtime=R
#
# Knobs (environment): LOAD_SECONDS (8), LOAD_SLICES (4), CONCURRENCY (4),
# LATENCY_SAMPLES (500), DISTINCT_BATCHES (16), SPANS_PER_BATCH (1000),
# BENCH_ROUNDS (5), BENCH_REPEATS (3), EXPORT_COMPRESSION (none; gzip to
# compress every pipeline's exports), START_TIMEOUT (120 s for the collector
# to come up), SKIP_BUILD=1 (use the existing builds). It builds the release `tracescrub`
# (cargo), the collector (scripts/build-collector.sh) and the pinned Python
# venv (host-harness/tests/serve_e2e/venv.sh); the work files go to
# target/collector-compare/. Every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "collector-compare: no arguments expected (see --help); got: $*" >&2
  exit 2
fi

target=${CARGO_TARGET_DIR:-target}
work=$target/collector-compare
mkdir -p "$work"
pid_file=$work/pids
: >"$pid_file"

driver=
cleanup() {
  # The driver stops what it started (SIGTERM, then SIGKILL after 10 s).
  if [[ -n $driver ]] && kill -0 "$driver" 2>/dev/null; then
    kill -TERM "$driver" 2>/dev/null || true
    for _ in $(seq 250); do kill -0 "$driver" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$driver" 2>/dev/null && kill -KILL "$driver" 2>/dev/null
  fi
  # Should it have been killed outright: the driver keeps this file to the
  # pids of its children that are still running.
  local pid
  while read -r pid; do
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
  done <"$pid_file"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${SKIP_BUILD:-} ]]; then
  cargo build --release --locked -q -p tracescrub
  if [[ ! -f scripts/build-collector.sh ]]; then
    echo "collector-compare: scripts/build-collector.sh is missing: cannot build the collector" >&2
    exit 1
  fi
  bash scripts/build-collector.sh >&2
fi

find_bin() { # the first of the given paths that is an executable file
  local p
  for p in "$@"; do [[ -x $p ]] && { echo "$p"; return 0; }; done
  echo "collector-compare: none of $* exists (run without SKIP_BUILD)" >&2
  return 1
}
tracescrub=$(find_bin "$target/release/tracescrub")
collector=$(find_bin "$target/otelcol-tracescrub" target/otelcol-tracescrub)
conformance=$(find_bin "$target/tracescrub-conformance" target/tracescrub-conformance)

component=$work/tracescrub_processor.wasm
"$tracescrub" inspect --save "$component" >/dev/null

venv=$(bash host-harness/tests/serve_e2e/venv.sh)

"$venv/bin/python" collector/compare/compare.py \
  --collector "$collector" \
  --conformance "$conformance" \
  --tracescrub "$tracescrub" \
  --component "$component" \
  --captures testdata/captures \
  --workdir "$work" \
  --pid-file "$pid_file" \
  --load-seconds "${LOAD_SECONDS:-8}" \
  --load-slices "${LOAD_SLICES:-4}" \
  --concurrency "${CONCURRENCY:-4}" \
  --latency-samples "${LATENCY_SAMPLES:-500}" \
  --distinct-batches "${DISTINCT_BATCHES:-16}" \
  --spans-per-batch "${SPANS_PER_BATCH:-1000}" \
  --bench-rounds "${BENCH_ROUNDS:-5}" \
  --bench-repeats "${BENCH_REPEATS:-3}" \
  --export-compression "${EXPORT_COMPRESSION:-none}" \
  --start-timeout "${START_TIMEOUT:-120}" &
driver=$!
wait "$driver"
