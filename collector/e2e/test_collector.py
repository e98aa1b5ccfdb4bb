"""End to end with real parts on loopback: the Python OpenTelemetry SDK's own
exporters send spans to `otelcol-tracescrub` (OTLP receiver -> `tracescrub`
processor -> OTLP/HTTP exporter), which forwards to the capture sink.

run.sh builds the collector and saves the component these tests load.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

import fnr
import harness
from test_end_to_end import BAD_CHECK, DNR, DROPPED, KEPT, STARS, RecordingExporter, make_exporter, record_spans

TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(harness.REPO, "target")


def collector_bin():
    path = os.environ.get("OTELCOL_TRACESCRUB_BIN") or os.path.join(TARGET, "otelcol-tracescrub")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no collector at {path!r}: run `bash scripts/build-collector.sh` or set OTELCOL_TRACESCRUB_BIN")
    return path


def component_file():
    path = os.environ.get("TRACESCRUB_COMPONENT") or os.path.join(TARGET, "tracescrub_processor.wasm")
    if not os.path.exists(path):
        raise RuntimeError(f"no component at {path!r}: run `tracescrub inspect --save {path}` or set TRACESCRUB_COMPONENT")
    return path


def free_port():
    # The collector takes fixed ports from its config: ask the kernel for
    # one that is free now (a race only with other processes binding port 0).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector:
    """`otelcol-tracescrub --config FILE` in its own process, with one traces
    pipeline: OTLP receiver (HTTP and gRPC) -> tracescrub -> OTLP/HTTP
    exporter to `sink_url`, synchronous (no queue, no retry, no batch
    processor), so an SDK export succeeds only once the sink has the batch.
    Internal telemetry is served in Prometheus format on a port of its own."""

    def __init__(self, workdir, sink_url, processor, name="collector"):
        self.workdir = workdir
        self.sink_url = sink_url
        self.config_path = os.path.join(workdir, f"{name}.yaml")
        self.log = os.path.join(workdir, f"{name}.log")
        self.http_port, self.grpc_port, self.telemetry_port = free_port(), free_port(), free_port()
        self.http_url = f"http://127.0.0.1:{self.http_port}/v1/traces"
        self.grpc = f"127.0.0.1:{self.grpc_port}"
        self.write_config(processor)
        self.proc = subprocess.Popen([collector_bin(), "--config", self.config_path], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        self.wait_ready(1)

    def write_config(self, processor):
        # JSON is YAML: written as JSON to keep it exact.
        config = {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{self.http_port}"},
                                                 "grpc": {"endpoint": self.grpc}}}},
            "processors": {"tracescrub": processor},
            "exporters": {"otlp_http": {"endpoint": self.sink_url, "compression": "none",
                                       "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}}},
            "service": {
                "telemetry": {"metrics": {"level": "detailed", "readers": [{"pull": {"exporter": {"prometheus": {
                    "host": "127.0.0.1", "port": self.telemetry_port}}}}]}},
                "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["tracescrub"], "exporters": ["otlp_http"]}},
            },
        }
        harness.write_atomic(self.config_path, json.dumps(config, indent=1))

    def ready_count(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read().count("Everything is ready")

    def wait_ready(self, n, timeout=120):
        deadline = time.monotonic() + timeout
        while self.ready_count() < n:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector not ready (exit {self.proc.returncode}):\n{harness.tail(self.log)}")
            time.sleep(0.05)

    def sighup(self):
        self.proc.send_signal(signal.SIGHUP)

    def metrics(self):
        url = f"http://127.0.0.1:{self.telemetry_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return harness.parse_prometheus(r.read().decode())

    def metric(self, prefix, **labels):
        """Sum of the samples of every metric whose name starts with `prefix`
        (the Prometheus exporter adds unit and `_total` suffixes)."""
        return sum(v for (n, ls), v in self.metrics().items()
                   if n.startswith(prefix) and all((k, val) in ls for k, val in labels.items()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def send(collector, exporter="http-protobuf", service="e2e"):
    """One SDK request cycle (record_spans) exported as one batch; returns
    the SDK's export results."""
    recorder = RecordingExporter(make_exporter(exporter, collector))
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(recorder, schedule_delay_millis=600_000, max_export_batch_size=512))
    record_spans(provider.get_tracer("tracescrub.collector-e2e"))
    assert provider.force_flush(60_000), "force_flush timed out"
    provider.shutdown()
    return recorder.results


