#!/usr/bin/env python3
"""Write testdata/capture/recorded/MANIFEST.md from what was actually recorded.

Run with the capture venv's python (needs opentelemetry-proto to decode the
protobuf bodies). Everything in the manifest that describes the data (span
counts, where numbers occur, which Kafka key types survived) is computed
from the files, not written by hand.

The bodies are read from --captures (testdata/captures/<dir>/, which holds
nothing but batches); numbers.json and each directory's index.json and
requests.jsonl from --recorded (testdata/capture/recorded/), where the
manifest is written too.
"""

import argparse
import base64
import datetime
import importlib.metadata as md
import json
import os
import re
import sys

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

RUNS = {
    # dir: (service, exporter package, notes)
    "python-protobuf": ("Python (Flask, psycopg 3, redis-py)", "opentelemetry-exporter-otlp-proto-http",
                        "gzip on the wire; semantic conventions: SDK defaults (old HTTP/DB names)"),
    "python-json": ("Python (Flask, psycopg 3, redis-py)", "opentelemetry-exporter-otlp-json-http",
                    "uncompressed; OTEL_SEMCONV_STABILITY_OPT_IN=http/dup,database/dup (old and stable names)"),
    "node-protobuf": ("Node (express, pg, ioredis)", "@opentelemetry/exporter-trace-otlp-proto",
                      "uncompressed; the Node instrumentations emit stable semantic conventions only"),
    "node-json": ("Node (express, pg, ioredis)", "@opentelemetry/exporter-trace-otlp-http",
                  "gzip on the wire; stable semantic conventions"),
}
PY_PACKAGES = [
    "opentelemetry-sdk", "opentelemetry-api", "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-exporter-otlp-json-http", "opentelemetry-instrumentation-flask",
    "opentelemetry-instrumentation-psycopg", "opentelemetry-instrumentation-redis", "opentelemetry-proto",
    "flask", "psycopg", "redis",
]
NODE_PACKAGES = [
    "@opentelemetry/sdk-node", "@opentelemetry/api", "@opentelemetry/sdk-trace-base",
    "@opentelemetry/exporter-trace-otlp-proto", "@opentelemetry/exporter-trace-otlp-http",
    "@opentelemetry/otlp-transformer", "@opentelemetry/auto-instrumentations-node",
    "@opentelemetry/instrumentation-http", "@opentelemetry/instrumentation-express",
    "@opentelemetry/instrumentation-pg", "@opentelemetry/instrumentation-ioredis",
    "express", "pg", "ioredis",
]


def load(path):
    """One export body as OTLP/JSON-shaped dicts (protobuf goes through MessageToDict)."""
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".binpb"):
        return MessageToDict(ExportTraceServiceRequest.FromString(raw))
    return json.loads(raw)


def texts(value):
    """(type, text) pairs for an AnyValue, recursing into arrays and kvlists."""
    if not isinstance(value, dict):
        return
    if "stringValue" in value:
        yield "string", value["stringValue"]
    elif "intValue" in value:
        yield "int", str(value["intValue"])
    elif "bytesValue" in value:
        yield "bytes", base64.b64decode(value["bytesValue"]).decode("latin-1")
    elif "arrayValue" in value:
        for v in value["arrayValue"].get("values", []):
            for t, s in texts(v):
                yield f"array of {t}", s
    elif "kvlistValue" in value:
        for kv in value["kvlistValue"].get("values", []):
            yield "kvlist key", kv["key"]
            for t, s in texts(kv.get("value")):
                yield f"kvlist {t}", s


def fields(req):
    """(field kind, where, value type, text) for every string-ish place in a request."""
    for rs in req.get("resourceSpans", []):
        for a in rs.get("resource", {}).get("attributes", []):
            for t, s in texts(a.get("value")):
                yield "resource attribute", a["key"], t, s
        for ss in rs.get("scopeSpans", []):
            for sp in ss.get("spans", []):
                yield "span name", sp.get("name", ""), "string", sp.get("name", "")
                yield "trace state", "", "string", sp.get("traceState", "")
                yield "status message", "", "string", sp.get("status", {}).get("message", "")
                for a in sp.get("attributes", []):
                    yield "attribute key", a["key"], "string", a["key"]
                    for t, s in texts(a.get("value")):
                        yield "span attribute", a["key"], t, s
                for ev in sp.get("events", []):
                    yield "event name", ev.get("name", ""), "string", ev.get("name", "")
                    for a in ev.get("attributes", []):
                        for t, s in texts(a.get("value")):
                            yield "event attribute", f"{ev.get('name')} / {a['key']}", t, s
                for ln in sp.get("links", []):
                    for a in ln.get("attributes", []):
                        for t, s in texts(a.get("value")):
                            yield "link attribute", a["key"], t, s


