#!/usr/bin/env python3
"""Side by side in one collector: tracescrub (A) against contrib's filter,
transform and redaction processors (B), run by `scripts/collector-compare.sh`.

Starts the capture sink (testdata/sink/otlp_sink.py) and one
`otelcol-tracescrub` with otelcol.yaml (three pipelines: base without
processors, tracescrub, contrib; each with its own OTLP/HTTP receiver port
and the same synchronous OTLP/HTTP exporter to the sink), all on 127.0.0.1 with ports chosen free at run time. Then:

1. Captures: every file of testdata/captures is sent as it is (JSON or
   protobuf, gzipped or not), one at a time, through each pipeline, and the
   sink writes what each pipeline exported. On that output:
   - personal numbers left: `tracescrub audit --raw` (the project's
     independent residual scanner), its `residual=` total;
   - noisy spans left: spans (by trace and span id, per input file) that the
     default tracescrub config drops from the input, found in the output.
     This counts the DB and Redis pings under a health check too; the table
     also gives what `tracescrub replay` of the output alone would still drop
     (it no longer sees a health check that was dropped above a ping);
   - spans lost: spans that the default config keeps, missing from the output.
2. Latency: LATENCY_SAMPLES rounds, one request at a time; each round sends
   the same 1000-span batch through base, tracescrub and contrib (the order
   rotating per round). A pipeline's added latency for a batch is its
   request's time minus base's; p50 and p99 over the rounds.
3. Throughput: CONCURRENCY keep-alive clients send 1000-span batches to one
   pipeline at a time, LOAD_SECONDS per pipeline cut in LOAD_SLICES slices
   taken in turn; the collector's CPU time (utime + stime from
   /proc/PID/stat) over each slice, summed per pipeline, gives the input
   spans of the answered batches per CPU-second.
4. wazero against wasmtime: `tracescrub-conformance bench` and
   `tracescrub bench` (its wasm pass, copies included) on the same
   1000-span batches, with the collector stopped, BENCH_REPEATS times in
   turn; wazero_vs_wasmtime is the median of the back-to-back pairs' ratios
   of spans/s.

The 1000-span batches are built from the protobuf captures: their resources,
scopes and spans in order, cycled, each cycle with fresh trace and span ids
(parent links and links kept consistent), cut at 1000 spans.

Prints a table and, last, the line
`collector-compare: tracescrub_spans_per_cpu_s=N contrib_spans_per_cpu_s=N ratio=R
tracescrub_leaks=N contrib_leaks=N tracescrub_noisy_left=N contrib_noisy_left=N
wazero_vs_wasmtime=R` (one line). Exit status 0 when every measurement ran,
whatever the figures; 1 when one could not.
"""

import argparse
import collections
import gzip
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

HERE = os.path.dirname(os.path.abspath(__file__))
# The shared capture sink: here it parses nothing (it must not be what limits
# the load phases), counts per pipeline path and writes bodies only while
# captures_phase asks it to (`POST /-/record`).
SINK = os.path.abspath(os.path.join(HERE, "..", "..", "testdata", "sink", "otlp_sink.py"))
PIPELINES = ("base", "tracescrub", "contrib")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Fail(Exception):
    """A measurement could not run: the script exits 1 with this message."""


def log(msg):
    print(f"collector-compare: {msg}", file=sys.stderr, flush=True)


def tail(path, n=30):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)\n"


# --- processes ---------------------------------------------------------------