def spans_of(record):
    return [s for rs in record["resource_spans"] for s in rs["spans"]]


@pytest.mark.parametrize("exporter", ["http-protobuf", "http-json", "grpc"])
def test_sdk_spans_through_collector_reach_sink_masked_and_filtered(tmp_path, procs, exporter):
    """Scenario: the Python SDK exports one request cycle (health checks with a
    DB child, a metrics scrape, a person lookup with numbers in a URL, SQL,
    Redis, a Kafka key and an event) to the collector over OTLP/HTTP
    protobuf, OTLP/HTTP JSON or OTLP/gRPC.
    Guarantees: the SDK's export succeeds; the sink gets exactly the kept
    spans, each number masked in place, look-alikes untouched, no valid
    number anywhere; the processor's telemetry counts what it did."""
    sink = harness.Sink(str(tmp_path))
    procs.append(sink)
    col = Collector(str(tmp_path), sink.url, {"component": component_file(), "config": {}})
    procs.append(col)

    assert send(col, exporter) == [(9, SpanExportResult.SUCCESS)]
    records = sink.records()
    assert len(records) == 1, records
    assert records[0]["leaks"] == [], "a valid personal number reached the sink"
    spans = spans_of(records[0])
    names = sorted(s["name"] for s in spans)
    assert names == sorted(KEPT) and not DROPPED & set(names), names
    by_name = {s["name"]: s for s in spans}
    assert by_name["GET /api/person/{fnr}"]["attrs"]["url.full"] == f"http://127.0.0.1:8080/api/person/{STARS}?verbose=1"
    assert by_name["GET /api/person/{fnr}"]["attrs"]["app.not_a_number"] == BAD_CHECK
    assert by_name["GET"]["attrs"]["db.statement"] == f"GET person:{STARS}"
    for s in spans:
        for v in list(s["attrs"].values()) + [s["name"]]:
            assert fnr.find(v) == [], (s["name"], v)

    # Dropped: the four noise spans (three matched, one descendant); masked:
    # FNR in url.full and the span-less statement, two in SQL, DNR, the Kafka
    # key, the split HNR in the event.
    assert col.metric("otelcol_processor_tracescrub_spans_dropped") == len(DROPPED)
    assert col.metric("otelcol_processor_tracescrub_values_masked", detector="fnr") >= 2
    assert col.metric("otelcol_processor_tracescrub_batches", outcome="ok") == 1


def test_sighup_with_changed_config_changes_what_is_dropped(tmp_path, procs):
    """Scenario: the collector runs with the default tracescrub config; its
    config file is rewritten with an extra noise glob and the collector gets
    SIGHUP.
    Guarantees: before, `/api/user-metrics` reaches the sink; after the
    pipeline is rebuilt, it is dropped and the rest is unchanged."""
    sink = harness.Sink(str(tmp_path))
    procs.append(sink)
    col = Collector(str(tmp_path), sink.url, {"component": component_file(), "config": {}})
    procs.append(col)

    assert send(col) == [(9, SpanExportResult.SUCCESS)]
    assert "GET /api/user-metrics" in {s["name"] for s in spans_of(sink.records()[-1])}

    col.write_config({"component": component_file(), "config": {"noise": {"extra_globs": ["*/api/user-metrics"]}}})
    col.sighup()
    col.wait_ready(2)
    assert send(col) == [(9, SpanExportResult.SUCCESS)]
    after = {s["name"] for s in spans_of(sink.records()[-1])}
    assert after == KEPT - {"GET /api/user-metrics"}, after
    assert col.proc.poll() is None


