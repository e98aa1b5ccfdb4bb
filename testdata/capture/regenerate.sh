#!/usr/bin/env bash
# Regenerates testdata/captures/ from scratch: real OTLP/HTTP trace batches
# recorded from the Python and Node OpenTelemetry SDKs.
#
#   testdata/capture/regenerate.sh
#
# Installs what it needs (Debian packages, a pinned venv, `npm ci`), starts a
# throwaway PostgreSQL and Redis plus a capture sink on 127.0.0.1, runs each
# service once per exporter, drives it with scripted requests, and writes
#   testdata/captures/<service>-<encoding>/NNNN.{binpb,json}[.gz]  the bodies,
#                                                  and nothing else;
#   testdata/capture/recorded/numbers.json, MANIFEST.md and
#   testdata/capture/recorded/<service>-<encoding>/{index.json,requests.jsonl}
#                                                  what was recorded about them;
# then rebuilds testdata/expected/ (the golden outputs) with
# scripts/regen-expected.sh, so new captures always come with new expected
# outputs. Idempotent; every wait is bounded; everything it starts is stopped
# on exit, success or not. Exits non-zero on any failure. Needs root (or sudo)
# for apt-get and to run PostgreSQL as the postgres user.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CAPTURES=$(dirname "$HERE")/captures
RECORDED=$HERE/recorded
REPO=$(cd "$HERE/../.." && pwd)
NODE_DIR=$HERE/node
VENV=$HERE/.venv
PYTHON=${PYTHON:-python3}
START=$(date +%s)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

SUDO=()
[[ $(id -u) -eq 0 ]] || SUDO=(sudo)

# ---------------------------------------------------------------- cleanup
WORK=
PIDS=()          # background processes we started, stopped in reverse order
PG_DATA=
POLICY_RC_CREATED=
cleanup() {
  local rc=$?
  set +e
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null && wait "${PIDS[i]}" 2>/dev/null
  done
  if [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]]; then
    as_postgres "$PGBIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1
  fi
  [[ -n $POLICY_RC_CREATED ]] && "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d
  [[ -n $WORK ]] && rm -rf "$WORK"
  if ((rc != 0)); then log "failed (exit $rc)"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stop one process we started and forget it.
stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# Wait (bounded, 30 s) until a file exists; give up early if its writer died.
wait_for_file() { # file pid
  local i
  for ((i = 0; i < 300; i++)); do
    [[ -s $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# A preferred port if it is free (keeps server.port attributes stable between
# regenerations), else any free port. Loopback only. SO_REUSEADDR as the
# servers use it: a port left in TIME_WAIT by the previous run counts as free.
pick_port() {
  "$PYTHON" - "$1" <<'EOF'
import socket, sys
for port in (int(sys.argv[1]), 0):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(s.getsockname()[1]); s.close(); break
EOF
}

# ---------------------------------------------------------------- 1. install
log "checking tools"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (need Python >= 3.9)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "need Python >= 3.9"
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm not found (need Node >= 18.19)"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>18||(a===18&&b>=19)?0:1)' \
  || die "need Node >= 18.19"

installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }
if ! installed postgresql || ! installed redis-server; then
  log "installing postgresql and redis-server"
  # Keep apt from starting the system-wide services: we only want the
  # binaries, and run our own throwaway instances below.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod +x /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  "${SUDO[@]}" timeout 600 apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq postgresql redis-server >/dev/null
  if [[ -n $POLICY_RC_CREATED ]]; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=; fi
fi
# Debian keeps initdb/pg_ctl out of PATH; take the newest installed major.
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[[ -x $PGBIN/initdb ]] || PGBIN=$(dirname "$(command -v initdb || echo /nonexistent/initdb)")
[[ -x $PGBIN/initdb && -x $PGBIN/pg_ctl ]] || die "initdb/pg_ctl not found"
command -v redis-server >/dev/null || die "redis-server not found"

# Python venv with exact pins; reinstall only when requirements.txt changed.
req_sum=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python || $(cat "$VENV/.requirements.sha256" 2>/dev/null) != "$req_sum" ]]; then
  log "creating Python venv (pinned requirements)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt"
  echo "$req_sum" >"$VENV/.requirements.sha256"
fi

