#!/usr/bin/env python3
"""OTLP/HTTP capture sink (stdlib only).

Accepts POST /v1/traces and writes each body verbatim to the next numbered
file in --out: NNNN.binpb for application/x-protobuf, NNNN.json for
application/json. Gzip bodies are stored decompressed; the first gzip body of
a directory is also kept as sent (NNNN.binpb.gz / NNNN.json.gz) so readers of
compressed OTLP have a real sample. --out holds nothing but these bodies: how
each one arrived (content type, encoding, sizes, user agent) is appended to
the JSON-lines file --requests, which lives elsewhere. Answers 200 with an
empty ExportTraceServiceResponse: an empty body for protobuf, {} for JSON.

Binds 127.0.0.1 on --port (0 = any free port) and writes the chosen port to
--port-file once it is listening, so the caller never races for a port.

With --disarmed it answers every export with 200 but stores nothing until
POST /_sink/arm; GET /_sink/state tells how many exports arrived and were
stored. The Java agent has no flush the service could trigger, so the driver
(drive.py --sync sink) uses these to warm the service up unrecorded and to
line each scenario group up with the agent's export schedule.
"""

import argparse
import gzip
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXT = {"application/x-protobuf": "binpb", "application/json": "json"}


class Sink:
    def __init__(self, out, requests, armed=True):
        self.armed = armed
        self.received = 0
        self.out = out
        self.requests = requests
        self.lock = threading.Lock()
        self.count = 0
        self.kept_gzip = False
        os.makedirs(out, exist_ok=True)
        os.makedirs(os.path.dirname(os.path.abspath(requests)), exist_ok=True)

    def store(self, body, ctype, encoding, user_agent):
        ext = EXT.get(ctype, "bin")
        with self.lock:
            if not self.armed:
                self.received += 1
                return None
            self.count += 1
            name = f"{self.count:04d}.{ext}"
            raw = body
            if encoding == "gzip":
                body = gzip.decompress(raw)
                if not self.kept_gzip:
                    self.kept_gzip = True
                    with open(os.path.join(self.out, name + ".gz"), "wb") as f:
                        f.write(raw)
            with open(os.path.join(self.out, name), "wb") as f:
                f.write(body)
            # Side record of how each body arrived (read by the manifest writer),
            # kept out of --out so that directory holds only batches.
            with open(self.requests, "a", encoding="utf-8") as f:
                f.write(json.dumps({
                    "file": name,
                    "content_type": ctype,
                    "content_encoding": encoding or "identity",
                    "wire_bytes": len(raw),
                    "bytes": len(body),
                    "user_agent": user_agent,
                }) + "\n")
            # Counted once the body is on disk: a driver that saw the count
            # rise finds the file.
            self.received += 1
            return name


def make_handler(sink):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as exporters expect

        def log_message(self, fmt, *args):
            pass  # quiet; the --requests file is the log

        def _read_body(self):
            # Node's exporter streams gzip bodies with chunked encoding.
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
            if self.path != "/_sink/state":
                return self._reply(404, "text/plain", b"only /_sink/state\n")
            with sink.lock:
                state = {"received": sink.received, "stored": sink.count, "armed": sink.armed}
            self._reply(200, "application/json", json.dumps(state).encode())

        def do_POST(self):
            body = self._read_body()
            if self.path == "/_sink/arm":
                with sink.lock:
                    sink.armed = True
                return self._reply(200, "text/plain", b"armed\n")
            if self.path.split("?")[0] != "/v1/traces":
                return self._reply(404, "text/plain", b"only /v1/traces\n")
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            encoding = self.headers.get("Content-Encoding", "").strip().lower()
            try:
                sink.store(body, ctype, encoding, self.headers.get("User-Agent", ""))
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                return self._reply(400, "text/plain", f"{e}\n".encode())
            if ctype == "application/json":
                self._reply(200, "application/json", b"{}")
            else:
                self._reply(200, "application/x-protobuf", b"")

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="directory for the bodies (and nothing else)")
    ap.add_argument("--requests", required=True, help="JSON-lines file to append one record per request to")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--disarmed", action="store_true", help="store nothing until POST /_sink/arm")
    args = ap.parse_args()
    sink = Sink(args.out, args.requests, armed=not args.disarmed)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(sink))
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)  # atomic: readers never see a half-written port
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
