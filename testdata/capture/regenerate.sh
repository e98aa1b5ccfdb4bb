#!/usr/bin/env bash
# Regenerates testdata/captures/ from scratch: real OTLP/HTTP trace batches
# recorded from the Python and Node OpenTelemetry SDKs and from a Spring Boot
# service under the OpenTelemetry Java agent.
#
#   testdata/capture/regenerate.sh              everything
#   testdata/capture/regenerate.sh --only java  the Java agent captures only
#
# --only java records just testdata/captures/java-*/ and their metadata, and
# rewrites only the Java section of MANIFEST.md: the Python and Node captures,
# their metadata and the rest of the manifest stay as they are. It needs JDK
# 17+ and Maven (the service in testdata/capture/java/ is built with
# `mvn package`, which also fetches the agent jar into its target/), not Node.
#
# Installs what it needs (Debian packages, a pinned venv, `npm ci`, `mvn
# package`), starts a throwaway PostgreSQL, Redis and Kafka plus a capture
# sink on 127.0.0.1, runs each service once per exporter (the Java service
# once per agent setting), drives it with scripted requests, and writes
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
# The capture sink shared with the tests (stdlib only when it keeps bodies).
SINK=$REPO/testdata/sink/otlp_sink.py
NODE_DIR=$HERE/node
VENV=$HERE/.venv
PYTHON=${PYTHON:-python3}
START=$(date +%s)
ONLY=
while (($#)); do
  case $1 in
    --only) ONLY=${2:-}; shift 2 || true ;;
    --only=*) ONLY=${1#--only=}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -z $ONLY || $ONLY == java ]] || { echo "--only takes: java" >&2; exit 2; }
JAVA_DIR=$HERE/java

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

# Wait (bounded, 30 s or the given seconds) until a file exists; give up
# early if its writer died.
wait_for_file() { # file pid [seconds]
  local i
  for ((i = 0; i < ${3:-30} * 10; i++)); do
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
if [[ -z $ONLY ]]; then
  command -v node >/dev/null && command -v npm >/dev/null || die "node and npm not found (need Node >= 18.19)"
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>18||(a===18&&b>=19)?0:1)' \
    || die "need Node >= 18.19"
fi
command -v java >/dev/null && command -v mvn >/dev/null || die "java and mvn not found (need JDK >= 17, Maven)"
java -version 2>&1 | head -n1 | grep -Eq '"(1[7-9]|[2-9][0-9])[."]' || die "need JDK >= 17: $(java -version 2>&1 | head -n1)"

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
if [[ -z $ONLY ]]; then
  lock_sum=$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)
  if [[ $(cat "$NODE_DIR/node_modules/.lock.sha256" 2>/dev/null) != "$lock_sum" ]]; then
    log "npm ci"
    (cd "$NODE_DIR" && timeout 900 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$lock_sum" >"$NODE_DIR/node_modules/.lock.sha256"
  fi
fi

# The Spring Boot service and the agent jar (target/agent/), rebuilt only when
# the pom or a source changed. Maven Central through mvn; nothing committed.
JAVA_JAR=$JAVA_DIR/target/capture-service.jar
AGENT_JAR=$JAVA_DIR/target/agent/opentelemetry-javaagent.jar
java_sum=$(cd "$JAVA_DIR" && find pom.xml src -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [[ ! -s $JAVA_JAR || ! -s $AGENT_JAR || $(cat "$JAVA_DIR/target/.sources.sha256" 2>/dev/null) != "$java_sum" ]]; then
  log "building the Java service (mvn package)"
  (cd "$JAVA_DIR" && timeout 900 mvn -B -q package -DskipTests) || die "mvn package failed"
  echo "$java_sum" >"$JAVA_DIR/target/.sources.sha256"
fi
AGENT_VERSION=$(unzip -p "$AGENT_JAR" META-INF/MANIFEST.MF | sed -n 's/^Implementation-Version: *//p' | tr -d '\r')

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
  "$PYTHON" "$SINK" --out "$out" --requests "$rec/requests.jsonl" --keep-gzip-sample \
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

if [[ -z $ONLY ]]; then
  capture python protobuf 1 ""                        # gzip on the wire, SDK-default semconv
  capture python json     0 "http/dup,database/dup"   # old and stable attribute names side by side
  capture node   protobuf 0 ""
  capture node   json     1 ""                        # gzip on the wire
fi

# ---------------------------------------------------------------- Java agent
# Kafka: Kafka's own KRaft server (broker and controller in one process, from
# the service jar's kafka_2.13), in a JVM of its own (not under the agent),
# listening on 127.0.0.1 only. The topics are created on first use.
KAFKA_PORT=$(pick_port 59092)
KAFKA_CONTROLLER_PORT=$(pick_port 59093)
log "starting Kafka (KRaft) on 127.0.0.1:$KAFKA_PORT"
mkdir -p "$WORK/kafka"
cat >"$WORK/kafka/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$WORK/kafka/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
# Kafka's entry points run from the service jar (Spring Boot's PropertiesLauncher
# takes the main class from -Dloader.main).
KAFKA_JAVA=(java -Xmx512m -Djava.io.tmpdir="$WORK")
timeout 120 "${KAFKA_JAVA[@]}" -Dloader.main=kafka.tools.StorageTool -jar "$JAVA_JAR" \
  format --cluster-id 7YnZ0Vb3TxS0ws9bZ5kWmQ --config "$WORK/kafka/server.properties" >"$WORK/kafka/format.log" 2>&1 \
  || { tail -n 40 "$WORK/kafka/format.log" >&2; die "formatting Kafka's storage failed"; }
"${KAFKA_JAVA[@]}" -Dloader.main=kafka.Kafka -jar "$JAVA_JAR" "$WORK/kafka/server.properties" >"$WORK/kafka/server.log" 2>&1 &
PIDS+=($!)
kafka_up=
for ((i = 0; i < 600; i++)); do
  grep -q 'Kafka Server started' "$WORK/kafka/server.log" && { kafka_up=1; break; }
  kill -0 "${PIDS[-1]}" 2>/dev/null || break
  sleep 0.1
done
[[ -n $kafka_up ]] || { tail -n 40 "$WORK/kafka/server.log" >&2; die "Kafka did not start"; }
KAFKA_ADDR=127.0.0.1:$KAFKA_PORT

# The agent's batch processor is the only thing that cuts batches (the agent
# has no flush a service could call): drive.py --sync sink lines each group
# up with this schedule.
JAVA_SCHEDULE_MS=5000

# capture_java NAME WIRE_COMPRESSION [ENV=VALUE...]: one run of the service
# under the agent, with its default settings plus the given environment.
capture_java() {
  local name=$1 compression=$2
  shift 2
  local out=$STAGE/$name
  local rec=$STAGE_REC/$name
  log "recording $name"
  mkdir -p "$out" "$rec"
  [[ $(redis_cmd FLUSHALL) == +OK ]] || die "Redis FLUSHALL failed"

  rm -f "$WORK/sink.port" "$WORK/service.port"
  "$PYTHON" "$SINK" --out "$out" --requests "$rec/requests.jsonl" --keep-gzip-sample --disarmed \
    --port "$SINK_PORT" --port-file "$WORK/sink.port" >"$WORK/sink-$name.log" 2>&1 &
  local sink_pid=$!
  PIDS+=("$sink_pid")
  wait_for_file "$WORK/sink.port" "$sink_pid" || { cat "$WORK/sink-$name.log" >&2; die "sink did not start"; }
  local sink="http://127.0.0.1:$(cat "$WORK/sink.port")"

  # The record keys: fnr as a String key, hnr as a byte[] key.
  local keys
  keys=$("$PYTHON" -c 'import json, sys; p = {x["key"]: x["number"] for x in json.load(open(sys.argv[1]))["people"]}; print(p["fnr"] + "," + p["hnr"])' "$NUMBERS")
  # env -i: nothing from the caller's shell (OTEL_*, JAVA_TOOL_OPTIONS) leaks in.
  env -i PATH="$PATH" HOME="$WORK" LANG=C.UTF-8 TZ=UTC \
    CAPTURE_LISTEN_PORT="$SERVICE_PORT" CAPTURE_PORT_FILE="$WORK/service.port" \
    CAPTURE_PG_JDBC="jdbc:postgresql://127.0.0.1:$PG_PORT/tracescrub" CAPTURE_REDIS_PORT="$REDIS_PORT" \
    CAPTURE_KAFKA="$KAFKA_ADDR" CAPTURE_KAFKA_KEYS="$keys" \
    OTEL_SERVICE_NAME=tracescrub-capture-java \
    OTEL_RESOURCE_ATTRIBUTES=service.version=1.0.0,deployment.environment.name=capture \
    OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none \
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf \
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="$sink/v1/traces" \
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION="$compression" \
    OTEL_BSP_SCHEDULE_DELAY=$JAVA_SCHEDULE_MS OTEL_BSP_MAX_EXPORT_BATCH_SIZE=4096 OTEL_BSP_MAX_QUEUE_SIZE=8192 \
    "$@" \
    java -Xmx768m -Djava.io.tmpdir="$WORK" -javaagent:"$AGENT_JAR" -jar "$JAVA_JAR" \
    >"$WORK/service-$name.log" 2>&1 &
  local svc_pid=$!
  PIDS+=("$svc_pid")
  wait_for_file "$WORK/service.port" "$svc_pid" 180 \
    || { tail -n 60 "$WORK/service-$name.log" >&2; die "$name service did not start"; }

  if ! timeout 300 "$PYTHON" "$HERE/drive.py" --base "http://127.0.0.1:$(cat "$WORK/service.port")" \
    --numbers "$NUMBERS" --out "$out" --index "$rec/index.json" \
    --scenarios java --sync sink --sink "$sink" --redis-port "$REDIS_PORT" --schedule-ms "$JAVA_SCHEDULE_MS"; then
    tail -n 60 "$WORK/service-$name.log" >&2
    die "driving $name failed"
  fi
  stop_pid "$svc_pid"
  # An export after the last group would be a group cut in two.
  local state
  state=$("$PYTHON" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$sink/-/state")
  stop_pid "$sink_pid"
  log "$name: sink $state"
}

capture_java java-protobuf none
capture_java java-protobuf-unsanitized gzip OTEL_INSTRUMENTATION_COMMON_DB_STATEMENT_SANITIZER_ENABLED=false \
  OTEL_SEMCONV_STABILITY_OPT_IN=database/dup # db.statement and db.query.text side by side

# ---------------------------------------------------------------- 8. publish
# The bodies directory must hold batches and nothing else: `tracescrub replay
# testdata/captures` reads every file in it.
stray=$(find "$STAGE" -type f ! -regex '.*/[0-9][0-9][0-9][0-9]\.\(binpb\|json\)\(\.gz\)?' -print)
[[ -z $stray ]] || die "not a batch body, would land in $CAPTURES: $stray"
# Every body must belong to a scenario group (an unlisted one would be a
# group cut in two, or spans exported at shutdown).
"$PYTHON" - "$STAGE" "$STAGE_REC" <<'EOF' || die "bodies and groups disagree"
import json, os, sys
stage, rec = sys.argv[1:]
for d in sorted(os.listdir(stage)):
    listed = {f for g in json.load(open(os.path.join(rec, d, "index.json"))) for f in g["files"]}
    bodies = {f for f in os.listdir(os.path.join(stage, d)) if not f.endswith(".gz")}
    if listed != bodies:
        sys.exit(f"{d}: bodies {sorted(bodies)} but the groups list {sorted(listed)}")
EOF

# Only now replace the old captures, so a failed run leaves them untouched.
log "writing $CAPTURES and $RECORDED"
if [[ -z $ONLY ]]; then
  rm -rf "${CAPTURES:?}" "${RECORDED:?}"
  mv "$STAGE" "$CAPTURES"
  mv "$STAGE_REC" "$RECORDED"
else
  # Only the Java directories; numbers.json is generated, so it must agree.
  cmp -s "$NUMBERS" "$RECORDED/numbers.json" || die "numbers.json differs from the committed one: run without --only"
  for d in "$STAGE"/java-*; do
    name=$(basename "$d")
    rm -rf "${CAPTURES:?}/$name" "${RECORDED:?}/$name"
    mv "$d" "$CAPTURES/$name"
    mv "$STAGE_REC/$name" "$RECORDED/$name"
  done
fi

# ---------------------------------------------------------------- 9. expected
# New captures, new golden outputs: host-harness/tests/captures.rs compares a
# fresh replay against testdata/expected/ byte for byte.
log "rebuilding testdata/expected/"
bash "$REPO/scripts/regen-expected.sh" \
  || die "the captures were rewritten but testdata/expected/ was not: fix the error above, then run bash scripts/regen-expected.sh"

# ---------------------------------------------------------------- 10. manifest
# Last: the Java section reports what is left in the processed outputs.
PG_VERSION=$("$PGBIN/postgres" --version | awk '{print $3}')
REDIS_VERSION=$(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/')
MANIFEST_ARGS=(--captures "$CAPTURES" --recorded "$RECORDED" --node-dir "$NODE_DIR" --seconds $(($(date +%s) - START))
  --java-tool "PostgreSQL=$PG_VERSION" --java-tool "Redis=$REDIS_VERSION"
  --java-tool "Java=$(java -version 2>&1 | head -n1 | sed -E 's/.*"([^"]+)".*/\1/')"
  --java-tool "Maven=$(mvn -v 2>/dev/null | head -n1 | sed -E 's/\x1b\[[0-9;]*m//g; s/Apache Maven ([^ ]+).*/\1/')"
  --java-tool "opentelemetry-javaagent=$AGENT_VERSION"
  --java-dir "$JAVA_DIR")
if [[ -z $ONLY ]]; then
  MANIFEST_ARGS+=(--tool "PostgreSQL=$PG_VERSION" --tool "Redis=$REDIS_VERSION"
    --tool "Python=$("$VENV/bin/python" -c 'import platform; print(platform.python_version())')"
    --tool "Node=$(node --version)")
else
  MANIFEST_ARGS+=(--only-java)
fi
"$VENV/bin/python" "$HERE/manifest.py" "${MANIFEST_ARGS[@]}"

log "recorded in $(($(date +%s) - START)) s: $(find "$CAPTURES" -type f | wc -l) files, $(du -sb "$CAPTURES" | cut -f1) bytes"

log "done in $(($(date +%s) - START)) s"
