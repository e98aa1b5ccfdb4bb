#!/usr/bin/env python3
"""The OTLP capture sink of every test and tool here: a real OTLP server on
127.0.0.1 that answers exports and keeps what they carried.

Used by the serve tests (host-harness/tests/serve_e2e), the collector's
end-to-end tests (collector/e2e), the collector comparison
(collector/compare/compare.py) and the capture recorder
(testdata/capture/regenerate.sh). Each picks what it needs:

Transport
  OTLP/HTTP by default: `POST /v1/traces`, or `POST /<pipeline>/v1/traces` to
  tell several senders apart (one path per pipeline); protobuf or JSON, gzip
  or not, Content-Length or chunked (Node's exporter streams chunks). With
  --grpc, OTLP/gRPC `TraceService/Export` instead (and no control paths).

What an accepted export leaves (while armed; any mix of these)
  --records FILE    one JSON line per export: how it came (via, content type,
                    encoding, the headers tests look at), each resource's
                    attributes and spans (ids, name, kind, attributes as text,
                    event names), and `leaks`, every valid personal number in
                    any string of it (found by fnr.py, which shares no code
                    with the engine). Parses every body, so it needs
                    opentelemetry-proto.
  --out DIR         each body as it arrived, gunzipped, in the next numbered
                    file: DIR/NNNN.binpb (protobuf), .json, or .bin, under
                    DIR/<pipeline>/ for a pipeline path; DIR holds nothing
                    else. `POST /-/record {"dir": "/path"}` moves it,
                    `{"dir": null}` stops it.
  --requests FILE   with bodies: one JSON line per body, how it arrived (file,
                    content type, encoding, wire and stored bytes, user agent),
                    kept outside DIR.
  --keep-gzip-sample  the first gzip body is also kept as sent (NNNN.binpb.gz),
                    so readers of compressed OTLP have a real sample.
  Each is written before the answer, so a client that saw its export
  succeed finds it on disk. With neither, nothing is parsed or written: the
  sink must not be what limits a load run.

Behaviour
  --fail-first N    the first N exports are answered 503 (gRPC: UNAVAILABLE)
                    and not kept: an upstream that is briefly down.
  --disarmed        exports are answered 200 but kept nowhere until
                    `POST /-/arm`: a sender can warm up unrecorded.
  `GET /-/state` tells {"received", "stored", "armed", "pipelines": {name:
  {"requests", "bytes"}}}: exports answered 200 (counted once kept, so a
  driver that saw the count rise finds the file), exports kept, and per
  pipeline ("" for /v1/traces) the count and gunzipped bytes.

The chosen port (--port, 0 = any free one) is written to --port-file once the
server listens, in one rename: callers never race for a port.
"""

import argparse
import gzip
import json
import os
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
# fnr.py (the independent personal-number scan) sits beside this file; the
# summaries import it when they first need it.
sys.path.insert(0, HERE)

# Headers the tests look at (tenant headers, what the sender says it is).
KEPT_HEADERS = ("x-scope-orgid", "user-agent", "x-test-header")

EXT = {"application/x-protobuf": "binpb", "application/json": "json"}


class BadBody(Exception):
    """A body the sink cannot read: answered 400, kept nowhere."""


# --- summaries (--records) ------------------------------------------------