def test_broken_component_over_watched_file_leaves_old_version_serving(tmp_path, procs):
    """Scenario: the processor watches its component file and its config file
    (`reload_interval`); a config with a bad glob is written over the config
    file, then garbage over the component.
    Guarantees: each broken version is refused and counted as a failed
    reload; the old version keeps serving (numbers masked, noise dropped);
    the collector neither exits nor restarts its pipeline. A good config
    written afterwards is swapped in without a restart."""
    sink = harness.Sink(str(tmp_path))
    procs.append(sink)
    component = os.path.join(str(tmp_path), "watched.wasm")
    with open(component_file(), "rb") as src:
        harness.write_atomic(component, src.read())
    ts_config = os.path.join(str(tmp_path), "tracescrub.yaml")
    harness.write_atomic(ts_config, "noise:\n  extra_globs: []\n")
    col = Collector(str(tmp_path), sink.url, {"component": component, "config_file": ts_config, "reload_interval": "100ms"})
    procs.append(col)
    assert send(col) == [(9, SpanExportResult.SUCCESS)]

    harness.write_atomic(ts_config, "noise:\n  globs: ['[unclosed']\n")
    harness.wait_until(lambda: col.metric("otelcol_processor_tracescrub_reloads", outcome="failure") >= 1, 30,
                       "a failed reload counted after a broken config")
    assert send(col) == [(9, SpanExportResult.SUCCESS)]
    assert {s["name"] for s in spans_of(sink.records()[-1])} == KEPT
    harness.write_atomic(component, b"\0asm not a component at all")
    harness.wait_until(lambda: col.metric("otelcol_processor_tracescrub_reloads", outcome="failure") >= 2, 30,
                       "a failed reload counted after a broken component")
    with open(col.log, encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert "noise.globs[0]" in log and "want a component" in log, "each failed reload says why"

    assert send(col) == [(9, SpanExportResult.SUCCESS)]
    record = sink.records()[-1]
    assert record["leaks"] == []
    assert {s["name"] for s in spans_of(record)} == KEPT
    assert col.proc.poll() is None and col.ready_count() == 1, "the collector restarted or exited"

    # Repair both: the next good version is swapped in without a restart.
    with open(component_file(), "rb") as src:
        harness.write_atomic(component, src.read())
    harness.write_atomic(ts_config, "noise:\n  extra_globs: ['*/api/user-metrics']\n")
    harness.wait_until(lambda: col.metric("otelcol_processor_tracescrub_reloads", outcome="success") >= 1, 30,
                       "a successful reload after the repair")
    assert send(col) == [(9, SpanExportResult.SUCCESS)]
    assert {s["name"] for s in spans_of(sink.records()[-1])} == KEPT - {"GET /api/user-metrics"}
    assert col.ready_count() == 1


def test_validate_refuses_bad_config_and_names_the_key(tmp_path):
    """Scenario: `otelcol-tracescrub validate` on a collector config whose
    inline tracescrub config has a bad glob and an unknown key, then on the
    same config repaired.
    Guarantees: the bad one exits non-zero and names both key paths; the
    good one exits 0. Neither echoes a config value that is not a key."""
    def validate(processor):
        path = os.path.join(str(tmp_path), "validate.yaml")
        config = {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
            "processors": {"tracescrub": processor},
            "exporters": {"debug": {}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["tracescrub"], "exporters": ["debug"]}}},
        }
        harness.write_atomic(path, json.dumps(config))
        return subprocess.run([collector_bin(), "validate", "--config", path], capture_output=True, text=True, timeout=120)

    bad = validate({"component": component_file(), "config": {"noise": {"globs": ["[unclosed"]}, "secret_key": DNR}})
    assert bad.returncode != 0
    out = bad.stdout + bad.stderr
    assert "noise.globs[0]" in out and "secret_key" in out, out
    assert DNR not in out, "validate echoed a config value"

    good = validate({"component": component_file(), "config": {"noise": {"extra_globs": ["*/ping"]}}})
    assert good.returncode == 0, good.stdout + good.stderr
