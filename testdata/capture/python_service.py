#!/usr/bin/env python3
"""Flask + psycopg 3 + redis-py service, auto-instrumented by OpenTelemetry.

Exists only to be recorded: every span it makes goes through a
BatchSpanProcessor to an OTLP/HTTP exporter pointed at the capture sink.
The driver (drive.py) decides when batches are cut by calling
POST /_capture/flush, which is excluded from tracing.

Configuration comes from the environment (set by regenerate.sh):
  CAPTURE_ENCODING   protobuf | json
  CAPTURE_GZIP       1 to gzip export bodies
  CAPTURE_SINK       full URL of the sink's /v1/traces
  CAPTURE_PG         libpq conninfo of the throwaway PostgreSQL
  CAPTURE_REDIS_PORT port of the throwaway Redis (127.0.0.1)
  CAPTURE_NUMBERS    numbers.json written by personal_numbers.py
  CAPTURE_LISTEN_PORT port to listen on (0 = any free port)
  CAPTURE_PORT_FILE  where to write the port this service listens on
"""

import json
import os
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind

ENCODING = os.environ["CAPTURE_ENCODING"]
GZIP = os.environ.get("CAPTURE_GZIP") == "1"
SINK = os.environ["CAPTURE_SINK"]


def make_exporter():
    if ENCODING == "protobuf":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        # opentelemetry-exporter-otlp-json-http: the (beta) JSON exporter.
        from opentelemetry.exporter.otlp.common.http import Compression
        from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
    # The two packages spell their enum members differently; the values agree.
    return OTLPSpanExporter(endpoint=SINK, compression=Compression("gzip" if GZIP else "none"))


# A fixed, small resource: Resource.create adds only telemetry.sdk.* and
# service.instance.id on top of these (no host/process detectors by default).
provider = TracerProvider(resource=Resource.create({
    "service.name": "tracescrub-capture-python",
    "service.version": "1.0.0",
    "deployment.environment.name": "capture",
}))
# Long schedule delay and big batches: only the driver's explicit flushes cut
# batches, so each recorded file holds one scenario group.
processor = BatchSpanProcessor(
    make_exporter(), schedule_delay_millis=600_000, max_export_batch_size=4096, max_queue_size=8192
)
provider.add_span_processor(processor)
trace.set_tracer_provider(provider)

# Instrument the libraries before they are used.
from opentelemetry.instrumentation.flask import FlaskInstrumentor  # noqa: E402
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor  # noqa: E402
from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: E402

# capture_parameters puts bind values in db.statement.parameters, as teams
# that turn it on for debugging get.
PsycopgInstrumentor().instrument(capture_parameters=True)
RedisInstrumentor().instrument()

import flask  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

with open(os.environ["CAPTURE_NUMBERS"], encoding="utf-8") as f:
    NUMBERS = {p["key"]: p["number"] for p in json.load(f)["people"]}

app = flask.Flask(__name__)
FlaskInstrumentor().instrument_app(app, excluded_urls="_capture/")
tracer = trace.get_tracer("tracescrub.capture")

db_lock = threading.Lock()
_db = None
rds = redis.Redis(host="127.0.0.1", port=int(os.environ["CAPTURE_REDIS_PORT"]), decode_responses=True)


def sql(query, params=None):
    """Run one statement on a shared autocommit connection (opened lazily)."""
    global _db
    with db_lock:
        if _db is None:
            _db = psycopg.connect(os.environ["CAPTURE_PG"], autocommit=True)
        with _db.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []


# --- health checks and scrapes: the noise. Each one pings both backends so
# the dropped span has children.
HEALTH = [
    "/isAlive", "/isalive", "/ISALIVE", "/isReady", "/isready", "/prometheus", "/metrics", "/Metrics",
    "/actuator/health", "/actuator/health/liveness", "/internal/health", "/internal/healthz", "/internal/status",
]


def health():
    sql("SELECT 1")
    rds.ping()
    if flask.request.path.lower() in ("/metrics", "/prometheus"):
        return "# TYPE up gauge\nup 1\n", 200, {"Content-Type": "text/plain"}
    return {"status": "UP"}


for i, path in enumerate(HEALTH):
    app.add_url_rule(path, f"health_{i}", health)


# --- near misses: look like noise, are not.
NEAR_MISSES = ["/api/user-metrics", "/api/actuator-report", "/api/metricsfoo", "/actuator", "/isAliveness"]


def near_miss():
    (count,), = sql("SELECT count(*) FROM person")
    return {"path": flask.request.path, "people": count}


for i, path in enumerate(NEAR_MISSES):
    app.add_url_rule(path, f"near_{i}", near_miss)


# --- person lookups: personal numbers in paths, SQL literals, Redis keys,
# span names, events, attribute keys and structured attributes.
@app.route("/api/person/<fnr>")
def person_by_path(fnr):
    with tracer.start_as_current_span(f"lookup {fnr}") as span:
        span.set_attribute("enduser.id", fnr)
        name = rds.get(f"person:{fnr}")
        if name is None:
            span.add_event(f"cache miss for {fnr}", {"person.fnr": fnr})
            # Inlined literal on purpose: db.statement then carries the number.
            rows = sql(f"SELECT name FROM person WHERE fnr = '{fnr}'")
            if not rows:
                return {"error": "not found"}, 404
            name = rows[0][0]
            rds.set(f"person:{fnr}", name, ex=300)
        span.set_attribute(f"app.cache.{fnr}", "warm")  # a number in an attribute key
        span.set_attribute("app.person", {"fnr": fnr, "name": name})  # kvlist value
    return {"fnr": fnr, "name": name}


