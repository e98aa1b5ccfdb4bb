#!/usr/bin/env python3
"""The capture sink the gateway forwards to in the serve tests: a real OTLP
server on 127.0.0.1, HTTP (`POST /v1/traces`, protobuf or JSON, gzip or not,
Content-Length or chunked) or, with --grpc, gRPC `TraceService/Export`.

Every request it accepts becomes one JSON line in --records, written and
flushed before the sink answers, so a test reading the file after a client
saw success finds it there. A line holds what the tests assert on: the
resource attributes, each span's ids, name and attributes (as text), and
`leaks`, every valid personal number found in any string of the request
(checked with fnr.py, which shares no code with the engine). Nothing is kept
in memory between requests.

With --fail-first N the first N requests are answered 503 and not recorded
(an upstream that is briefly down).

The chosen port is written to --port-file once the server listens.
"""

import argparse
import gzip
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fnr  # noqa: E402

from google.protobuf.message import DecodeError  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: E402


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


class Records:
    """The --records file: one JSON line per accepted request."""

    def __init__(self, path, fail_first):
        self.lock = threading.Lock()
        self.seq = 0
        self.fail_left = fail_first
        self.f = open(path, "a", encoding="utf-8")

    def should_fail(self):
        with self.lock:
            if self.fail_left > 0:
                self.fail_left -= 1
                return True
            return False

    def add(self, via, content_type, encoding, headers, batches, leaks):
        with self.lock:
            self.seq += 1
            self.f.write(json.dumps({
                "seq": self.seq,
                "via": via,
                "content_type": content_type,
                "encoding": encoding,
                "headers": headers,
                "resource_spans": batches,
                "leaks": leaks,
            }) + "\n")
            self.f.flush()


# Headers the tests look at (tenant headers, what the gateway says it is).
KEPT_HEADERS = ("x-scope-orgid", "user-agent", "x-test-header")


def make_handler(records):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a pooled client expects

        def log_message(self, fmt, *args):
            pass

        def _body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _reply(self, code, ctype, body):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self._body()
            if self.path.split("?")[0] != "/v1/traces":
                return self._reply(404, "text/plain", b"only /v1/traces\n")
            if records.should_fail():
                return self._reply(503, "text/plain", b"sink: failing on purpose\n")
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            encoding = self.headers.get("Content-Encoding", "").strip().lower() or "identity"
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                if ctype == "application/json":
                    batches, leaks = summarize_json(json.loads(body))
                else:
                    req = trace_service_pb2.ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    batches, leaks = summarize_proto(req)
            except (OSError, EOFError, ValueError, DecodeError) as e:
                return self._reply(400, "text/plain", f"sink: {e}\n".encode())
            except Exception as e:  # a sink bug must never look like an accepted batch
                return self._reply(500, "text/plain", f"sink: {e!r}\n".encode())
            headers = {k: self.headers[k] for k in KEPT_HEADERS if k in self.headers}
            records.add("http", ctype, encoding, headers, batches, leaks)
            if ctype == "application/json":
                self._reply(200, "application/json", b"{}")
            else:
                self._reply(200, "application/x-protobuf", b"")

    return Handler


def serve_grpc(records, port):
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            if records.should_fail():
                context.abort(grpc.StatusCode.UNAVAILABLE, "sink: failing on purpose")
            md = {k: v for k, v in context.invocation_metadata() if k in KEPT_HEADERS}
            batches, leaks = summarize_proto(request)
            records.add("grpc", "application/grpc", "", md, batches, leaks)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--grpc", action="store_true", help="serve OTLP/gRPC instead of OTLP/HTTP")
    ap.add_argument("--fail-first", type=int, default=0)
    args = ap.parse_args()
    records = Records(args.records, args.fail_first)
    if args.grpc:
        server, port = serve_grpc(records, args.port)
    else:
        server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(records))
        server.daemon_threads = True
        port = server.server_address[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, args.port_file)
    try:
        if args.grpc:
            server.wait_for_termination()
        else:
            server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
