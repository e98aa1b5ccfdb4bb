#!/usr/bin/env python3
"""Drive one capture service through the scenario groups (stdlib only).

After each group it asks the service to flush (POST /_capture/flush), so each
group lands in its own export request, i.e. its own file in the sink's
directory. Writes --index (a JSON file kept outside that directory, which
holds only batches) mapping files to groups and requests.
Exits non-zero if any response has an unexpected status.
"""

import argparse
import json
import os
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
    args = ap.parse_args()
    with open(args.numbers, encoding="utf-8") as f:
        numbers = json.load(f)

    index, failures = [], []
    for name, what, requests in scenarios(numbers):
        before = set(bodies(args.out))
        for req in requests:
            path, want = req[0], req[1]
            got = call(args.base, path, headers=req[2] if len(req) > 2 else None)
            if got != want:
                failures.append(f"{name}: GET {path} -> {got}, want {want}")
        # Let the last server span end (it ends just after the response is
        # written) before cutting the batch.
        time.sleep(0.5)
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