# Candidates the way tracescrub reads them: a maximal run of exactly 11
# digits, or 6 digits, a space or dash, 5 digits. A 12-digit id that contains
# a valid number is not a hit.
CANDIDATE = re.compile(r"(?<![0-9])(?:[0-9]{11}|[0-9]{6}[ -][0-9]{5})(?![0-9])")


def hits(people, vtype, text):
    """(person key, how) for each personal number in text."""
    found = []
    for m in CANDIDATE.finditer(text):
        cand = m.group()
        for p in people:
            if cand == p["number"]:
                found.append((p["key"], "whole"))
            elif cand in (p["split_space"], p["split_dash"]):
                found.append((p["key"], "split form"))
    if vtype.endswith("int"):
        for p in people:
            if p["number"].startswith("0") and text == str(int(p["number"])):
                found.append((p["key"], "int, leading zero lost"))
    return found


def placeholder(people, text):
    """Replace the numbers in a key or event name by <n>, to group rows."""
    for p in people:
        text = text.replace(p["number"], "<n>")
    return text


def spans(req):
    for rs in req.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            yield from ss.get("spans", [])


def attr(sp, key):
    for a in sp.get("attributes", []):
        if a["key"] == key:
            return a["value"]
    return None


def node_version(node_dir, pkg):
    try:
        with open(os.path.join(node_dir, "node_modules", pkg, "package.json"), encoding="utf-8") as f:
            return json.load(f)["version"]
    except OSError:
        return "?"


# ---------------------------------------------------------------- Java agent section
# Written by --only-java on its own (the rest of MANIFEST.md kept as it is),
# and appended to the full manifest otherwise.

JAVA_MARK = "## Java agent captures"
JAVA_RUNS = {
    # dir: (exporter settings, notes)
    "java-protobuf": ("agent defaults; OTLP http/protobuf",
                      "uncompressed; every instrumentation setting at the agent's default"),
    "java-protobuf-unsanitized": ("OTEL_INSTRUMENTATION_COMMON_DB_STATEMENT_SANITIZER_ENABLED=false, "
                                  "OTEL_SEMCONV_STABILITY_OPT_IN=database/dup; OTLP http/protobuf",
                                  "gzip on the wire (OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=gzip); the statement "
                                  "sanitizer off, as teams turn it off to debug; old and stable database "
                                  "attribute names side by side (`db.statement` and `db.query.text`)"),
}
JAVA_SERVICE = "Spring Boot 4 (Tomcat, JDBC/PostgreSQL, Lettuce/Redis, Kafka, JDK HttpClient)"

# The split form as it reaches a URL: the typed space percent-encoded or
# form-encoded. This file's CANDIDATE takes only a literal space or dash, so
# these are listed apart.
ENCODED = re.compile(r"(?<![0-9])([0-9]{6})(%20|\+)([0-9]{5})(?![0-9])")


def encoded_hits(people, text):
    found = []
    for m in ENCODED.finditer(text):
        joined = m.group(1) + m.group(3)
        for p in people:
            if joined == p["number"]:
                found.append((p["key"], "split form, " + ("%20" if m.group(2) == "%20" else "+")))
    return found


def occurrences(people, bodies):
    """{(field kind, where, value type): {"files": set, "hits": set}} over some bodies."""
    seen = {}
    for name, body in bodies.items():
        for kind, where, vtype, text in fields(body):
            for who, how in hits(people, vtype, text) + encoded_hits(people, text):
                key = (kind, placeholder(people, where), vtype)
                seen.setdefault(key, {"files": set(), "hits": set()})
                seen[key]["files"].add(name)
                seen[key]["hits"].add(who if how == "whole" else f"{who} ({how})")
    return seen