class Procs:
    """Every process this driver starts; stop_all() ends them (SIGTERM, then
    SIGKILL after a bounded wait). Their pids also go to --pid-file, so the
    shell script's trap can stop them if this driver is killed outright."""

    def __init__(self, pid_file):
        self.pid_file = pid_file
        self.procs = []

    def start(self, name, args, log_path, env=None):
        logf = open(log_path, "wb")
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env)
        logf.close()
        self.procs.append((name, p))
        self._write_pids()
        return p

    def _write_pids(self):
        if self.pid_file:
            with open(self.pid_file, "w") as f:
                f.writelines(f"{p.pid}\n" for _, p in self.procs if p.returncode is None)

    def stop(self, p, grace=10):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self._write_pids()

    def stop_all(self):
        for _, p in reversed(self.procs):
            self.stop(p)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, proc, log_path, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise Fail(f"{what}: the process exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise Fail(f"{what}: not ready after {timeout:.0f} s:\n{tail(log_path)}")
        time.sleep(0.1)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (/proc/PID/stat fields 14, 15)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# --- OTLP/HTTP client --------------------------------------------------------


class Client:
    """One keep-alive connection to a receiver; post() returns the status
    (None when there was no answer) and the seconds the request took."""

    def __init__(self, port, timeout=30):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def post(self, body, ctype="application/x-protobuf", encoding=None):
        headers = {"Content-Type": ctype}
        if encoding:
            headers["Content-Encoding"] = encoding
        t0 = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                self.conn.connect()
                # Headers and body go out in separate writes: without this,
                # Nagle's algorithm and the peer's delayed ACK add ~40 ms.
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn.request("POST", "/v1/traces", body=body, headers=headers)
            resp = self.conn.getresponse()
            resp.read()
            status = resp.status
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
        except (OSError, http.client.HTTPException):
            self.close()
            status = None
        return status, time.perf_counter() - t0

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def sink_call(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise Fail(f"sink: {method} {path} answered {resp.status}")
        return json.loads(data or b"{}")
    finally:
        conn.close()


# --- inputs ------------------------------------------------------------------


def read_capture(path):
    """(body as sent, content type, content encoding, decoded bytes)."""
    with open(path, "rb") as f:
        raw = f.read()
    encoding = None
    data = raw
    if raw[:2] == b"\x1f\x8b":
        encoding = "gzip"
        data = gzip.decompress(raw)
    ctype = "application/json" if data.lstrip()[:1] == b"{" else "application/x-protobuf"
    return raw, ctype, encoding, data


def span_ids(data):
    """Counter of (trace id hex, span id hex) for every span of an OTLP
    request, protobuf or JSON (one request per file, as the captures are)."""
    ids = collections.Counter()
    if data.lstrip()[:1] == b"{":
        doc = json.loads(data)
        for rs in doc.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    ids[(s.get("traceId", "").lower(), s.get("spanId", "").lower())] += 1
        return ids
    req = ExportTraceServiceRequest()
    req.ParseFromString(data)
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                ids[(s.trace_id.hex(), s.span_id.hex())] += 1
    return ids


def capture_files(captures):
    out = []
    for root, _, files in os.walk(captures):
        for name in files:
            out.append(os.path.join(root, name))
    return sorted(out)


def build_batches(captures, n_batches, spans_per_batch):
    """n_batches requests of spans_per_batch spans each, cycled through the
    protobuf captures' resources, scopes and spans in order. Each cycle
    XORs trace and span ids (and parent and link ids alike) with its own
    mask, so no two cycles share ids and each trace keeps its shape."""
    units = []  # (resource, scope, span) in capture order
    for path in capture_files(captures):
        if not path.endswith(".binpb"):
            continue
        req = ExportTraceServiceRequest()
        with open(path, "rb") as f:
            req.ParseFromString(f.read())
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    units.append((rs, ss, s))
    if not units:
        raise Fail(f"no protobuf captures under {captures}")

    def xor(b, mask):
        return bytes(x ^ y for x, y in zip(b, mask)) if b else b

    batches, i = [], 0
    for _ in range(n_batches):
        req = ExportTraceServiceRequest()
        cur_key, cur_ss = None, None
        for _ in range(spans_per_batch):
            cycle, k = divmod(i, len(units))
            rs, ss, s = units[k]
            i += 1
            key = (id(rs), id(ss), cycle)
            if key != cur_key:
                new_rs = req.resource_spans.add()
                new_rs.resource.CopyFrom(rs.resource)
                new_rs.schema_url = rs.schema_url
                cur_ss = new_rs.scope_spans.add()
                cur_ss.scope.CopyFrom(ss.scope)
                cur_ss.schema_url = ss.schema_url
                cur_key = key
            mask16 = (cycle + 1).to_bytes(4, "big") * 4
            mask8 = mask16[:8]
            n = cur_ss.spans.add()
            n.CopyFrom(s)
            n.trace_id = xor(s.trace_id, mask16)
            n.span_id = xor(s.span_id, mask8)
            n.parent_span_id = xor(s.parent_span_id, mask8)
            for link in n.links:
                link.trace_id = xor(link.trace_id, mask16)
                link.span_id = xor(link.span_id, mask8)
        batches.append(req.SerializeToString())
    return batches


# --- tracescrub CLI ----------------------------------------------------------


def run(args, what, timeout, ok=(0,)):
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fail(f"{what}: no result after {timeout} s") from None
    if p.returncode not in ok:
        raise Fail(f"{what}: exit {p.returncode}:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return p.stdout


def audit_residual(tracescrub, path):
    """Personal numbers `tracescrub audit --raw` finds under path: the total,
    and a Counter of the field paths they are in (list indexes dropped)."""
    if not capture_files(path):
        return 0, collections.Counter()
    out = run([tracescrub, "audit", "--raw", "--quiet", path], f"audit --raw {path}", 120, ok=(0, 1))
    m = re.search(r"^total: .*\bresidual=(\d+)", out, re.M)
    if not m:
        raise Fail(f"audit --raw {path}: no total line in:\n{out[-2000:]}")
    fields = collections.Counter(
        re.sub(r"\[\d+\]", "[]", f) for f in re.findall(r"^leak\s.*?\bfield=(.*)$", out, re.M))
    return int(m.group(1)), fields


def replay_total(tracescrub, path):
    if not capture_files(path):
        return {"spans_in": 0, "spans_out": 0, "dropped": 0, "errors": 0}
    out = run([tracescrub, "replay", "--report", "json", path], f"replay {path}", 120)
    return json.loads(out)["total"]


def bench_spans_per_s(args, what, timeout):
    out = run(args, what, timeout)
    m = re.search(r"^bench: .*?\bspans_per_s=(\d+)", out, re.M)
    if not m:
        raise Fail(f"{what}: no `bench: spans_per_s=` line in:\n{out[-2000:]}")
    return int(m.group(1))


# --- phases ------------------------------------------------------------------


def captures_phase(a, ports, sink_port, workdir):
    """Send every capture through every pipeline; count what came out."""
    files = capture_files(a.captures)
    kept_dir = os.path.join(workdir, "captures-kept")
    rec_root = os.path.join(workdir, "sink-captures")
    for d in (kept_dir, rec_root):
        shutil.rmtree(d, ignore_errors=True)
    # What the default config keeps of each file (a batch it cannot read is
    # left out, and then its spans count as noise here: exit 1 is fine).
    run([a.tracescrub, "replay", "--out", kept_dir, a.captures], "replay of the captures", 120, ok=(0, 1))
    base_name = os.path.basename(os.path.normpath(a.captures))
    inputs = []  # (path, rel, body, content type, encoding, all span ids, ids the default config keeps)
    for path in files:
        rel = os.path.relpath(path, a.captures)
        raw, ctype, enc, data = read_capture(path)
        all_ids = span_ids(data)
        kept = collections.Counter()
        for cand in (os.path.join(kept_dir, rel), os.path.join(kept_dir, base_name, rel)):
            if os.path.exists(cand):
                kept = span_ids(read_capture(cand)[3])
                break
        inputs.append((path, rel, raw, ctype, enc, all_ids, kept))

    results = {}
    for p in PIPELINES:
        client = Client(ports[p])
        noisy = lost = out_spans = refused = 0
        rec = os.path.join(rec_root, p)
        for _, rel, raw, ctype, enc, all_ids, kept in inputs:
            tmp = os.path.join(rec_root, "current")
            sink_call(sink_port, "POST", "/-/record", json.dumps({"dir": tmp}).encode())
            status, _ = client.post(raw, ctype, enc)
            sink_call(sink_port, "POST", "/-/record", json.dumps({"dir": None}).encode())
            if status != 200:
                refused += 1
                log(f"{p}: {rel} answered {status}")
            got = collections.Counter()
            got_dir = os.path.join(tmp, p)
            if os.path.isdir(got_dir):
                for i, name in enumerate(sorted(os.listdir(got_dir))):
                    with open(os.path.join(got_dir, name), "rb") as f:
                        body = f.read()
                    got += span_ids(body)
                    os.makedirs(rec, exist_ok=True)
                    dest = os.path.join(rec, rel.replace(os.sep, "__") + (f".{i}" if i else "") + ".binpb")
                    os.replace(os.path.join(got_dir, name), dest)
            dropped = all_ids - kept
            noisy += sum((got & dropped).values())
            lost += sum((kept - got).values())
            out_spans += sum(got.values())
        client.close()
        leaks, leak_fields = audit_residual(a.tracescrub, rec)
        results[p] = {
            "leaks": leaks,
            "leak_fields": leak_fields,
            "noisy_left": noisy,
            "noisy_left_replay": replay_total(a.tracescrub, rec)["dropped"] if os.path.isdir(rec) else 0,
            "lost": lost,
            "spans_out": out_spans,
            "refused": refused,
        }
    summary = {
        "files": len(inputs),
        "spans": sum(sum(x[5].values()) for x in inputs),
        "kept": sum(sum(x[6].values()) for x in inputs),
        "numbers": audit_residual(a.tracescrub, a.captures)[0],
    }
    return summary, results


def median(values):
    v = sorted(values)
    if not v:
        return 0.0
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def percentile(sorted_values, q):
    """Nearest-rank percentile of a sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[k]


def latency_phase(a, ports, batches):
    clients = {p: Client(ports[p]) for p in PIPELINES}
    for p in PIPELINES:  # warm-up: connections, the processor's instance pool
        for b in batches[:4]:
            clients[p].post(b)
    times = {p: [] for p in PIPELINES}
    failed = collections.Counter()
    for r in range(a.latency_samples):
        body = batches[r % len(batches)]
        order = PIPELINES[r % 3:] + PIPELINES[:r % 3]
        got = {}
        for p in order:
            status, secs = clients[p].post(body)
            if status == 200:
                got[p] = secs
            else:
                failed[p] += 1
        if len(got) == len(PIPELINES):
            for p in PIPELINES:
                times[p].append(got[p])
    for c in clients.values():
        c.close()
    if not times["base"]:
        raise Fail("latency: no round where all three pipelines answered 200")
    out = {}
    for p in PIPELINES:
        own = sorted(times[p])
        added = sorted(t - b for t, b in zip(times[p], times["base"]))
        out[p] = {
            "p50_ms": 1000 * percentile(own, 0.50),
            "p99_ms": 1000 * percentile(own, 0.99),
            "added_p50_ms": 1000 * percentile(added, 0.50),
            "added_p99_ms": 1000 * percentile(added, 0.99),
            "rounds": len(own),
            "failed": failed[p],
        }
    return out


def load_slice(a, port, batches, collector_pid, seconds):
    """CONCURRENCY keep-alive clients send batches to one pipeline for
    `seconds`, then finish the requests they have in flight. The collector's
    CPU time is read before the first request and after the last answer, so
    it holds exactly the work of the batches counted (and the idle
    collector's few ticks)."""
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}

    def sender(k):
        c = Client(port)
        i = k
        while not stop.is_set():
            status, _ = c.post(batches[i % len(batches)])
            i += a.concurrency
            with lock:
                counts["ok" if status == 200 else "failed"] += 1
            if status != 200:
                time.sleep(0.02)
        c.close()

    threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(a.concurrency)]
    cpu0, t0 = cpu_seconds(collector_pid), time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    if any(t.is_alive() for t in threads):
        raise Fail("load: a client did not finish within 60 s")
    cpu1, t1 = cpu_seconds(collector_pid), time.monotonic()
    return {"ok": counts["ok"], "failed": counts["failed"], "cpu": cpu1 - cpu0, "wall": t1 - t0}


def load_phase(a, ports, batches, collector_pid):
    """LOAD_SECONDS per pipeline, in LOAD_SLICES slices taken in turn (the
    order rotating), so a busy spell of a shared machine falls on all three
    alike; the sums over a pipeline's slices give its figures."""
    total = {p: {"ok": 0, "failed": 0, "cpu": 0.0, "wall": 0.0} for p in PIPELINES}
    per_slice = a.load_seconds / a.load_slices
    for n in range(a.load_slices):
        order = PIPELINES[n % 3:] + PIPELINES[:n % 3]
        for p in order:
            r = load_slice(a, ports[p], batches, collector_pid, per_slice)
            for k in total[p]:
                total[p][k] += r[k]
    out = {}
    for p, t in total.items():
        spans = t["ok"] * a.spans_per_batch
        out[p] = {
            "spans_per_cpu_s": spans / t["cpu"] if t["cpu"] > 0 else 0.0,
            "spans_per_s": spans / t["wall"] if t["wall"] > 0 else 0.0,
            "cpu_cores": t["cpu"] / t["wall"] if t["wall"] > 0 else 0.0,
            "ok": t["ok"],
            "failed": t["failed"],
        }
    return out


# --- main --------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collector", required=True, help="the otelcol-tracescrub binary")
    ap.add_argument("--conformance", required=True, help="the tracescrub-conformance binary")
    ap.add_argument("--tracescrub", required=True, help="the tracescrub binary (release build)")
    ap.add_argument("--component", required=True, help="the component file (tracescrub inspect --save)")
    ap.add_argument("--config", default=os.path.join(HERE, "otelcol.yaml"), help="the collector config")
    ap.add_argument("--captures", required=True, help="testdata/captures")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--pid-file", help="append the pid of every started process here")
    ap.add_argument("--load-seconds", type=float, default=8)
    ap.add_argument("--load-slices", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--latency-samples", type=int, default=500)
    ap.add_argument("--distinct-batches", type=int, default=16)
    ap.add_argument("--spans-per-batch", type=int, default=1000)
    ap.add_argument("--bench-rounds", type=int, default=5)
    ap.add_argument("--bench-repeats", type=int, default=3)
    ap.add_argument("--export-compression", default="none")
    ap.add_argument("--start-timeout", type=float, default=120)
    a = ap.parse_args()

    workdir = os.path.abspath(a.workdir)
    os.makedirs(workdir, exist_ok=True)
    procs = Procs(a.pid_file)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    with open("/proc/loadavg") as f:
        a.loadavg = f.read().split()[0]
    try:
        report(a, workdir, procs, started)
    except Fail as e:
        log(f"could not run: {e}")
        return 1
    finally:
        procs.stop_all()
    return 0


def start_collector(a, procs, workdir, sink_port):
    """The collector on three free ports, once every pipeline answers an
    empty request with 200. A port is free when chosen and bound by the
    collector a moment later: should another process take it in between,
    the collector exits at once, and it is started again on new ports."""
    col_log = os.path.join(workdir, "otelcol.log")
    empty = ExportTraceServiceRequest().SerializeToString()
    for attempt in range(3):
        ports = {p: free_port() for p in PIPELINES}
        env = dict(os.environ)
        env.update({
            "COMPARE_PORT_BASE": str(ports["base"]),
            "COMPARE_PORT_TRACESCRUB": str(ports["tracescrub"]),
            "COMPARE_PORT_CONTRIB": str(ports["contrib"]),
            "COMPARE_SINK": f"http://127.0.0.1:{sink_port}",
            "COMPARE_COMPONENT": os.path.abspath(a.component),
            "COMPARE_EXPORT_COMPRESSION": a.export_compression,
        })
        collector = procs.start("otelcol-tracescrub", [a.collector, "--config", a.config], col_log, env=env)
        try:
            for p in PIPELINES:
                def ready(port=ports[p]):
                    c = Client(port, timeout=5)
                    status, _ = c.post(empty)
                    c.close()
                    return status == 200
                wait_for(f"collector pipeline {p} on 127.0.0.1:{ports[p]}", ready, collector, col_log,
                         a.start_timeout)
            return collector, ports, col_log
        except Fail:
            procs.stop(collector)
            if attempt == 2 or "address already in use" not in tail(col_log):
                raise
            log("a chosen port was taken before the collector bound it; again on new ports")
    raise AssertionError("unreachable")


def report(a, workdir, procs, started):
    batches = build_batches(a.captures, a.distinct_batches, a.spans_per_batch)
    batch_dir = os.path.join(workdir, "batches")
    os.makedirs(batch_dir, exist_ok=True)
    for name in os.listdir(batch_dir):
        os.remove(os.path.join(batch_dir, name))
    for i, b in enumerate(batches):
        with open(os.path.join(batch_dir, f"{i:04d}.binpb"), "wb") as f:
            f.write(b)
    batch_stats = replay_total(a.tracescrub, batch_dir)
    log(f"{len(batches)} batches of {a.spans_per_batch} spans written to {batch_dir}")

    # The sink, then the collector with its three pipelines.
    port_file = os.path.join(workdir, "sink.port")
    if os.path.exists(port_file):
        os.remove(port_file)
    sink_log = os.path.join(workdir, "sink.log")
    sink = procs.start("sink", [sys.executable, SINK, "--port-file", port_file], sink_log)
    wait_for("sink", lambda: os.path.exists(port_file), sink, sink_log, 30)
    with open(port_file) as f:
        sink_port = int(f.read())

    collector, ports, col_log = start_collector(a, procs, workdir, sink_port)
    log(f"collector pid {collector.pid} up: " + ", ".join(f"{p}=127.0.0.1:{ports[p]}" for p in PIPELINES)
        + f", sink 127.0.0.1:{sink_port}")

    def still_up(phase):
        if collector.poll() is not None:
            raise Fail(f"{phase}: the collector exited with {collector.returncode}:\n{tail(col_log)}")

    t = time.monotonic()
    log("captures through each pipeline")
    cap_summary, cap = captures_phase(a, ports, sink_port, workdir)
    still_up("captures")
    log(f"captures: {time.monotonic() - t:.1f} s; latency: {a.latency_samples} rounds of one batch through each pipeline")
    t = time.monotonic()
    lat = latency_phase(a, ports, batches)
    still_up("latency")
    log(f"latency: {time.monotonic() - t:.1f} s; load: {a.concurrency} clients, "
        f"{a.load_seconds:g} s per pipeline in {a.load_slices} slices each")
    load = load_phase(a, ports, batches, collector.pid)
    still_up("load")
    for p in PIPELINES:
        if load[p]["ok"] == 0:
            raise Fail(f"load: no batch through {p} was answered 200 ({load[p]['failed']} failed):\n{tail(col_log)}")
    procs.stop(collector)
    procs.stop(sink)

    log(f"bench: wazero (tracescrub-conformance) and wasmtime (tracescrub) on the same batches, "
        f"{a.bench_repeats} times in turn")
    cfg = os.path.join(workdir, "default-config.json")
    with open(cfg, "w") as f:
        f.write("{}\n")
    wazero, wasmtime = [], []
    for _ in range(a.bench_repeats):
        wazero.append(bench_spans_per_s([a.conformance, "bench", "--component", a.component, "--config", cfg,
                                         "--rounds", str(a.bench_rounds), batch_dir],
                                        "tracescrub-conformance bench", 300))
        wasmtime.append(bench_spans_per_s([a.tracescrub, "bench", "--rounds", str(a.bench_rounds), batch_dir],
                                          "tracescrub bench", 300))
    bench = {
        "wazero": median(wazero),
        "wasmtime": median(wasmtime),
        # Each pair ran back to back, so its ratio is the least disturbed by
        # the machine's neighbours; the median of the pairs' ratios.
        "ratio": median([z / t for z, t in zip(wazero, wasmtime) if t]),
        "pairs": list(zip(wazero, wasmtime)),
    }

    print_report(a, batches, batch_stats, cap_summary, cap, lat, load, bench, time.monotonic() - started)


def print_report(a, batches, batch_stats, cap_summary, cap, lat, load, bench, secs):
    A, B = "tracescrub", "contrib"
    ratio = load[A]["spans_per_cpu_s"] / load[B]["spans_per_cpu_s"] if load[B]["spans_per_cpu_s"] else 0.0
    wz = bench["ratio"]
    avg_kb = sum(map(len, batches)) / len(batches) / 1000
    noise = 100 * batch_stats["dropped"] / max(1, batch_stats["spans_in"])

    def row(label, fmt, values):
        cells = "".join(f"{(fmt(v) if v is not None else '-'):>16}" for v in values)
        print(f"{label:<36}{cells}")

    print(f"one otelcol-tracescrub, three pipelines on 127.0.0.1, {os.cpu_count()} CPUs "
          f"(load average {a.loadavg} at the start), {secs:.0f} s in all")
    print(f"load: {len(batches)} distinct batches of {a.spans_per_batch} spans from the captures' shape "
          f"({avg_kb:.0f} KB on average, {noise:.1f} % noise by the default config), "
          f"{a.concurrency} keep-alive clients, {a.load_seconds:g} s per pipeline in {a.load_slices} slices taken in turn; "
          f"export compression {a.export_compression}")
    print(f"captures: {cap_summary['files']} files, {cap_summary['spans']} spans, "
          f"{cap_summary['kept']} kept by the default config, {cap_summary['numbers']} personal numbers")
    print()
    row("", str, ["base (none)", "A tracescrub", "B contrib"])
    i, f0, f1, f2 = (lambda v: f"{v:.0f}"), (lambda v: f"{v:.0f}"), (lambda v: f"{v:.1f}"), (lambda v: f"{v:.2f}")
    row("spans per CPU-second", i, [load[p]["spans_per_cpu_s"] for p in PIPELINES])
    row("spans/s (wall)", f0, [load[p]["spans_per_s"] for p in PIPELINES])
    per_batch = {p: (1000 * a.spans_per_batch / load[p]["spans_per_cpu_s"] if load[p]["spans_per_cpu_s"] else None)
                 for p in PIPELINES}
    row("collector CPU per batch (ms)", f1, [per_batch[p] for p in PIPELINES])
    row("  minus base: the processors (ms)", f1,
        [None] + [per_batch[p] - per_batch["base"] if per_batch[p] and per_batch["base"] else None for p in (A, B)])
    row("collector CPU (cores busy)", f2, [load[p]["cpu_cores"] for p in PIPELINES])
    row("load batches answered 200 / failed", str, [f"{load[p]['ok']} / {load[p]['failed']}" for p in PIPELINES])
    row("latency per batch p50 (ms)", f2, [lat[p]["p50_ms"] for p in PIPELINES])
    row("latency per batch p99 (ms)", f2, [lat[p]["p99_ms"] for p in PIPELINES])
    row("added latency p50 (ms)", f2, [None, lat[A]["added_p50_ms"], lat[B]["added_p50_ms"]])
    row("added latency p99 (ms)", f2, [None, lat[A]["added_p99_ms"], lat[B]["added_p99_ms"]])
    row("captures: personal numbers left", i, [cap[p]["leaks"] for p in PIPELINES])
    row("captures: noisy spans left", i, [cap[p]["noisy_left"] for p in PIPELINES])
    row("  of which replay of output drops", i, [cap[p]["noisy_left_replay"] for p in PIPELINES])
    row("captures: spans lost", i, [cap[p]["lost"] for p in PIPELINES])
    row("captures: spans out", i, [cap[p]["spans_out"] for p in PIPELINES])
    row("captures: files refused", i, [cap[p]["refused"] for p in PIPELINES])
    for p, label in ((A, "A"), (B, "B")):
        if cap[p]["leak_fields"]:
            where = ", ".join(f"{f} {n}" for f, n in cap[p]["leak_fields"].most_common())
            print(f"{label}'s numbers left, by field: {where}")
    print(f"latency: {lat[A]['rounds']} rounds of one batch through each pipeline; "
          f"added = a pipeline's request time minus base's in the same round")
    pairs = ", ".join(f"{z}/{t}" for z, t in bench["pairs"])
    print(f"processor alone on the {len(batches)} batches, medians: wazero {bench['wazero']:.0f} spans/s "
          f"(tracescrub-conformance bench), wasmtime {bench['wasmtime']:.0f} spans/s (tracescrub bench, "
          f"wasm pass); wazero_vs_wasmtime {wz:.2f}, the median ratio of {len(bench['pairs'])} back-to-back "
          f"pairs (wazero/wasmtime spans/s: {pairs})")

    if load[B]["spans_per_cpu_s"]:
        print(f"ceiling: a processor that took no CPU at all would make the ratio "
              f"{load['base']['spans_per_cpu_s'] / load[B]['spans_per_cpu_s']:.2f} (base against B): "
              f"the collector's own receive and export bound it")

    def verdict(ok):
        return "met" if ok else "MISSED"

    print(f"targets: A >= 3x B spans per CPU-second ({ratio:.2f}x): {verdict(ratio >= 3)}; "
          f"A leaves 0 numbers ({cap[A]['leaks']}): {verdict(cap[A]['leaks'] == 0)}; "
          f"A leaves 0 noisy spans ({cap[A]['noisy_left']}): {verdict(cap[A]['noisy_left'] == 0)}; "
          f"wazero_vs_wasmtime >= 0.5 ({wz:.2f}): {verdict(wz >= 0.5)}")
    print(f"collector-compare: tracescrub_spans_per_cpu_s={load[A]['spans_per_cpu_s']:.0f} "
          f"contrib_spans_per_cpu_s={load[B]['spans_per_cpu_s']:.0f} ratio={ratio:.2f} "
          f"tracescrub_leaks={cap[A]['leaks']} contrib_leaks={cap[B]['leaks']} "
          f"tracescrub_noisy_left={cap[A]['noisy_left']} contrib_noisy_left={cap[B]['noisy_left']} "
          f"wazero_vs_wasmtime={wz:.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
