"""End to end: the Python OpenTelemetry SDK's own exporters send spans through
`tracescrub serve` to a real capture sink (testdata/sink/otlp_sink.py), over
each receiver the gateway has and to each kind of upstream.
"""

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

import fnr
import harness

# Fictional, valid numbers from the capture rig (testdata/capture/personal_numbers.py):
# birth years 2035-2039 with individual numbers >= 500, and a synthetic one.
FNR = "17053650260"
FNR_ZERO = "03093750062"
DNR = "64083850068"
HNR = "11463550036"
SYNTHETIC = "28848510043"
# Look-alikes the validated mode must leave alone.
ORDER_ID = "170536502601"  # 12 digits
BAD_CHECK = "17053650261"  # k2 wrong
STARS = "*" * 11


class RecordingExporter(SpanExporter):
    """Delegates to a real SDK exporter and keeps what each export returned:
    SUCCESS means the gateway acknowledged the batch."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append((len(spans), result))
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def make_exporter(kind, gw):
    if kind in ("http-protobuf", "http-protobuf-gzip"):
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        compression = Compression.Gzip if kind.endswith("gzip") else Compression.NoCompression
        return OTLPSpanExporter(endpoint=gw.http_url, compression=compression, timeout=30)
    if kind == "http-json":
        from opentelemetry.exporter.otlp.common.http import Compression
        from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=gw.http_url, compression=Compression("none"), timeout=30)
    if kind == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=gw.grpc, insecure=True, timeout=30)
    raise ValueError(kind)


def record_spans(tracer):
    """What an instrumented service does in one request cycle: two health
    checks (with a DB ping under one), a metrics scrape, a person lookup that
    carries personal numbers in a URL, SQL, a Redis command, a Kafka key, an
    event and a status message, and a near-miss path that is not noise."""
    with tracer.start_as_current_span("GET /isAlive", kind=SpanKind.SERVER,
                                      attributes={"http.request.method": "GET", "url.path": "/isAlive"}):
        with tracer.start_as_current_span("SELECT 1", kind=SpanKind.CLIENT,
                                          attributes={"db.system": "postgresql", "db.statement": f"SELECT 1 -- {FNR}"}):
            pass
    # Noise found through the span name alone (no path attribute).
    with tracer.start_as_current_span("GET /internal/health/liveness", kind=SpanKind.SERVER):
        pass
    with tracer.start_as_current_span("GET /metrics", kind=SpanKind.SERVER, attributes={"http.target": "/metrics"}):
        pass
    with tracer.start_as_current_span(
        "GET /api/person/{fnr}", kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "http.route": "/api/person/{fnr}",
                    "url.full": f"http://127.0.0.1:8080/api/person/{FNR}?verbose=1"},
    ) as server:
        with tracer.start_as_current_span("SELECT tracescrub.person", kind=SpanKind.CLIENT, attributes={
            "db.system": "postgresql",
            "db.statement": f"SELECT name FROM person WHERE fnr = '{FNR}' OR fnr = '{FNR_ZERO}'",
        }):
            pass
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes={
            "db.system": "redis", "db.statement": f"GET person:{DNR}", "db.redis.database_index": 0,
        }):
            pass
        with tracer.start_as_current_span("person-events publish", kind=SpanKind.PRODUCER, attributes={
            "messaging.system": "kafka", "messaging.destination.name": "person-events",
            "messaging.kafka.message.key": SYNTHETIC,
        }):
            pass
        server.add_event("lookup", {"app.query": f"{HNR[:6]} {HNR[6:]}", "app.order_id": ORDER_ID})
        server.set_attribute("app.not_a_number", BAD_CHECK)
    with tracer.start_as_current_span("GET /api/user-metrics", kind=SpanKind.SERVER,
                                      attributes={"url.path": "/api/user-metrics"}):
        pass


KEPT = {"GET /api/person/{fnr}", "SELECT tracescrub.person", "GET", "person-events publish", "GET /api/user-metrics"}
DROPPED = {"GET /isAlive", "SELECT 1", "GET /internal/health/liveness", "GET /metrics"}


@pytest.mark.parametrize("exporter,upstream", [
    ("http-protobuf", "http"),
    ("http-protobuf-gzip", "http"),
    ("http-json", "http"),
    ("grpc", "http"),
    ("http-protobuf", "grpc"),
])
def test_sdk_exporters_through_gateway_reach_sink_masked_and_filtered(tmp_path, procs, exporter, upstream):
    """Scenario: the OpenTelemetry Python SDK (BatchSpanProcessor, one flush)
    exports one batch with health checks, a metrics scrape and a person lookup
    through the gateway's HTTP or gRPC receiver, in protobuf, gzip or JSON; the
    gateway forwards to an OTLP/HTTP or OTLP/gRPC sink with a tenant header.
    Guarantees: the SDK's export succeeds only once the sink holds the batch;
    the sink gets exactly the non-noise spans, each number masked in place
    (lengths kept, look-alikes untouched), no valid number anywhere, and the
    configured upstream header."""
    sink = harness.Sink(str(tmp_path), grpc=(upstream == "grpc"))
    procs.append(sink)
    gw = harness.Gateway(str(tmp_path), sink.url, extra=["--upstream-header", "X-Scope-OrgID=team-e2e"])
    procs.append(gw)

    recorder = RecordingExporter(make_exporter(exporter, gw))
    provider = TracerProvider(resource=Resource.create({"service.name": f"e2e-{exporter}-{upstream}"}))
    # One batch: the health check's child must travel with its parent for
    # drop_descendants to see the chain.
    provider.add_span_processor(BatchSpanProcessor(recorder, schedule_delay_millis=600_000, max_export_batch_size=512))
    record_spans(provider.get_tracer("tracescrub.e2e"))
    assert provider.force_flush(60_000), "force_flush timed out"
    provider.shutdown()
    assert recorder.results == [(9, SpanExportResult.SUCCESS)], recorder.results

    records = sink.records()
    assert len(records) == 1, f"sink got {len(records)} requests"
    rec = records[0]
    assert rec["headers"].get("x-scope-orgid") == "team-e2e", rec["headers"]
    assert rec["leaks"] == [], "a valid personal number reached the sink"
    spans = [s for rs in rec["resource_spans"] for s in rs["spans"]]
    names = [s["name"] for s in spans]
    assert sorted(names) == sorted(KEPT), names
    assert not DROPPED & set(names)
    by_name = {s["name"]: s for s in spans}

    server = by_name["GET /api/person/{fnr}"]
    assert server["attrs"]["url.full"] == f"http://127.0.0.1:8080/api/person/{STARS}?verbose=1"
    assert server["attrs"]["app.not_a_number"] == BAD_CHECK
    assert by_name["SELECT tracescrub.person"]["attrs"]["db.statement"] == \
        f"SELECT name FROM person WHERE fnr = '{STARS}' OR fnr = '{STARS}'"
    assert by_name["GET"]["attrs"]["db.statement"] == f"GET person:{STARS}"
    assert by_name["person-events publish"]["attrs"]["messaging.kafka.message.key"] == STARS
    # Children still point at their (kept) parent.
    for child in ("SELECT tracescrub.person", "GET", "person-events publish"):
        assert by_name[child]["parent_span_id"] == server["span_id"]
    # The independent scan agrees with the sink's.
    for s in spans:
        for v in list(s["attrs"].values()) + [s["name"]]:
            assert fnr.find(v) == [], (s["name"], v)

    # The gateway counted what it did.
    m = gw.metrics()
    assert harness.metric_sum(m, "tracescrub_active_version") == 1


@pytest.mark.parametrize("exporter", ["http-protobuf", "grpc"])
def test_upstream_briefly_down_sdk_retries_and_batch_arrives_once(tmp_path, procs, exporter):
    """Scenario: the sink refuses the first two exports (503); the SDK
    exporter sends one batch through the gateway.
    Guarantees: the gateway answers the client with a retryable error while
    the upstream refuses (never a success), so the SDK's own retry delivers
    the batch: the export ends in SUCCESS and the sink holds it exactly once,
    masked and filtered."""
    sink = harness.Sink(str(tmp_path), fail_first=2)
    procs.append(sink)
    gw = harness.Gateway(str(tmp_path), sink.url)
    procs.append(gw)

    recorder = RecordingExporter(make_exporter(exporter, gw))
    provider = TracerProvider(resource=Resource.create({"service.name": f"retry-{exporter}"}))
    provider.add_span_processor(BatchSpanProcessor(recorder, schedule_delay_millis=600_000, max_export_batch_size=512))
    record_spans(provider.get_tracer("tracescrub.e2e"))
    assert provider.force_flush(60_000), "force_flush timed out"
    provider.shutdown()
    assert recorder.results == [(9, SpanExportResult.SUCCESS)], recorder.results

    records = sink.records()
    assert len(records) == 1, f"sink holds {len(records)} copies"
    names = [s["name"] for rs in records[0]["resource_spans"] for s in rs["spans"]]
    assert sorted(names) == sorted(KEPT)
    assert records[0]["leaks"] == []