def java_section(cap, rec, expected, people, tools, java_dir):
    out = []
    w = out.append
    dirs = [d for d in JAVA_RUNS if os.path.isdir(os.path.join(cap, d))]
    if not dirs:
        return ""
    w(f"{JAVA_MARK}\n")
    w("A small Spring Boot service (`testdata/capture/java/`) run under the OpenTelemetry Java agent "
      "(`io.opentelemetry.javaagent:opentelemetry-javaagent`), with no tracing code of its own: every span "
      "comes from the agent's auto-instrumentation (Tomcat/Spring MVC, JDBC, Lettuce, kafka-clients and "
      "spring-kafka, the JDK HTTP client). It talks to the same throwaway PostgreSQL and Redis on 127.0.0.1 "
      "and to a real Kafka broker (Kafka's own KRaft server, broker and controller in one JVM, not under "
      "the agent, listening on 127.0.0.1 only). Only these directories are rewritten by "
      "`testdata/capture/regenerate.sh --only java`.\n")
    w("Settings beyond the agent's defaults, in both runs: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, "
      "the traces endpoint (the sink), `OTEL_METRICS_EXPORTER=none` and `OTEL_LOGS_EXPORTER=none` (the sink "
      "takes traces only), and the batch processor's schedule (`OTEL_BSP_SCHEDULE_DELAY=5000`, export batch "
      "4096, queue 8192). The agent has no flush a service could call, so the driver (`drive.py --sync sink`) "
      "warms the service up unrecorded (the sink is started `--disarmed`), then sends each group right after "
      "an export, so the group lands whole in the next one; the script checks that every body belongs to a "
      "group. Between regenerations, beside ids and timestamps, the agent's resource attributes "
      "(`host.name`, `process.pid`, `process.command_args`, ...) and the `thread.id`/`thread.name` of each "
      "span change.\n")

    w("| directory | service | exporter | wire | files | spans | bytes |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    per_dir = {}
    for d in dirs:
        path = os.path.join(cap, d)
        with open(os.path.join(rec, d, "index.json"), encoding="utf-8") as f:
            index = json.load(f)
        with open(os.path.join(rec, d, "requests.jsonl"), encoding="utf-8") as f:
            reqs = {r["file"]: r for r in map(json.loads, f)}
        bodies = {n: load(os.path.join(path, n)) for g in index for n in g["files"]}
        outs = {}
        for n in bodies:
            p = os.path.join(expected, d, n)
            if os.path.isfile(p):
                outs[n] = load(p)
        per_dir[d] = (index, reqs, bodies, outs)
        size = sum(os.path.getsize(os.path.join(path, x)) for x in os.listdir(path))
        nspans = sum(len(list(spans(b))) for b in bodies.values())
        r0 = next(iter(reqs.values()))
        w(f"| `{d}/` | {JAVA_SERVICE} | {JAVA_RUNS[d][0]} | {r0['content_type']}, {r0['content_encoding']} | "
          f"{len(os.listdir(path))} | {nspans} | {size} |")
    w("")
    for d in dirs:
        w(f"- `{d}/`: {JAVA_RUNS[d][1]}.")
    w("- No `java-json/`: the agent's exporter speaks `grpc` and `http/protobuf` only. With "
      "`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json` the agent logs `ConfigurationException: Unsupported "
      "OTLP traces protocol: http/json` and exports nothing.\n")

    w("### Scenario groups (Java)\n")
    w("| group | what | " + " | ".join(dirs) + " |")
    w("| --- | --- | " + " | ".join("---" for _ in dirs) + " |")
    groups = per_dir[dirs[0]][0]
    for i, g in enumerate(groups):
        cells = []
        for d in dirs:
            index, _, bodies, _ = per_dir[d]
            cells.append(", ".join(f"`{n}` ({len(list(spans(bodies[n])))} spans)" for n in index[i]["files"]))
        w(f"| {g['group']} | {g['what']} | " + " | ".join(cells) + " |")
    w("")
    w("Requests per group (identical for both runs):\n")
    for g in groups:
        w(f"- **{g['group']}**: " + ", ".join(f"`{r}`" for r in g["requests"]))
    w("")

    w("### Where the numbers occur (Java)\n")
    w("As above, plus the split form as a URL carries it, the space percent-encoded (`%20`) or form-encoded "
      "(`+`). The last column is what is left of each in the processed output (`testdata/expected/<dir>/`, "
      "the default config).\n")
    for d in dirs:
        _, _, bodies, outs = per_dir[d]
        seen = occurrences(people, bodies)
        left = occurrences(people, outs)
        w(f"#### `{d}/`\n")
        w("| field | attribute / event | value type | numbers | files | left after tracescrub |")
        w("| --- | --- | --- | --- | --- | --- |")
        for (kind, where, vtype), v in sorted(seen.items()):
            rest = left.get((kind, where, vtype))
            w(f"| {kind} | {('`' + where + '`') if where else ''} | {vtype} | {', '.join(sorted(v['hits']))} | "
              f"{', '.join(sorted(v['files']))} | {(', '.join(sorted(rest['hits'])) if rest else 'nothing') if outs else 'no expected output yet'} |")
        w("")

    w("### What the agent's defaults hide, and what they do not\n")
    w("Read from the captures above; \"sanitizer off\" is `java-protobuf-unsanitized/`.\n")
    w("| field | agent defaults | sanitizer off | tracescrub, default config |")
    w("| --- | --- | --- | --- |")
    rows = [
        ("span name (server)", "the route template: `GET /api/person/{fnr}`; never the raw path", "same",
         "nothing to mask"),
        ("`http.route`", "the template `/api/person/{fnr}`", "same", "nothing to mask"),
        ("`url.path`", "**leaks**: `/api/person/<n>`, `/api/person/<n>/consent`, `/api/person/<n>/address`",
         "same", "masked"),
        ("`url.query`", "**leaks**: `fnr=<n>`, `ids=<n>,<n>`, `q=<n>`, `q=DDMMYY-NNNNN`, and the typed space "
         "as sent, `q=DDMMYY%20NNNNN` / `q=DDMMYY+NNNNN`", "same",
         "masked, the `%20` and `+` forms too (see below)"),
        ("`url.full` (JDK HttpClient span)", "**leaks**: path and query of the outgoing call", "same", "masked"),
        ("`db.statement` (JDBC)", "bound parameters appear as `?` (never recorded); inlined literals are "
         "replaced by `?` by the sanitizer", "**leaks**: inlined literals `'<n>'`, `IN ('<n>', '<n>')`, and "
         "the split form `'DDMMYY NNNNN'` / `'DDMMYY-NNNNN'`; bound parameters still `?`", "masked"),
        ("`db.query.text` (JDBC, stable semconv)", "not emitted (old semconv by default)",
         "same as `db.statement`", "masked"),
        ("`db.statement` (Lettuce)", "**leaks**: the key is kept, only values become `?`: `GET person:<n>`, "
         "`SET person:<n> ? ? ?`, `HSET person:<n>:meta source ?`", "keys and values: `SET person:<n> "
         "Kari Nordmann EX 300`", "masked (the names stay)"),
        ("`messaging.kafka.message.key`", "**leaks** for String keys (producer and consumer spans); a "
         "`byte[]` key is not recorded at all", "same", "masked"),
        ("`exception.message`, `exception.stacktrace`", "**leak**: the message as thrown (exception event on "
         "the server span); status code ERROR with no status message", "same", "masked"),
        ("span name (Kafka, JDBC, Redis)", "topic, `SELECT db.table` or the command: no numbers", "same",
         "nothing to mask"),
        ("trace state", "**leaks**: the incoming `tracestate` is kept on the server span", "same", "masked"),
    ]
    for r in rows:
        w("| " + " | ".join(r) + " |")
    w("")
    w("The split form with the space URL-encoded, `q=DDMMYY%20NNNNN` and `q=DDMMYY+NNNNN` in `url.query` of "
      "the search server spans, was what the first recording found tracescrub leaving: its candidates then "
      "took only a literal space or dash between the 6 and the 5 digits. The engine and `tracescrub audit` "
      "now read form-encoded separators (`+`, `%20`, `%2D`, `%C2%A0`) and keep them as they are "
      "(`q=******%20*****`). Everything the tables above list is masked.\n")
    w("Other things seen while recording:\n")
    w("- Spring Boot 4 sets Lettuce's tracing to its own Micrometer observation "
      "(`LettuceObservationAutoConfiguration`), which replaces the agent's Lettuce instrumentation: without "
      "a tracer bridge the agent then records no Redis span at all. The service excludes that "
      "auto-configuration (`application.properties`), as a team running the agent on Boot 4 has to.")
    w("- The actuator's probe endpoints are matched by Spring MVC as `/actuator/health/**`: the server span "
      "of `/actuator/health/liveness` is named `GET /actuator/health/**` and `http.route` says the same, "
      "so only `url.path` names the probe.")
    w("- Some JDBC spans have an empty `db.statement` and are named after the database alone: connection "
      "checks (`Connection.isValid`, as the pool and the actuator's `db` health indicator call it).")
    w("- The Kafka consumer spans (`<topic> process`, spring-kafka) are children of the producer spans, "
      "through the record headers; the listener's Redis `SET` is their child.\n")

    w("### Versions (Java)\n")
    for t in tools:
        name, _, ver = t.partition("=")
        w(f"- {name} {ver}")
    w("")
    jar = os.path.join(java_dir, "target", "capture-service.jar")
    if os.path.isfile(jar):
        import zipfile
        libs = [os.path.basename(n)[:-4] for n in zipfile.ZipFile(jar).namelist()
                if n.startswith("BOOT-INF/lib/") and n.endswith(".jar")]
        w("| artifact | version |")
        w("| --- | --- |")
        for art in ["spring-boot", "spring-webmvc", "tomcat-embed-core", "HikariCP", "postgresql", "spring-data-redis",
                    "lettuce-core", "spring-kafka", "kafka-clients", "kafka_2.13"]:
            for lib in libs:
                m = re.fullmatch(re.escape(art) + r"-([0-9][^-]*(?:-[A-Za-z0-9.]+)?)", lib)
                if m:
                    w(f"| {art} | {m.group(1)} |")
        w("")
    w("Maven artifacts: the Spring Boot 4.0.7 parent's versions (`testdata/capture/java/pom.xml`); the "
      "service jar and the agent jar are built into `testdata/capture/java/target/`, never committed.")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--captures", required=True, help="the bodies: testdata/captures/")
    ap.add_argument("--recorded", required=True, help="the metadata, and where MANIFEST.md goes: testdata/capture/recorded/")
    ap.add_argument("--node-dir", required=True)
    ap.add_argument("--tool", action="append", default=[], help="NAME=VERSION of a tool used")
    ap.add_argument("--seconds", type=int, default=0)
    ap.add_argument("--java-tool", action="append", default=[], help="NAME=VERSION of a tool the Java runs used")
    ap.add_argument("--java-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "java"))
    ap.add_argument("--expected", default=None, help="the processed outputs (default: testdata/expected/)")
    ap.add_argument("--only-java", action="store_true",
                    help="rewrite only the Java section of an existing MANIFEST.md")
    args = ap.parse_args()
    expected = args.expected or os.path.join(os.path.dirname(os.path.abspath(args.captures)), "expected")
    cap = args.captures
    rec = args.recorded
    with open(os.path.join(rec, "numbers.json"), encoding="utf-8") as f:
        numbers = json.load(f)
    people = numbers["people"]
    dirs = [d for d in RUNS if os.path.isdir(os.path.join(cap, d))]
    manifest = os.path.join(rec, "MANIFEST.md")
    java = java_section(cap, rec, expected, people, args.java_tool, args.java_dir)
    if args.only_java:
        with open(manifest, encoding="utf-8") as f:
            text = f.read()
        cut = text.find("\n" + JAVA_MARK + "\n")
        head = text if cut < 0 else text[:cut + 1]
        with open(manifest, "w", encoding="utf-8") as f:
            f.write(head.rstrip("\n") + "\n\n" + java)
        return 0

    out = []
    w = out.append
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    w("# Recorded OTLP trace batches\n")
    w(f"Generated {today} by `testdata/capture/regenerate.sh` (took {args.seconds} s). Do not edit by hand: "
      "rerun the script, which rewrites everything under `testdata/captures/` (the bodies only), "
      "`testdata/capture/recorded/` (this file and the other metadata) and `testdata/expected/` "
      "(the processed outputs the golden test compares against).\n")
    w("Every body was sent by a real OpenTelemetry SDK exporter (OTLP/HTTP) from a small service that "
      "talked to a real PostgreSQL and Redis on 127.0.0.1, and was stored verbatim by a capture sink "
      "(`testdata/sink/otlp_sink.py`). Gzip bodies are stored decompressed; the first one in each gzip "
      "directory is also kept as sent (`.gz`). Between regenerations only trace and span ids, "
      "timestamps, `service.instance.id` and the client's ephemeral port (`net.peer.port`, "
      "`network.peer.port`, `client.port` on server spans) change, plus the checkout path inside "
      "exception stack traces; the rest is the same request for request.\n")

    # --- directories
    w("## Directories\n")
    w("| directory | service | exporter | wire | files | spans | bytes |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    per_dir = {}
    for d in dirs:
        path = os.path.join(cap, d)
        with open(os.path.join(rec, d, "index.json"), encoding="utf-8") as f:
            index = json.load(f)
        with open(os.path.join(rec, d, "requests.jsonl"), encoding="utf-8") as f:
            reqs = {r["file"]: r for r in map(json.loads, f)}
        bodies = {}
        for g in index:
            for name in g["files"]:
                bodies[name] = load(os.path.join(path, name))
        per_dir[d] = (index, reqs, bodies)
        size = sum(os.path.getsize(os.path.join(path, x)) for x in os.listdir(path))
        nspans = sum(len(list(spans(b))) for b in bodies.values())
        r0 = next(iter(reqs.values()))
        service, exporter, notes = RUNS[d]
        w(f"| `{d}/` | {service} | `{exporter}` | {r0['content_type']}, {r0['content_encoding']} | "
          f"{len(os.listdir(path))} | {nspans} | {size} |")
    w("")
    for d in dirs:
        w(f"- `{d}/`: {RUNS[d][2]}.")
    w("\n`testdata/captures/<dir>/` holds nothing but the bodies, so `tracescrub replay testdata/captures` "
      "reads only batches. What was recorded about them is here, in `testdata/capture/recorded/<dir>/`: "
      "`index.json` (which requests went into which file) and `requests.jsonl` (content type, encoding, "
      "sizes and user agent of each export request).\n")

    # --- groups
    w("## Scenario groups\n")
    w("The driver (`testdata/capture/drive.py`) sends the same requests to every service, one group at a time, "
      "and forces a flush after each group, so each group is one export request (one file).\n")
    w("| group | what | " + " | ".join(dirs) + " |")
    w("| --- | --- | " + " | ".join("---" for _ in dirs) + " |")
    groups = per_dir[dirs[0]][0]
    for i, g in enumerate(groups):
        cells = []
        for d in dirs:
            index, _, bodies = per_dir[d]
            cells.append(", ".join(f"`{n}` ({len(list(spans(bodies[n])))} spans)" for n in index[i]["files"]))
        w(f"| {g['group']} | {g['what']} | " + " | ".join(cells) + " |")
    w("")
    w("Requests per group (identical for all services):\n")
    for g in groups:
        w(f"- **{g['group']}**: " + ", ".join(f"`{r}`" for r in g["requests"]))
    w("")

    # --- numbers
    w("## Fictional personal numbers\n")
    w("Generated by `testdata/capture/personal_numbers.py` with the mod-11 rules (k1 weights 3 7 6 1 8 9 4 5 2, "
      "k2 weights 5 4 3 2 7 6 5 4 3 2; 11 -> 0, 10 -> next individual number). The ordinary, D- and "
      "H-numbers have birth years 2035-2039 with individual numbers >= 500, which the century rules put in "
      "the future, so no real person can hold them; the synthetic number is fictional by definition. "
      "Machine-readable copy: `testdata/capture/recorded/numbers.json`.\n")
    w("| key | number | kind | birth date | split form |")
    w("| --- | --- | --- | --- | --- |")
    for p in people:
        w(f"| {p['key']} | `{p['number']}` | {p['kind']} | {p['born']} | `{p['split_space']}` / `{p['split_dash']}` |")
    w("\nLook-alikes that are **not** personal numbers and must be left alone:\n")
    for n in numbers["non_numbers"]:
        w(f"- `{n['value']}` ({n['key']}): {n['why']}")
    w("")

    # --- where numbers occur
    w("## Where the numbers occur\n")
    w("Computed from the files: every place a personal number occurs as a maximal run of 11 digits, in "
      "split form (`DDMMYY NNNNN` / `DDMMYY-NNNNN`), or, for int values, with its leading zero dropped. "
      "`<n>` stands for a number inside a span name, event name or attribute key. The look-alikes above "
      "occur in the `ordinary` and `mixed` groups (paths, SQL literals, Redis keys) and are not listed.\n")
    for d in dirs:
        _, _, bodies = per_dir[d]
        seen = {}
        for name, body in bodies.items():
            for kind, where, vtype, text in fields(body):
                for who, how in hits(people, vtype, text):
                    key = (kind, placeholder(people, where), vtype)
                    seen.setdefault(key, {"files": set(), "hits": set()})
                    seen[key]["files"].add(name)
                    seen[key]["hits"].add(who if how == "whole" else f"{who} ({how})")
        w(f"### `{d}/`\n")
        w("| field | attribute / event | value type | numbers | files |")
        w("| --- | --- | --- | --- | --- |")
        for (kind, where, vtype), v in sorted(seen.items()):
            w(f"| {kind} | {('`' + where + '`') if where else ''} | {vtype} | {', '.join(sorted(v['hits']))} | "
              f"{', '.join(sorted(v['files']))} |")
        w("")

    # --- kafka keys and other SDK limits, computed
    w("## What the SDKs did with Kafka message keys\n")
    w("The producer/consumer spans are made with the SDK API (no broker here), following the messaging "
      "semantic conventions. The service sets `messaging.kafka.message.key` four ways; the table shows "
      "what each exporter actually sent (producer spans).\n")
    w("| directory | string | int (leading zero) | int | bytes |")
    w("| --- | --- | --- | --- | --- |")
    for d in dirs:
        index, _, bodies = per_dir[d]
        kafka = next(g for g in index if g["group"] == "kafka")
        prods = [sp for n in kafka["files"] for sp in spans(bodies[n]) if sp.get("kind") in (4, "SPAN_KIND_PRODUCER")]
        cells = []
        for sp in prods:
            v = attr(sp, "messaging.kafka.message.key")
            cells.append("dropped (no attribute)" if v is None else "`" + json.dumps(v) + "`")
        w(f"| `{d}/` | " + " | ".join(cells) + " |")
    w("")
    w("Other limits seen while recording:\n")
    w("- Python has a JSON exporter: `opentelemetry-exporter-otlp-json-http` (beta, 0.x). "
      "`opentelemetry-exporter-otlp-proto-http` itself only does protobuf.")
    w("- The Python SDK keeps `bytes` attribute values (AnyValue `bytes_value`, base64 in JSON) and dict "
      "values (`kvlist_value`). The JS SDK drops both `Buffer`/`Uint8Array` and object attribute values "
      "(`app.person` and the bytes key are missing from the Node captures).")
    w("- The Python Redis instrumentation sanitises arguments (`db.statement` is `GET ?`), so Redis keys "
      "holding numbers appear only in the Node captures (`db.query.text` `get person:<n>`; for `set` it "
      "keeps the key and writes `[N other arguments]`).")
    w("- Bind values: Python's psycopg instrumentation records them in `db.statement.parameters` "
      "(`capture_parameters=True`); Node's pg instrumentation in `db.postgresql.values` "
      "(`enhancedDatabaseReporting: true`). Both are off by default.")
    w("- Node's OTLP/JSON encodes `intValue` as a JSON number, not the string proto3 JSON asks for; "
      "Python's JSON exporter uses strings.")
    w("- Express routes are case-insensitive by default, so `/isalive`, `/ISALIVE`, `/isready` and "
      "`/Metrics` reach the `/isAlive`, `/isReady` and `/metrics` handlers, but the instrumentation then "
      "records no `http.route` and names the server span just `GET`: only `url.path` tells it is a health "
      "check. Flask needs a route per spelling and records it as `http.route`.")
    w("- ioredis 6 sends `CLIENT SETINFO` on connect, which Redis 7.0 rejects: the Node health group "
      "starts with two Redis spans in error, with exception events.")
    w("- Exception stack traces contain the absolute paths of the checkout that recorded them.\n")

    # --- versions
    w("## Versions\n")
    for t in args.tool:
        name, _, ver = t.partition("=")
        w(f"- {name} {ver}")
    w("")
    w("| Python package | version |")
    w("| --- | --- |")
    for p in PY_PACKAGES:
        try:
            v = md.version(p)
        except md.PackageNotFoundError:
            v = "?"
        w(f"| {p} | {v} |")
    w("")
    w("| npm package | version |")
    w("| --- | --- |")
    for p in NODE_PACKAGES:
        w(f"| {p} | {node_version(args.node_dir, p)} |")
    w("")
    w("Exact pins: `testdata/capture/requirements.txt`, `testdata/capture/node/package-lock.json`.")

    with open(manifest, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n" + ("\n" + java if java else ""))


if __name__ == "__main__":
    sys.exit(main())