@app.route("/api/person")
def person_by_query():
    fnr = flask.request.args["fnr"]
    rows = sql("SELECT name, born FROM person WHERE fnr = %s", (fnr,))
    return ({"fnr": fnr, "name": rows[0][0]} if rows else ({"error": "not found"}, 404))


@app.route("/api/persons")
def persons_batch():
    ids = flask.request.args["ids"].split(",")
    trace.get_current_span().set_attribute("app.person.ids", ids)  # array of strings
    rows = sql("SELECT fnr, name FROM person WHERE fnr = ANY(%s) ORDER BY fnr", (ids,))
    return {"people": [{"fnr": r[0], "name": r[1]} for r in rows]}


@app.route("/api/search")
def search():
    q = flask.request.args["q"]  # the split form, DDMMYY-NNNNN
    span = trace.get_current_span()
    span.set_attribute("app.search.query", q.replace("-", " "))  # DDMMYY NNNNN
    digits = "".join(c for c in q if c.isdigit())
    rows = sql("SELECT name FROM person WHERE fnr = %s", (digits,))
    return {"hits": [r[0] for r in rows]}


@app.route("/api/person/<fnr>/consent")
def consent(fnr):
    rds.get(f"consent:{fnr}")
    # Unhandled on purpose: the Flask instrumentation records it as an
    # exception event and sets the span status from the message.
    raise ValueError(f"no consent registered for person {fnr}")


# --- ordinary traffic, including 11/12-digit ids that are not personal numbers.
@app.route("/api/orders/<order_id>")
def order(order_id):
    if not order_id.isdigit():
        return {"error": "bad id"}, 400
    rows = sql(f"SELECT id, amount FROM orders WHERE id = {int(order_id)}")
    rds.incr(f"order:{order_id}:views")
    return {"id": order_id, "found": bool(rows)}


@app.route("/api/orders")
def orders():
    limit = int(flask.request.args.get("limit", "5"))
    rows = sql("SELECT id, amount FROM orders ORDER BY id LIMIT %s", (limit,))
    return {"orders": [{"id": str(r[0]), "amount": str(r[1])} for r in rows]}


@app.route("/api/products")
def products():
    sql("SELECT now()")
    return {"products": ["kaffe", "brunost"]}


# --- Kafka: no broker here, so the spans are made with the SDK API following
# the messaging semantic conventions, as a Kafka instrumentation would.
TOPIC = "person-events"


def kafka_attrs(op_name, op_type, old_op):
    return {
        "messaging.system": "kafka",
        "messaging.destination.name": TOPIC,
        "messaging.operation": old_op,  # pre-1.26 semconv
        "messaging.operation.name": op_name,
        "messaging.operation.type": op_type,
        "messaging.destination.partition.id": "0",
        "server.address": "kafka.invalid",
        "server.port": 9092,
    }


@app.route("/api/events/publish")
def publish():
    keys = [
        ("string", NUMBERS["fnr"]),
        ("int", int(NUMBERS["fnr_leading_zero"])),  # the leading zero is lost
        ("int", int(NUMBERS["dnr"])),
        ("bytes", NUMBERS["hnr"].encode()),  # SDK keeps bytes -> AnyValue.bytes_value
    ]
    for offset, (key_type, key) in enumerate(keys):
        with tracer.start_as_current_span(f"send {TOPIC}", kind=SpanKind.PRODUCER) as prod:
            prod.set_attributes(kafka_attrs("send", "send", "publish"))
            prod.set_attribute("messaging.kafka.message.key", key)
            prod.set_attribute("app.key_type", key_type)
            produced = prod.get_span_context()
        # The consumer runs elsewhere: a new trace linked to the producer.
        link = Link(produced, {"messaging.kafka.message.key": NUMBERS["synthetic"], "app.link": "producer"})
        with tracer.start_as_current_span(
            f"process {TOPIC}", kind=SpanKind.CONSUMER, links=[link], context=trace.set_span_in_context(trace.INVALID_SPAN)
        ) as cons:
            cons.set_attributes(kafka_attrs("process", "process", "process"))
            cons.set_attribute("messaging.kafka.message.key", key)
            cons.set_attribute("messaging.consumer.group.name", "tracescrub-demo")
            cons.set_attribute("messaging.kafka.consumer.group", "tracescrub-demo")
            cons.set_attribute("messaging.kafka.message.offset", 41 + offset)
            cons.set_attribute("app.key_type", key_type)
    return {"published": len(keys)}


# --- capture control, not traced (excluded_urls above).
@app.route("/_capture/flush", methods=["POST"])
def flush():
    ok = provider.force_flush(timeout_millis=30_000)
    return ({"flushed": ok}, 200 if ok else 500)


def main():
    server = make_server("127.0.0.1", int(os.environ.get("CAPTURE_LISTEN_PORT", "0")), app, threaded=True)
    tmp = os.environ["CAPTURE_PORT_FILE"] + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_port))
    os.replace(tmp, os.environ["CAPTURE_PORT_FILE"])
    try:
        server.serve_forever()
    finally:
        provider.shutdown()


if __name__ == "__main__":
    import signal
    import sys

    # SIGTERM -> SystemExit, so the finally above flushes and shuts down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
