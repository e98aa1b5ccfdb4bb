#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests (the component
# is built by host-harness/runtime/build.rs; the three-host test builds the wazero
# runner and transpiles the component with jco), the Go collector module's
# vet and race-enabled tests, the end-to-end runs with real SDK exporters
# (the gateway's and the collector's), a time-bounded fuzz smoke run, and
# two short load runs whose figures are reported, not asserted.
# Usage: scripts/test.sh          (FUZZ_SECONDS=N to change the fuzz budget per target)
set -euo pipefail
cd "$(dirname "$0")/.."

# Every crate is built once here: incremental caches would only take disk.
export CARGO_INCREMENTAL=0

# RUSTUP_AUTO_INSTALL=0 means rust-toolchain files install nothing: add the
# guest target explicitly (a no-op when present).
rustup target add wasm32-unknown-unknown

cargo fmt --all -- --check
# The fuzz workspace has its own lock: a stale one would otherwise fail only
# at the fuzz smoke run, half an hour in (which fetches the same sources).
cargo fetch --locked --manifest-path fuzz/Cargo.toml >/dev/null \
  || { echo "fuzz/Cargo.lock is out of date: run \`cargo update -w --manifest-path fuzz/Cargo.toml\` and commit it" >&2; exit 1; }
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked -q

# The embeddable host library stays small: no async runtime, HTTP or gRPC
# stack, file watcher or CLI parser in its dependency tree.
heavy=$(cargo tree -p tracescrub-runtime -e normal --prefix none --locked \
  | awk '{print $1}' | sort -u | grep -E '^(tokio|hyper|tonic|notify|clap|opentelemetry)' || true)
if [[ -n $heavy ]]; then
  echo "tracescrub-runtime must not depend on: $heavy" >&2
  exit 1
fi

# The Go module: formatting and vet first (cheap, and they fail fast).
unformatted=$(cd collector && gofmt -l .)
if [[ -n $unformatted ]]; then
  echo "gofmt: these files need formatting:" >&2
  echo "$unformatted" >&2
  exit 1
fi
(cd collector && go vet ./...)

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"

# The collector processor's tests load the same component file that
# `tracescrub inspect --save` writes. `go test -v` prints one `--- PASS` or
# `--- FAIL` line per top-level test at the start of a line: counted below.
cargo build -p tracescrub --bin tracescrub --locked -q
target/debug/tracescrub inspect --save target/tracescrub_processor.wasm >/dev/null
(cd collector && TRACESCRUB_COMPONENT="$PWD/../target/tracescrub_processor.wasm" go test -race -count=1 -v ./...) 2>&1 \
  | tee -a "$log" | grep -E '^(--- |ok |FAIL|PASS$|panic)' || true
# pipefail does not see go test's status through the grep: check the log.
if grep -qE '^(--- FAIL|FAIL)' "$log"; then
  echo "go test: failures above" >&2
  exit 1
fi

# `tracescrub serve` with real parts (the Python SDK's exporters, a capture
# sink, reload under load, SIGKILL mid-load): host-harness/tests/serve_e2e.
# It sets up target/serve-venv from pinned requirements and ends with a
# cargo-style `test result:` line, so the count below includes it.
bash host-harness/tests/serve_e2e/run.sh 2>&1 | tee -a "$log"

# The collector end to end: the Python SDK through otelcol-tracescrub to the
# capture sink, SIGHUP, broken files over the watched ones, validate
# (collector/e2e; builds the collector with scripts/build-collector.sh).
TRACESCRUB_COMPONENT="$PWD/target/tracescrub_processor.wasm" bash collector/e2e/run.sh 2>&1 | tee -a "$log"

FUZZ_SECONDS="${FUZZ_SECONDS:-60}" bash scripts/fuzz-smoke.sh

# The load run against rotel, short: figures reported, not asserted (a
# benchmark on a shared CI machine), and a failure to run it fails nothing.
SECONDS_PER_TARGET="${SERVE_LOAD_SECONDS:-5}" bash scripts/serve-load.sh \
  || echo "serve-load: did not complete (exit $?); reported only"

# tracescrub inside the collector against contrib's processors, short:
# figures reported, not asserted (see the README's comparison table).
LOAD_SECONDS=2 LOAD_SLICES=2 LATENCY_SAMPLES=60 BENCH_ROUNDS=2 BENCH_REPEATS=1 bash scripts/collector-compare.sh \
  || echo "collector-compare: did not complete (exit $?); reported only"

# One closing line over all test binaries, cargo's and pytest's
# `test result:` lines and go test's top-level `--- PASS`/`--- FAIL` lines
# (pipefail and the check above already failed the run if any test did).
awk '/^test result:/ { p += $4; f += $6 } /^--- PASS/ { p++ } /^--- FAIL/ { f++ }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
