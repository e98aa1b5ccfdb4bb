#!/usr/bin/env bash
# Builds the Go side of tracescrub from collector/:
#   target/otelcol-tracescrub       the collector distribution with the
#                                   `tracescrub` processor (and contrib's
#                                   filter/transform/redaction for comparison)
#   target/tracescrub-conformance   the wazero runner of the three-host test
# Pure Go (CGO_ENABLED=0, -trimpath): one static binary each, the same on any
# machine. Safe to run again and from any directory; go caches the rest.
# Usage: bash scripts/build-collector.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if ! command -v go >/dev/null 2>&1; then
    echo "build-collector: go is not installed or not on PATH (collector/go.mod needs Go 1.26 or newer)" >&2
    exit 1
fi

mkdir -p "$root/target"
cd "$root/collector"
export CGO_ENABLED=0
# -mod=readonly: go.mod and go.sum are committed; a build never edits them.
go build -mod=readonly -trimpath -o "$root/target/otelcol-tracescrub" ./cmd/otelcol-tracescrub
go build -mod=readonly -trimpath -o "$root/target/tracescrub-conformance" ./cmd/tracescrub-conformance
echo "build-collector: built target/otelcol-tracescrub and target/tracescrub-conformance"
