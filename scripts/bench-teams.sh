#!/usr/bin/env bash
# The cost of team rules: 500 generated team files (one of them the corpus'
# namespace, team-person) and 50 overrides, against the default config, on
# the default corpus. Both configs run side by side on every batch in one
# `tracescrub bench`; the last line ends with `config_vs_baseline=R`
# (target: R >= 0.9).
# Usage: scripts/bench-teams.sh [extra bench arguments, e.g. --spans 20000 --rounds 3]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p tracescrub
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/teams"
for i in $(seq 0 499); do
  name="team-$i"
  [[ $i == 0 ]] && name="team-person"
  cat > "$dir/teams/$name.yaml" <<YAML
noise:
  extra_globs: ["*/warmup-$i", "*/internal/selftest-$i/*"]
  keep_globs: ["*/internal/status-report-$i"]
  rules:
    - attribute: app.probe
      glob: "synthetic-$i"
services:
  "svc-$i-*":
    noise:
      extra_globs: ["*/ping-$i"]
YAML
done
{
  echo "version: 2"
  echo "teams: {dir: teams/}"
  echo "overrides:"
  for i in $(seq 0 49); do
    echo "  - match: {service.name: \"legacy-$i-*\"}"
    echo "    noise: {extra_globs: [\"*/old-health-$i\"]}"
  done
} > "$dir/teams.yaml"
echo "{}" > "$dir/default.json"
target/release/tracescrub config check "$dir/teams.yaml" | tail -1
target/release/tracescrub bench --config "$dir/teams.yaml" --baseline-config "$dir/default.json" "$@"
