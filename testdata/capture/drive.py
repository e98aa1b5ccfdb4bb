#!/usr/bin/env python3
"""Drive one capture service through the scenario groups (stdlib only).

After each group it asks the service to flush (POST /_capture/flush), so each
group lands in its own export request, i.e. its own file in the sink's
directory.

The Java agent offers no flush a service could call; for it, --sync sink
(with --scenarios java) runs every group once unrecorded to warm the JVM up,
then lines each group up with the agent's export schedule instead: the sink
was started --disarmed, the driver waits for the export that carries the
warm-up, empties Redis (so the recorded run sees the same cache misses),
arms the sink and sends the first group at once, then sends each next group
as soon as the previous group's export has arrived. With the exporter's
schedule delay (OTEL_BSP_SCHEDULE_DELAY) well above a group's duration, each
group lands whole in the next export.

Writes --index (a JSON file kept outside that directory, which holds only
batches) mapping files to groups and requests.
Exits non-zero if any response has an unexpected status.
"""

import argparse
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request

# A fixed parent for one request, to record a tracestate that carries a number.
TRACEPARENT = "00-5ca1ab1e0000000000000000000f0011-00000000000f0012-01"


def scenarios(numbers):
    p = {x["key"]: x for x in numbers["people"]}
    n = {x["key"]: x["value"] for x in numbers["non_numbers"]}
    fnr, lz, dnr, hnr, syn = (p[k]["number"] for k in ("fnr", "fnr_leading_zero", "dnr", "hnr", "synthetic"))
    ok = 200
    return [
        ("health", "every default noise glob, case variants and a query string; each pings Postgres and Redis", [
            ("/isAlive", ok), ("/isalive", ok), ("/ISALIVE", ok), ("/isAlive?probe=kubelet", ok),
            ("/isReady", ok), ("/isready", ok), ("/prometheus", ok), ("/metrics", ok), ("/Metrics", ok),
            ("/actuator/health", ok), ("/actuator/health/liveness", ok),
            ("/internal/health", ok), ("/internal/healthz", ok), ("/internal/status", ok),
        ]),
        ("near-miss", "paths that resemble health checks but are not noise", [
            ("/api/user-metrics", ok), ("/api/actuator-report", ok), ("/api/metricsfoo", ok),
            ("/actuator", ok), ("/isAliveness", ok),
        ]),
        ("person", "lookups: numbers in paths, query strings, SQL literals and bind values, Redis keys, "
                   "span names, events, attribute keys, arrays, the split form and tracestate", [
            (f"/api/person/{fnr}", ok), (f"/api/person/{lz}", ok), (f"/api/person/{dnr}", ok),
            (f"/api/person/{hnr}", ok), (f"/api/person/{syn}", ok),
            (f"/api/person/{fnr}", ok),  # second time: a Redis cache hit
            (f"/api/person?fnr={dnr}", ok), (f"/api/person?fnr={syn}", ok),
            (f"/api/persons?ids={fnr},{hnr}", ok),
            (f"/api/search?q={p['fnr_leading_zero']['split_dash']}", ok),
            (f"/api/person/{hnr}", ok, {"traceparent": TRACEPARENT, "tracestate": f"acme={fnr},other=ok"}),
        ]),
        ("error", "handlers that raise an exception whose message holds a number", [
            (f"/api/person/{fnr}/consent", 500), (f"/api/person/{syn}/consent", 500),
        ]),
        ("ordinary", "no personal numbers; 11- and 12-digit ids that must be left alone", [
            (f"/api/orders/{n['order_id']}", ok), (f"/api/orders/{n['bad_checksum']}", ok),
            (f"/api/orders/{n['twelve_digits']}", ok), ("/api/orders?limit=3", ok), ("/api/products", ok),
        ]),
        ("kafka", "producer and consumer spans made with the SDK API; message keys as string, int and bytes", [
            ("/api/events/publish", ok),
        ]),
        ("mixed", "noise and lookups interleaved in one batch, as a real exporter would send them", [
            ("/isAlive", ok), (f"/api/person/{dnr}", ok), ("/metrics", ok), (f"/api/orders/{n['order_id']}", ok),
            ("/internal/health", ok), (f"/api/person?fnr={fnr}", ok), ("/actuator", ok),
        ]),
    ]


