"""Reload of one team file under load: the gateway runs a version-2 config
with a teams directory of three team files, and one of them is rewritten
again and again (some rewrites broken) while senders keep batches from two
namespaces flowing."""

import http.client
import os
import time
import urllib.parse

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

import harness
import load

SENDERS = 4
MIN_BATCHES = 600

CONFIG = "version: 2\nteams:\n  dir: teams/\n"
# team-a's two good versions: one drops /x-noise (and, as a team rule, its
# descendants in team-a), one does not.
DROPS = 'noise:\n  extra_globs: ["*/x-noise"]\n'
KEEPS = 'noise:\n  extra_globs: ["*/x-other"]\n'
# Broken versions. Each would also drop /x-broken if it ever applied; a file
# with any problem is left out whole, and serve keeps team-a's last good one.
BROKEN = {
    "mask-off": 'noise:\n  extra_globs: ["*/x-noise", "*/x-broken"]\nmask:\n  enabled: false\n',
    "bad-yaml": 'noise:\n  extra_globs: ["*/x-noise", "*/x-broken"\n',
}
# The rewrites of team-a.yaml after the first version (KEEPS): each broken
# one comes after a DROPS, so "left out" (nothing dropped) and "last good
# kept" (/x-noise dropped) tell apart.
REWRITES = ["drop", "keep", "drop", "mask-off", "keep", "drop", "bad-yaml", "keep", "drop", "keep"]
TEXT = {"drop": DROPS, "keep": KEEPS, **BROKEN}

# Spans of each namespace's resource, by name. team-a's /x-noise has a child.
A_SPANS = ["GET /api/order/{id}", "GET /x-noise", "SELECT noise", "GET /x-broken"]
B_SPANS = ["GET /api/invoice/{id}", "GET /x-noise", "GET /b-noise"]
A_KEEP = sorted(n for n in A_SPANS if n not in ("GET /x-noise", "SELECT noise"))
A_ALL = sorted(A_SPANS)
B_AT_SINK = sorted(n for n in B_SPANS if n != "GET /b-noise")


def build_batch(batch_id, seq):
    """One request with a resource from team-a and one from team-b, both
    tagged `test.batch_id`; each has a lookup whose URL path holds a valid
    personal number."""
    req = ExportTraceServiceRequest()
    trace_id = seq.to_bytes(8, "big") + b"\x5a" * 8
    t0 = 1_700_000_000_000_000_000 + seq * 1_000_000
    n = 0
    for namespace, service, names in (("team-a", "shop", A_SPANS), ("team-b", "billing", B_SPANS)):
        rs = req.resource_spans.add()
        for k, v in (("k8s.namespace.name", namespace), ("service.name", service), ("test.batch_id", batch_id)):
            kv = rs.resource.attributes.add()
            kv.key = k
            kv.value.string_value = v
        ss = rs.scope_spans.add()
        ss.scope.name = "tracescrub.serve-tests"
        parent = None
        for name in names:
            s = ss.spans.add()
            s.trace_id = trace_id
            s.span_id = (seq * 16 + n).to_bytes(7, "big") + bytes([n + 1])
            n += 1
            s.name = name
            s.kind = Span.SPAN_KIND_CLIENT if name.startswith("SELECT") else Span.SPAN_KIND_SERVER
            s.start_time_unix_nano = t0 + n
            s.end_time_unix_nano = t0 + n + 500_000
            if name == "SELECT noise":
                s.parent_span_id = parent
            path = name.split(" ", 1)[1]
            if "{id}" in path:
                path = path.replace("{id}", load.POOL[(seq + n) % len(load.POOL)])
            if name.startswith("GET"):
                kv = s.attributes.add()
                kv.key = "url.path"
                kv.value.string_value = path
            if name == "GET /x-noise":
                parent = s.span_id
    return req.SerializeToString()


def state_of(arrivals, batch_id):
    """`drop` or `keep`: what team-a's rules did to one batch at the sink;
    raises if the batch is not whole or not one of the two."""
    by_ns = {}
    for rs in arrivals:
        by_ns.setdefault(rs["resource"].get("k8s.namespace.name"), []).append(rs)
    if sorted(by_ns) != ["team-a", "team-b"] or any(len(v) != 1 for v in by_ns.values()):
        raise ValueError(f"{batch_id}: resources {sorted((k, len(v)) for k, v in by_ns.items())}")
    b = sorted(s["name"] for s in by_ns["team-b"][0]["spans"])
    if b != B_AT_SINK:
        raise ValueError(f"{batch_id}: team-b spans {b}")
    a = sorted(s["name"] for s in by_ns["team-a"][0]["spans"])
    if a == A_KEEP:
        return "drop"
    if a == A_ALL:
        return "keep"
    raise ValueError(f"{batch_id}: team-a spans {a}")


def group(records):
    """Batch id -> its resource_spans entries at the sink."""
    by_id = {}
    for rec in records:
        for rs in rec["resource_spans"]:
            by_id.setdefault(rs["resource"].get("test.batch_id"), []).append(rs)
    return by_id


def send(url, body):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        return resp.status, resp.read()[:200]
    finally:
        conn.close()


def team_failures(gw):
    return harness.metric_sum(gw.metrics(), "tracescrub_team_file_failures_total")