# Node packages from the committed lock file; reinstall only when it changed.
lock_sum=$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)
if [[ $(cat "$NODE_DIR/node_modules/.lock.sha256" 2>/dev/null) != "$lock_sum" ]]; then
  log "npm ci"
  (cd "$NODE_DIR" && timeout 900 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$lock_sum" >"$NODE_DIR/node_modules/.lock.sha256"
fi

# ---------------------------------------------------------------- 2. backends
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tracescrub-capture.XXXXXX")
chmod 755 "$WORK" # the postgres user must reach its data dir inside
STAGE=$WORK/captures       # bodies only: becomes testdata/captures/
STAGE_REC=$WORK/recorded   # metadata: becomes testdata/capture/recorded/
mkdir -p "$STAGE" "$STAGE_REC"

# PostgreSQL refuses to run as root: run it as the postgres user.
if [[ $(id -u) -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || die "no postgres user (is the postgresql package installed?)"
  as_postgres() { runuser -u postgres -- "$@"; }
else
  as_postgres() { "$@"; }
fi
mkdir -p "$WORK/pg"
[[ $(id -u) -eq 0 ]] && chown postgres: "$WORK/pg"
PG_PORT=$(pick_port 55432)
log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
as_postgres "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
PG_DATA=$WORK/pg/data
# fsync off: a throwaway cluster; unix socket in our temp dir, TCP on loopback only.
as_postgres "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$WORK/pg/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $WORK/pg -c fsync=off" start >/dev/null \
  || { cat "$WORK/pg/server.log" >&2; die "PostgreSQL did not start"; }
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres)
"${PSQL[@]}" -d postgres -c 'CREATE DATABASE tracescrub'

# The fictional numbers, shared by the database, both services and the manifest.
NUMBERS=$STAGE_REC/numbers.json
"$PYTHON" "$HERE/personal_numbers.py" "$NUMBERS"
"$PYTHON" - "$NUMBERS" >"$WORK/seed.sql" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
q = lambda s: "'" + s.replace("'", "''") + "'"
print("CREATE TABLE person (fnr text PRIMARY KEY, name text NOT NULL, kind text NOT NULL, born date NOT NULL);")
print("CREATE TABLE orders (id bigint PRIMARY KEY, fnr text NOT NULL REFERENCES person, amount numeric(10,2) NOT NULL);")
for p in d["people"]:
    print(f"INSERT INTO person VALUES ({q(p['number'])}, {q(p['name'])}, {q(p['kind'])}, {q(p['born'])});")
n = {x["key"]: x["value"] for x in d["non_numbers"]}
fnr = d["people"][0]["number"]
print(f"INSERT INTO orders VALUES ({n['order_id']}, {q(fnr)}, 249.00), ({n['twelve_digits']}, {q(fnr)}, 99.50);")
EOF
"${PSQL[@]}" -d tracescrub -f "$WORK/seed.sql"
PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/tracescrub"

REDIS_PORT=$(pick_port 56379)
log "starting Redis on 127.0.0.1:$REDIS_PORT"
mkdir -p "$WORK/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis" \
  --daemonize no --loglevel warning --logfile "$WORK/redis/redis.log" &
PIDS+=($!)
redis_cmd() { # send one inline command, print the reply (stdlib, no redis-cli needed)
  "$PYTHON" - "$REDIS_PORT" "$1" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(sys.argv[2].encode() + b"\r\n")
print(s.recv(64).decode().strip())
EOF
}
for ((i = 0; i < 100; i++)); do
  [[ $(redis_cmd PING 2>/dev/null) == +PONG ]] && break
  sleep 0.1
done
[[ $(redis_cmd PING 2>/dev/null) == +PONG ]] || die "Redis did not start"

# ---------------------------------------------------------------- 3-7. record
SINK_PORT=$(pick_port 54318)
SERVICE_PORT=$(pick_port 58080)

# capture SERVICE ENCODING GZIP SEMCONV: one service run, recorded into
# $STAGE/SERVICE-ENCODING/ (bodies) and $STAGE_REC/SERVICE-ENCODING/ (the
# sink's requests.jsonl and the driver's index.json) by its own sink.
capture() {
  local service=$1 encoding=$2 gzip=$3 semconv=$4
  local name=$service-$encoding
  local out=$STAGE/$name
  local rec=$STAGE_REC/$name
  log "recording $name"
  mkdir -p "$out" "$rec"
  # Cold cache for every run: each service sees the same miss/hit pattern.
  [[ $(redis_cmd FLUSHALL) == +OK ]] || die "Redis FLUSHALL failed"

  rm -f "$WORK/sink.port" "$WORK/service.port"
  "$PYTHON" "$HERE/sink.py" --out "$out" --requests "$rec/requests.jsonl" \
    --port "$SINK_PORT" --port-file "$WORK/sink.port" \
    >"$WORK/sink-$name.log" 2>&1 &
  local sink_pid=$!
  PIDS+=("$sink_pid")
  wait_for_file "$WORK/sink.port" "$sink_pid" || { cat "$WORK/sink-$name.log" >&2; die "sink did not start"; }

  local env=(
    CAPTURE_ENCODING="$encoding" CAPTURE_GZIP="$gzip"
    CAPTURE_SINK="http://127.0.0.1:$(cat "$WORK/sink.port")/v1/traces"
    CAPTURE_PG="$PG_URL" CAPTURE_REDIS_PORT="$REDIS_PORT"
    CAPTURE_NUMBERS="$NUMBERS"
    CAPTURE_LISTEN_PORT="$SERVICE_PORT" CAPTURE_PORT_FILE="$WORK/service.port"
    OTEL_SEMCONV_STABILITY_OPT_IN="$semconv"
    # No stray env config from the caller's shell.
    OTEL_RESOURCE_ATTRIBUTES= OTEL_SERVICE_NAME= OTEL_TRACES_SAMPLER=parentbased_always_on
    OTEL_SDK_DISABLED=false
  )
  if [[ $service == python ]]; then
    env "${env[@]}" "$VENV/bin/python" "$HERE/python_service.py" >"$WORK/service-$name.log" 2>&1 &
  else
    (cd "$NODE_DIR" && exec env "${env[@]}" node --require ./tracing.js service.js) \
      >"$WORK/service-$name.log" 2>&1 &
  fi
  local svc_pid=$!
  PIDS+=("$svc_pid")
  wait_for_file "$WORK/service.port" "$svc_pid" \
    || { cat "$WORK/service-$name.log" >&2; die "$name service did not start"; }

  if ! timeout 300 "$PYTHON" "$HERE/drive.py" --base "http://127.0.0.1:$(cat "$WORK/service.port")" \
    --numbers "$NUMBERS" --out "$out" --index "$rec/index.json"; then
    tail -n 40 "$WORK/service-$name.log" >&2
    die "driving $name failed"
  fi
  stop_pid "$svc_pid"
  stop_pid "$sink_pid"
}

capture python protobuf 1 ""                        # gzip on the wire, SDK-default semconv
capture python json     0 "http/dup,database/dup"   # old and stable attribute names side by side
capture node   protobuf 0 ""
capture node   json     1 ""                        # gzip on the wire

# ---------------------------------------------------------------- 8. publish
# The bodies directory must hold batches and nothing else: `tracescrub replay
# testdata/captures` reads every file in it.
stray=$(find "$STAGE" -type f ! -regex '.*/[0-9][0-9][0-9][0-9]\.\(binpb\|json\)\(\.gz\)?' -print)
[[ -z $stray ]] || die "not a batch body, would land in $CAPTURES: $stray"

# Only now replace the old captures, so a failed run leaves them untouched.
log "writing $CAPTURES and $RECORDED"
rm -rf "${CAPTURES:?}" "${RECORDED:?}"
mv "$STAGE" "$CAPTURES"
mv "$STAGE_REC" "$RECORDED"

"$VENV/bin/python" "$HERE/manifest.py" --captures "$CAPTURES" --recorded "$RECORDED" --node-dir "$NODE_DIR" \
  --seconds $(($(date +%s) - START)) \
  --tool "PostgreSQL=$("$PGBIN/postgres" --version | awk '{print $3}')" \
  --tool "Redis=$(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/')" \
  --tool "Python=$("$VENV/bin/python" -c 'import platform; print(platform.python_version())')" \
  --tool "Node=$(node --version)"

log "recorded in $(($(date +%s) - START)) s: $(find "$CAPTURES" -type f | wc -l) files, $(du -sb "$CAPTURES" | cut -f1) bytes"

# ---------------------------------------------------------------- 9. expected
# New captures, new golden outputs: host-harness/tests/captures.rs compares a
# fresh replay against testdata/expected/ byte for byte.
log "rebuilding testdata/expected/"
bash "$REPO/scripts/regen-expected.sh" \
  || die "the captures were rewritten but testdata/expected/ was not: fix the error above, then run bash scripts/regen-expected.sh"

log "done in $(($(date +%s) - START)) s"