def java_scenarios(numbers):
    """The groups for the Spring Boot service: its own noise (actuator and
    NAIS-style probes), the same near misses, person lookups through Spring
    MVC, JDBC, Lettuce and the JDK HTTP client, and real Kafka records."""
    p = {x["key"]: x for x in numbers["people"]}
    n = {x["key"]: x["value"] for x in numbers["non_numbers"]}
    fnr, lz, dnr, hnr, syn = (p[k]["number"] for k in ("fnr", "fnr_leading_zero", "dnr", "hnr", "synthetic"))
    space = p["fnr"]["split_space"].replace(" ", "%20")   # a browser's encoding of the typed space
    plus = p["dnr"]["split_space"].replace(" ", "+")       # a form's encoding of it
    ok = 200
    return [
        ("health", "actuator health, liveness, readiness and the Prometheus scrape, NAIS-style probes and a query "
                   "string; health and readiness query Postgres and Redis", [
            ("/actuator/health", ok), ("/actuator/health/liveness", ok), ("/actuator/health/readiness", ok),
            ("/actuator/prometheus", ok), ("/actuator/health?probe=kubelet", ok),
            ("/internal/isAlive", ok), ("/internal/isReady", ok),
        ]),
        ("near-miss", "paths that resemble health checks but are not noise (`/actuator` is the actuator's "
                      "discovery page)", [
            ("/api/user-metrics", ok), ("/api/actuator-report", ok), ("/api/metricsfoo", ok),
            ("/actuator", ok), ("/isAliveness", ok),
        ]),
        ("person", "lookups: numbers in paths and query strings (typed with and without a space or dash), bound "
                   "and inlined SQL, Redis GET/SET/HSET keys, an outgoing HTTP call, and tracestate", [
            (f"/api/person/{fnr}", ok), (f"/api/person/{lz}", ok), (f"/api/person/{dnr}", ok),
            (f"/api/person/{hnr}", ok), (f"/api/person/{syn}", ok),
            (f"/api/person/{fnr}", ok),  # second time: a Redis cache hit
            (f"/api/person?fnr={dnr}", ok), (f"/api/persons?ids={fnr},{hnr}", ok),
            (f"/api/search?q={lz}", ok), (f"/api/search?q={space}", ok), (f"/api/search?q={plus}", ok),
            (f"/api/search?q={p['synthetic']['split_dash']}", ok),
            (f"/api/person/{hnr}/address", ok),
            (f"/api/person/{hnr}", ok, {"traceparent": TRACEPARENT, "tracestate": f"acme={fnr},other=ok"}),
        ]),
        ("error", "handlers that raise an exception whose message holds a number", [
            (f"/api/person/{fnr}/consent", 500), (f"/api/person/{syn}/consent", 500),
        ]),
        ("ordinary", "no personal numbers; 11- and 12-digit ids that must be left alone", [
            (f"/api/orders/{n['order_id']}", ok), (f"/api/orders/{n['bad_checksum']}", ok),
            (f"/api/orders/{n['twelve_digits']}", ok), ("/api/orders?limit=3", ok), ("/api/products", ok),
        ]),
        ("kafka", "a real KafkaProducer and @KafkaListener consumers on a local KRaft broker; record keys as String "
                  "and byte[]", [
            ("/api/events/publish", ok),
        ]),
        ("mixed", "noise and lookups interleaved in one batch, as a real exporter would send them", [
            ("/actuator/health", ok), (f"/api/person/{dnr}", ok), ("/actuator/prometheus", ok),
            (f"/api/orders/{n['order_id']}", ok), ("/internal/isReady", ok), (f"/api/person?fnr={fnr}", ok),
            ("/actuator", ok),
        ]),
    ]


SCENARIOS = {"default": scenarios, "java": java_scenarios}


def sink_state(sink):
    with urllib.request.urlopen(sink + "/-/state", timeout=10) as r:
        return json.load(r)


class NoExport(Exception):
    pass