def test_one_team_file_reloads_under_load_and_loses_nothing(tmp_path, procs, report):
    """Scenario: `tracescrub serve` with a version-2 config and a teams
    directory of three team files (team-a, team-b, team-c); 4 senders post
    batches with a team-a and a team-b resource, while team-a.yaml alone is
    rewritten 10 times, alternating a version that drops `/x-noise` and one
    that does not, two of them broken (a key a team may not set, bad YAML).
    After each rewrite the test waits for the reload (the active config hash
    covers the team files) and sends a probe batch.
    Guarantees: every acknowledged batch arrives whole, exactly once
    (lost=0); team-b's spans are never touched by team-a's rule (its
    /x-noise always arrives, its own rule always applies); each team-a
    resource is either wholly under the dropping version (/x-noise and its
    child gone) or wholly under the keeping one; a broken rewrite is counted
    (tracescrub_team_file_failures_total), never applies (/x-broken always
    arrives, masking stays on: no personal number at the sink), and team-a's
    last good version keeps applying; batches went through both versions."""
    started = time.monotonic()
    work = str(tmp_path)
    teams = os.path.join(work, "teams")
    os.mkdir(teams)
    team_a = os.path.join(teams, "team-a.yaml")
    harness.write_atomic(team_a, KEEPS)
    harness.write_atomic(os.path.join(teams, "team-b.yaml"), 'noise:\n  extra_globs: ["*/b-noise"]\n')
    harness.write_atomic(os.path.join(teams, "team-c.yaml"), 'noise:\n  extra_globs: ["*/x-noise"]\n')
    cfg_path = os.path.join(work, "config.yaml")
    harness.write_atomic(cfg_path, CONFIG)

    sink = harness.Sink(work)
    procs.append(sink)
    gw = harness.Gateway(work, sink.url, config=cfg_path)
    procs.append(gw)
    assert team_failures(gw) == 0

    def probe(label):
        """A batch sent now, and what team-a's rules did to it."""
        batch_id = f"probe-{label}"
        status, detail = send(gw.http_url, build_batch(batch_id, 1_000_000 + len(probes)))
        assert status == 200, f"probe {label}: {status} {detail!r}"
        arrivals = harness.wait_until(lambda: group(sink.records()).get(batch_id), 30,
                                      f"probe {label} at the sink", interval=0.1)
        probes.append(batch_id)
        return state_of(arrivals, batch_id)

    probes = []
    assert probe("start") == "keep"
    senders = load.Load(lambda: gw.http_url, senders=SENDERS, prefix="t", build=build_batch).start()
    last_good, broken = "keep", 0
    try:
        for i, version in enumerate(REWRITES, 1):
            _, cfg_hash = gw.active_version()
            failed_before = team_failures(gw)
            harness.write_atomic(team_a, TEXT[version])
            # The active config hash covers the team files, so it moves
            # once a reload has read this rewrite (a broken one included).
            harness.wait_until(lambda: gw.active_version()[1] != cfg_hash, 30,
                               f"rewrite {i} ({version}) to be reloaded")
            if version in BROKEN:
                harness.wait_until(lambda: team_failures(gw) > failed_before, 30,
                                   f"rewrite {i} ({version}) to be counted as a failed team file")
                broken += 1
            else:
                last_good = version
                assert team_failures(gw) == failed_before, f"rewrite {i} ({version}) counted as failed"
            assert probe(f"{i}-{version}") == last_good, f"after rewrite {i} ({version})"
            # Let the senders run on this version for a moment.
            time.sleep(0.3)
        harness.wait_until(lambda: senders.count() >= MIN_BATCHES, 60, f"{MIN_BATCHES} batches sent")
    finally:
        senders.stop()

    assert gw.alive(), "the gateway died"
    records = sink.records()
    by_id = group(records)
    acked = {b for b, r in senders.results.items() if r[0] == "acked"}
    sent = set(senders.results)
    received = {b for b in by_id if b in sent}
    lost = acked - received
    duplicates = sum(1 for b in received if len(by_id[b]) != 2)
    states, bad = {"drop": 0, "keep": 0}, []
    for b in received:
        try:
            states[state_of(by_id[b], b)] += 1
        except ValueError as e:
            bad.append(str(e))
    leaks = sum(len(r["leaks"]) for r in records)
    unknown = set(by_id) - sent - set(probes)
    reloads = gw.reloads()
    failures = team_failures(gw)
    rejected = sum(1 for r in senders.results.values() if r[0] == "rejected")
    errors = sum(1 for r in senders.results.values() if r[0] == "error")
    report(
        f"team-reload-under-load: sent={len(sent)} acknowledged={len(acked)} received={len(received)} "
        f"lost={len(lost)} duplicates={duplicates} rejected={rejected} errors={errors} "
        f"rewrites={len(REWRITES)} broken={broken} team_file_failures={failures:.0f} "
        f"reloads_ok={reloads.get('success', 0):.0f} reloads_failed={reloads.get('failure', 0):.0f} "
        f"drop_batches={states['drop']} keep_batches={states['keep']} leaks={leaks} "
        f"seconds={time.monotonic() - started:.1f}"
    )

    assert len(sent) >= MIN_BATCHES
    assert len(acked) > 0
    assert not lost, f"{len(lost)} acknowledged batches never reached the sink, e.g. {sorted(lost)[:3]}"
    assert duplicates == 0, f"{duplicates} batches arrived more or less than once per resource"
    assert not unknown, sorted(unknown)[:3]
    assert not bad, f"{len(bad)} batches were not whole under one team-a version, e.g. {bad[:3]}"
    assert leaks == 0, "a personal number reached the sink: masking went off"
    # Both versions served batches under load.
    assert states["drop"] > 0 and states["keep"] > 0, states
    # Each broken rewrite was counted (a second reload of the same broken
    # file, should the watcher set one off, counts it again).
    assert broken == len(BROKEN) and failures >= broken, (failures, broken)
    # Every rewrite reloaded: a broken team file fails that team, not the reload.
    assert reloads.get("success", 0) >= len(REWRITES), reloads
    assert reloads.get("failure", 0) == 0, reloads