def any_value_text(v):
    """An OTLP AnyValue (protobuf) as text: strings as they are, the rest as JSON."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind in ("int_value", "double_value", "bool_value"):
        return json.dumps(getattr(v, kind))
    if kind == "bytes_value":
        return v.bytes_value.hex()
    if kind == "array_value":
        return json.dumps([any_value_text(x) for x in v.array_value.values])
    if kind == "kvlist_value":
        return json.dumps({kv.key: any_value_text(kv.value) for kv in v.kvlist_value.values})
    return ""


def strings_of(msg, out):
    """Every string field anywhere in a protobuf message (keys included)."""
    for field, value in msg.ListFields():
        if field.type == field.TYPE_STRING:
            out.extend(value if field.is_repeated else [value])
        elif field.name == "bytes_value":
            # tracescrub scans byte values as text too; ids are left out.
            out.append(value.decode("latin-1"))
        elif field.type == field.TYPE_MESSAGE:
            for m in value if field.is_repeated else [value]:
                strings_of(m, out)
    return out


def summarize_proto(req):
    import fnr

    batches = []
    for rs in req.resource_spans:
        spans = []
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append({
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": s.kind,
                    "attrs": {kv.key: any_value_text(kv.value) for kv in s.attributes},
                    "events": [e.name for e in s.events],
                })
        batches.append({
            "resource": {kv.key: any_value_text(kv.value) for kv in rs.resource.attributes},
            "spans": spans,
        })
    leaks = [n for t in strings_of(req, []) for n in fnr.find(t)]
    return batches, leaks


def json_value_text(v):
    for k in ("stringValue", "intValue", "doubleValue", "boolValue", "bytesValue"):
        if k in v:
            return v[k] if k == "stringValue" else json.dumps(v[k])
    if "arrayValue" in v:
        return json.dumps([json_value_text(x) for x in v["arrayValue"].get("values", [])])
    if "kvlistValue" in v:
        return json.dumps({kv["key"]: json_value_text(kv.get("value", {})) for kv in v["kvlistValue"].get("values", [])})
    return ""


def json_strings(obj, out):
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.append(k)
            json_strings(v, out)
    elif isinstance(obj, list):
        for v in obj:
            json_strings(v, out)
    return out


def summarize_json(doc):
    """The same summary from an OTLP/JSON body (ids are hex there already)."""
    import fnr

    batches = []
    for rs in doc.get("resourceSpans", []):
        spans = []
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                spans.append({
                    "trace_id": s.get("traceId", "").lower(),
                    "span_id": s.get("spanId", "").lower(),
                    "parent_span_id": s.get("parentSpanId", "").lower(),
                    "name": s.get("name", ""),
                    "kind": s.get("kind", 0),
                    "attrs": {kv["key"]: json_value_text(kv.get("value", {})) for kv in s.get("attributes", [])},
                    "events": [e.get("name", "") for e in s.get("events", [])],
                })
        attrs = rs.get("resource", {}).get("attributes", [])
        batches.append({"resource": {kv["key"]: json_value_text(kv.get("value", {})) for kv in attrs}, "spans": spans})
    leaks = [n for t in json_strings(doc, []) for n in fnr.find(t)]
    return batches, leaks


def summarize_body(body, ctype):
    """Summary and leaks of a gunzipped HTTP body; BadBody if it does not parse."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    try:
        if ctype == "application/json":
            return summarize_json(json.loads(body))
        req = trace_service_pb2.ExportTraceServiceRequest()
        req.ParseFromString(body)
        return summarize_proto(req)
    except (ValueError, DecodeError) as e:
        raise BadBody(str(e)) from e


# --- the sink ---------------------------------------------------------------


class Sink:
    """Counts, the fail-first budget and every output, behind one lock."""

    def __init__(self, records=None, out=None, requests=None, keep_gzip_sample=False, fail_first=0, armed=True):
        self.lock = threading.Lock()
        self.armed = armed
        self.fail_left = fail_first
        self.received = 0
        self.stored = 0
        self.pipelines = {}
        self.records = open(records, "a", encoding="utf-8") if records else None
        self.body_dir = None
        self.requests = requests
        self.keep_gzip_sample = keep_gzip_sample
        self.kept_gzip = False
        if requests:
            os.makedirs(os.path.dirname(os.path.abspath(requests)), exist_ok=True)
        if out:
            self.record_to(out)

    def record_to(self, path):
        with self.lock:
            if path:
                os.makedirs(path, exist_ok=True)
            self.body_dir = path

    def arm(self):
        with self.lock:
            self.armed = True

    def should_fail(self):
        with self.lock:
            if self.fail_left > 0:
                self.fail_left -= 1
                return True
            return False

    def state(self):
        with self.lock:
            return {
                "received": self.received,
                "stored": self.stored,
                "armed": self.armed,
                "pipelines": {k: dict(v) for k, v in self.pipelines.items()},
            }

    def accept(self, pipeline, via, ctype, encoding, headers, raw, body, summary=None):
        """Keeps one export wherever asked (while armed), then counts it."""
        with self.lock:
            p = self.pipelines.setdefault(pipeline, {"requests": 0, "bytes": 0})
            p["requests"] += 1
            p["bytes"] += len(body)
            if self.armed:
                self.stored += 1
                if self.records is not None:
                    batches, leaks = summary
                    self.records.write(json.dumps({
                        "seq": self.stored,
                        "via": via,
                        "content_type": ctype,
                        "encoding": encoding,
                        "headers": headers,
                        "resource_spans": batches,
                        "leaks": leaks,
                    }) + "\n")
                    self.records.flush()
                if self.body_dir is not None:
                    self._write_body(pipeline, ctype, encoding, headers, raw, body)
            self.received += 1

    def _write_body(self, pipeline, ctype, encoding, headers, raw, body):
        d = os.path.join(self.body_dir, pipeline) if pipeline else self.body_dir
        os.makedirs(d, exist_ok=True)
        name = f"{self.stored:04d}.{EXT.get(ctype, 'bin')}"
        if encoding == "gzip" and self.keep_gzip_sample and not self.kept_gzip:
            self.kept_gzip = True
            with open(os.path.join(d, name + ".gz"), "wb") as f:
                f.write(raw)
        with open(os.path.join(d, name), "wb") as f:
            f.write(body)
        if self.requests:
            with open(self.requests, "a", encoding="utf-8") as f:
                f.write(json.dumps({
                    "file": name,
                    "content_type": ctype,
                    "content_encoding": encoding,
                    "wire_bytes": len(raw),
                    "bytes": len(body),
                    "user_agent": headers.get("user-agent", ""),
                }) + "\n")


