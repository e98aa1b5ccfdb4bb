#!/usr/bin/env python3
"""The OTLP/HTTP sink of `scripts/collector-compare.sh`, on 127.0.0.1.

`POST /<pipeline>/v1/traces` (one path per pipeline, set as each exporter's
`traces_endpoint`) is answered 200 with an empty protobuf response once the
body is read, and counted per pipeline. While recording, each body (gunzipped
if it came gzipped) is also written, before the answer, to
`<dir>/<pipeline>/<seq>.binpb`, so a client that saw its request answered
finds the pipeline's output on disk: the collector's exports are synchronous.

Control, from the driver only:
- `POST /-/record` with a JSON body `{"dir": "/path"}` starts recording,
  `{"dir": null}` stops it;
- `GET /-/stats` returns `{"<pipeline>": {"requests": N, "bytes": N}}`.

Nothing is parsed: the sink must not be what limits the load phases.
The chosen port is written to --port-file once the server listens.
"""

import argparse
import gzip
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.record_dir = None
        self.seq = 0
        self.stats = {}

    def add(self, pipeline, body):
        with self.lock:
            s = self.stats.setdefault(pipeline, {"requests": 0, "bytes": 0})
            s["requests"] += 1
            s["bytes"] += len(body)
            if self.record_dir is None:
                return
            self.seq += 1
            d = os.path.join(self.record_dir, pipeline)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"{self.seq:06d}.binpb"), "wb") as f:
                f.write(body)


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's pooled client expects
        disable_nagle_algorithm = True  # headers and body are separate writes

        def log_message(self, fmt, *args):
            pass

        def _reply(self, code, ctype, body):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

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

        def do_GET(self):
            if self.path == "/-/stats":
                with state.lock:
                    body = json.dumps(state.stats).encode()
                return self._reply(200, "application/json", body)
            self._reply(404, "text/plain", b"not found\n")

        def do_POST(self):
            body = self._body()
            if self.path == "/-/record":
                with state.lock:
                    state.record_dir = json.loads(body or b"{}").get("dir")
                return self._reply(200, "application/json", b"{}")
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) != 3 or parts[1:] != ["v1", "traces"]:
                return self._reply(404, "text/plain", b"only /<pipeline>/v1/traces\n")
            if self.headers.get("Content-Encoding", "").strip().lower() == "gzip":
                try:
                    body = gzip.decompress(body)
                except (OSError, EOFError) as e:
                    return self._reply(400, "text/plain", f"sink: {e}\n".encode())
            state.add(parts[0], body)
            self._reply(200, "application/x-protobuf", b"")

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(State()))
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
