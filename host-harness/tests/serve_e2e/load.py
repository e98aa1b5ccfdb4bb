"""A concurrent OTLP/HTTP protobuf load generator for the serve tests.

Each batch is one ExportTraceServiceRequest with a unique id in the resource
attribute `test.batch_id`, so the sink's records can be matched to what was
sent and what was acknowledged. Every batch is sent exactly once (no
retries): an id seen twice at the sink was duplicated on the way.

A batch holds a person lookup (server span, SQL and Redis children, a Kafka
producer span), each with a different valid personal number in a value whose
text around the number is known, plus a health check with a DB ping under it.
After the gateway, the lookup's four values must carry the same replacement
(stars or one version's label) and the health spans must be gone.
"""

import http.client
import random
import threading
import time
import urllib.parse

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

import fnr

NUM = "\0"  # where the number goes in a template

# (span name, attribute key, value template): the values the tests read back.
TEMPLATES = [
    ("GET /api/person/{fnr}", "url.path", f"/api/person/{NUM}"),
    ("SELECT tracescrub.person", "db.statement", f"SELECT name FROM person WHERE fnr = '{NUM}'"),
    ("GET", "db.statement", f"GET person:{NUM}"),
    ("person-events publish", "messaging.kafka.message.key", NUM),
]
KEPT_NAMES = sorted(t[0] for t in TEMPLATES)


def number_pool(n=64, seed=5):
    """Valid fictional numbers: birth years 2035-2039 with individual numbers
    >= 500 (no one alive can hold them; see testdata/capture/personal_numbers.py)."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        day, month, yy = rng.randint(1, 28), rng.randint(1, 12), rng.randint(35, 39)
        num = fnr.complete(f"{day:02d}{month:02d}{yy:02d}{rng.randint(500, 999):03d}")
        if num and fnr.classify(num):
            out.append(num)
    return out


POOL = number_pool()


def build_batch(batch_id, seq):
    """Serialized request for one batch id."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for k, v in (("service.name", "serve-load"), ("test.batch_id", batch_id)):
        kv = rs.resource.attributes.add()
        kv.key = k
        kv.value.string_value = v
    ss = rs.scope_spans.add()
    ss.scope.name = "tracescrub.serve-tests"
    trace_id = seq.to_bytes(8, "big") + b"\x7e" * 8
    t0 = 1_700_000_000_000_000_000 + seq * 1_000_000

    def span(n, name, kind, parent, attrs):
        s = ss.spans.add()
        s.trace_id = trace_id
        s.span_id = (seq * 16 + n).to_bytes(7, "big") + bytes([n + 1])
        if parent is not None:
            s.parent_span_id = parent.span_id
        s.name = name
        s.kind = kind
        s.start_time_unix_nano = t0 + n
        s.end_time_unix_nano = t0 + n + 500_000
        for k, v in attrs.items():
            kv = s.attributes.add()
            kv.key = k
            if isinstance(v, int):
                kv.value.int_value = v
            else:
                kv.value.string_value = v
        return s

    nums = [POOL[(seq * 4 + i) % len(POOL)] for i in range(4)]
    server = span(0, TEMPLATES[0][0], Span.SPAN_KIND_SERVER, None,
                  {"http.request.method": "GET", TEMPLATES[0][1]: TEMPLATES[0][2].replace(NUM, nums[0])})
    span(1, TEMPLATES[1][0], Span.SPAN_KIND_CLIENT, server,
         {"db.system": "postgresql", TEMPLATES[1][1]: TEMPLATES[1][2].replace(NUM, nums[1])})
    span(2, TEMPLATES[2][0], Span.SPAN_KIND_CLIENT, server,
         {"db.system": "redis", TEMPLATES[2][1]: TEMPLATES[2][2].replace(NUM, nums[2])})
    span(3, TEMPLATES[3][0], Span.SPAN_KIND_PRODUCER, server,
         {"messaging.system": "kafka", TEMPLATES[3][1]: TEMPLATES[3][2].replace(NUM, nums[3])})
    health = span(4, "GET /isAlive", Span.SPAN_KIND_SERVER, None, {"url.path": "/isAlive"})
    span(5, "SELECT 1", Span.SPAN_KIND_CLIENT, health, {"db.statement": f"SELECT 1 -- {nums[0]}"})
    return req.SerializeToString()