def traces_pipeline(path):
    """"" for /v1/traces, the name for /<name>/v1/traces, else None."""
    parts = path.split("?")[0].strip("/").split("/")
    if parts == ["v1", "traces"]:
        return ""
    if len(parts) == 3 and parts[0] and parts[1:] == ["v1", "traces"]:
        return parts[0]
    return None


def make_handler(sink):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as pooled exporters expect
        disable_nagle_algorithm = True  # headers and body are separate writes

        def log_message(self, fmt, *args):
            pass  # quiet; the outputs are the log

        def _body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()  # CRLF after each chunk
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _reply(self, code, ctype, body):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path != "/-/state":
                return self._reply(404, "text/plain", b"only /-/state\n")
            self._reply(200, "application/json", json.dumps(sink.state()).encode())

        def do_POST(self):
            raw = self._body()
            if self.path == "/-/arm":
                sink.arm()
                return self._reply(200, "application/json", b"{}")
            if self.path == "/-/record":
                try:
                    sink.record_to(json.loads(raw or b"{}").get("dir"))
                except (ValueError, AttributeError, OSError) as e:
                    return self._reply(400, "text/plain", f"sink: {e}\n".encode())
                return self._reply(200, "application/json", b"{}")
            pipeline = traces_pipeline(self.path)
            if pipeline is None:
                return self._reply(404, "text/plain", b"only /v1/traces or /<pipeline>/v1/traces\n")
            if sink.should_fail():
                return self._reply(503, "text/plain", b"sink: failing on purpose\n")
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            encoding = self.headers.get("Content-Encoding", "").strip().lower() or "identity"
            headers = {k: self.headers[k] for k in KEPT_HEADERS if k in self.headers}
            try:
                body = gzip.decompress(raw) if encoding == "gzip" else raw
                summary = summarize_body(body, ctype) if sink.records is not None else None
                sink.accept(pipeline, "http", ctype, encoding, headers, raw, body, summary)
            except (OSError, EOFError, zlib.error, BadBody) as e:
                return self._reply(400, "text/plain", f"sink: {e}\n".encode())
            except Exception as e:  # a sink bug must never look like an accepted batch
                return self._reply(500, "text/plain", f"sink: {e!r}\n".encode())
            if ctype == "application/json":
                self._reply(200, "application/json", b"{}")
            else:
                self._reply(200, "application/x-protobuf", b"")

    return Handler


def serve_grpc(sink, port):
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            if sink.should_fail():
                context.abort(grpc.StatusCode.UNAVAILABLE, "sink: failing on purpose")
            md = {k: v for k, v in context.invocation_metadata() if k in KEPT_HEADERS}
            summary = summarize_proto(request) if sink.records is not None else None
            body = request.SerializeToString()
            sink.accept("", "grpc", "application/grpc", "", md, body, body, summary)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="See the module's docstring for what each option keeps.")
    ap.add_argument("--port-file", required=True, help="written with the bound port once the server listens")
    ap.add_argument("--port", type=int, default=0, help="0 (the default) takes any free port")
    ap.add_argument("--grpc", action="store_true", help="serve OTLP/gRPC instead of OTLP/HTTP")
    ap.add_argument("--records", help="JSON-lines file: one summary (with leaks) per export")
    ap.add_argument("--out", help="directory for the bodies (and nothing else)")
    ap.add_argument("--requests", help="JSON-lines file: how each stored body arrived")
    ap.add_argument("--keep-gzip-sample", action="store_true", help="also keep the first gzip body as sent")
    ap.add_argument("--fail-first", type=int, default=0, help="answer the first N exports 503")
    ap.add_argument("--disarmed", action="store_true", help="keep nothing until POST /-/arm")
    args = ap.parse_args(argv)
    sink = Sink(records=args.records, out=args.out, requests=args.requests,
                keep_gzip_sample=args.keep_gzip_sample, fail_first=args.fail_first, armed=not args.disarmed)
    if args.grpc:
        server, port = serve_grpc(sink, args.port)
    else:
        server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(sink))
        server.daemon_threads = True
        port = server.server_address[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, args.port_file)  # atomic: readers never see a half-written port
    try:
        if args.grpc:
            server.wait_for_termination()
        else:
            server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