def wait_for_export(sink, after, seconds):
    """Block (bounded) until the sink has received more than `after` exports."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = sink_state(sink)
        if state["received"] > after:
            return state
        time.sleep(0.02)
    raise NoExport(f"no export arrived within {seconds} s (received {after})")


def redis_flushall(port):
    """FLUSHALL straight over a socket: not through the traced service."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"FLUSHALL\r\n")
        reply = s.recv(64)
    if not reply.startswith(b"+OK"):
        raise SystemExit(f"Redis FLUSHALL: {reply!r}")


def call(base, path, method="GET", headers=None):
    req = urllib.request.Request(base + path, method=method, headers=headers or {},
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


def bodies(out):
    return sorted(f for f in os.listdir(out) if f.endswith((".binpb", ".json")) and f[:4].isdigit())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--numbers", required=True)
    ap.add_argument("--out", required=True, help="the sink's output directory (read only)")
    ap.add_argument("--index", required=True, help="where to write the group -> files index (JSON)")
    ap.add_argument("--scenarios", choices=sorted(SCENARIOS), default="default")
    ap.add_argument("--sync", choices=["flush", "sink"], default="flush",
                    help="flush: POST /_capture/flush after each group; sink: follow the exporter's schedule")
    ap.add_argument("--sink", help="the sink's base URL (--sync sink)")
    ap.add_argument("--redis-port", type=int, help="Redis to empty after the warm-up (--sync sink)")
    ap.add_argument("--schedule-ms", type=int, default=5000, help="the exporter's schedule delay (--sync sink)")
    args = ap.parse_args()
    with open(args.numbers, encoding="utf-8") as f:
        numbers = json.load(f)
    groups = SCENARIOS[args.scenarios](numbers)
    wait = args.schedule_ms / 1000 + 10

    index, failures = [], []
    if args.sync == "sink":
        # Warm-up, unrecorded: every request once, so no group runs cold.
        for _, _, requests in groups:
            for req in requests:
                call(args.base, req[0], headers=req[2] if len(req) > 2 else None)
        time.sleep(0.5)
        # Every warm-up span has ended: the next export takes whatever is
        # still queued. If nothing is (it all went out already), queue one
        # more request and take the export that carries it.
        received = sink_state(args.sink)["received"]
        try:
            received = wait_for_export(args.sink, received, args.schedule_ms / 1000 + 2)["received"]
        except NoExport:
            call(args.base, "/api/products")
            time.sleep(0.5)
            received = wait_for_export(args.sink, received, wait)["received"]
        # Right after an export the next is a whole schedule delay away.
        redis_flushall(args.redis_port)
        with urllib.request.urlopen(urllib.request.Request(args.sink + "/-/arm", data=b"", method="POST"),
                                    timeout=10) as r:
            r.read()
    for name, what, requests in groups:
        before = set(bodies(args.out))
        started = time.monotonic()
        for req in requests:
            path, want = req[0], req[1]
            got = call(args.base, path, headers=req[2] if len(req) > 2 else None)
            if got != want:
                failures.append(f"{name}: GET {path} -> {got}, want {want}")
        # Let the last server span end (it ends just after the response is
        # written) before cutting the batch.
        time.sleep(0.5)
        if args.sync == "sink":
            took = time.monotonic() - started
            if took > args.schedule_ms / 1000 * 0.8:
                failures.append(f"{name}: took {took:.1f} s, too close to the export schedule to stay in one batch")
            received = wait_for_export(args.sink, received, wait)["received"]
        else:
            status = call(args.base, "/_capture/flush", method="POST")
            if status != 200:
                failures.append(f"{name}: flush -> {status}")
        files = [f for f in bodies(args.out) if f not in before]
        if not files:
            failures.append(f"{name}: no export request arrived")
        index.append({"group": name, "what": what, "files": files, "requests": [r[0] for r in requests]})
        print(f"  {name:10s} {len(requests):2d} requests -> {', '.join(files) or 'nothing'}")

    os.makedirs(os.path.dirname(os.path.abspath(args.index)), exist_ok=True)
    with open(args.index, "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