def replacements(resource_spans):
    """The replacement text in each of the lookup's four values, or raises
    if the batch does not have the expected shape."""
    spans = {s["name"]: s for s in resource_spans["spans"]}
    if sorted(spans) != KEPT_NAMES:
        raise ValueError(f"span names {sorted(spans)}")
    out = []
    for name, key, template in TEMPLATES:
        value = spans[name]["attrs"][key]
        prefix, suffix = template.split(NUM)
        if not (value.startswith(prefix) and value.endswith(suffix)):
            raise ValueError(f"{name} {key} changed outside the number")
        out.append(value[len(prefix):len(value) - len(suffix)])
    return out


class Load:
    """`senders` threads sending batches to `target()` (a URL, read before
    every batch so a test can point them at a restarted gateway) until
    stop() or until `total` batches are sent. `build(batch_id, seq)` makes
    each batch's bytes (default: build_batch)."""

    def __init__(self, target, senders=6, total=None, prefix="b", timeout=60, build=None):
        self.target = target
        self.build = build or build_batch
        self.senders = senders
        self.total = total
        self.prefix = prefix
        self.timeout = timeout
        self.lock = threading.Lock()
        self.next_seq = 0
        self.stopping = threading.Event()
        # batch id -> (outcome, detail, t_start, t_end); outcome is "acked",
        # "rejected" (an HTTP error status) or "error" (no answer).
        self.results = {}
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(senders)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout=120):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a sender did not finish"

    def _claim(self):
        with self.lock:
            if self.stopping.is_set() or (self.total is not None and self.next_seq >= self.total):
                return None
            self.next_seq += 1
            return self.next_seq

    def count(self, outcome=None):
        with self.lock:
            return sum(1 for r in self.results.values() if outcome is None or r[0] == outcome)

    def _run(self, sender):
        conn, conn_url = None, None
        while True:
            seq = self._claim()
            if seq is None:
                break
            batch_id = f"{self.prefix}-{sender}-{seq}"
            body = self.build(batch_id, seq)
            url = self.target()
            t0 = time.monotonic()
            try:
                if conn is None or conn_url != url:
                    if conn is not None:
                        conn.close()
                    u = urllib.parse.urlsplit(url)
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=self.timeout)
                    conn_url = url
                conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
                resp = conn.getresponse()
                detail = resp.read()[:200]
                outcome = "acked" if resp.status == 200 else "rejected"
                detail = f"{resp.status} {detail!r}"
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                outcome, detail = "error", repr(e)
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                self.results[batch_id] = (outcome, detail, t0, time.monotonic())
            if outcome != "acked":
                time.sleep(0.02)  # do not spin against a gateway that is down
        if conn is not None:
            conn.close()


def match(load, records):
    """Compare what was sent with what the sink received.

    Returns (by_id, counts): by_id maps each received batch id to its
    resource_spans entries (one per arrival); counts has sent, acknowledged,
    received (distinct ids), lost (acknowledged but never received),
    duplicates (extra arrivals), unknown (ids never sent), rejected, errors."""
    by_id = {}
    for rec in records:
        for rs in rec["resource_spans"]:
            by_id.setdefault(rs["resource"].get("test.batch_id"), []).append(rs)
    acked = {b for b, r in load.results.items() if r[0] == "acked"}
    counts = {
        "sent": len(load.results),
        "acknowledged": len(acked),
        "received": len(by_id),
        "lost": len(acked - set(by_id)),
        "duplicates": sum(len(v) - 1 for v in by_id.values()),
        "unknown": len(set(by_id) - set(load.results)),
        "rejected": sum(1 for r in load.results.values() if r[0] == "rejected"),
        "errors": sum(1 for r in load.results.values() if r[0] == "error"),
        "unacked_but_received": len((set(by_id) & set(load.results)) - acked),
    }
    return by_id, counts
