"""Processes the serve tests start: the capture sink and `tracescrub serve`.

Everything binds 127.0.0.1 with port 0 and reports the port it got, so tests
never race for ports. Every wait is bounded; a process that dies while being
waited for fails the wait at once with the tail of its log.
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SINK = os.path.join(REPO, "testdata", "sink", "otlp_sink.py")


def tracescrub_bin():
    """The binary under test: $TRACESCRUB_BIN, else the debug build."""
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    path = os.environ.get("TRACESCRUB_BIN") or os.path.join(target, "debug", "tracescrub")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no tracescrub binary at {path!r}: run `cargo build -p tracescrub` or set TRACESCRUB_BIN")
    return path


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    with open(path, "rb") as f:
        return sha256_bytes(f.read())


def tail(path, n=40):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


def write_atomic(path, data):
    """Replace a file in one rename, as editors and config management do, so a
    watcher never reads half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.replace(tmp, path)


class Sink:
    """The capture sink (testdata/sink/otlp_sink.py) in its own process,
    writing a summary of each export to its records file."""

    def __init__(self, workdir, name="sink", grpc=False, fail_first=0):
        self.records_path = os.path.join(workdir, f"{name}.jsonl")
        self.log = os.path.join(workdir, f"{name}.log")
        port_file = os.path.join(workdir, f"{name}.port")
        args = [sys.executable, SINK, "--records", self.records_path, "--port-file", port_file]
        if grpc:
            args.append("--grpc")
        if fail_first:
            args += ["--fail-first", str(fail_first)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))
        deadline = time.monotonic() + 30
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sink did not start:\n{tail(self.log)}")
            time.sleep(0.05)
        self.port = int(open(port_file).read())
        scheme = "grpc" if grpc else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    def records(self):
        """Every request the sink accepted so far, in arrival order."""
        if not os.path.exists(self.records_path):
            return []
        with open(self.records_path, encoding="utf-8") as f:
            # A line is written whole before the answer; a partial last line
            # can only be one still being written, which no client has seen
            # acknowledged yet.
            return [json.loads(line) for line in f if line.endswith("\n")]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


READY = re.compile(r"^serve: ready http=(\S+) grpc=(\S+) admin=(\S+) component=([0-9a-f]{64}) config=([0-9a-f]{64})$")


class Gateway:
    """`tracescrub serve` in its own process, started and waited for until it
    prints its ready line."""

    def __init__(self, workdir, upstream, config=None, component=None, extra=(), name="gateway", ready_timeout=180):
        self.log = os.path.join(workdir, f"{name}.log")
        args = [tracescrub_bin(), "serve", "--upstream", upstream,
                "--listen-http", "127.0.0.1:0", "--listen-grpc", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
        if config:
            args += ["--config", config]
        if component:
            args += ["--component", component]
        args += list(extra)
        self.args = args
        self.stdout_lines = []
        self._ready = threading.Event()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(self.log, "ab"), stdin=subprocess.DEVNULL)
        # Drain stdout in a thread: the ready line is read from it, and a
        # full pipe must never block the gateway.
        threading.Thread(target=self._read_stdout, daemon=True).start()
        deadline = time.monotonic() + ready_timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"gateway not ready (exit {self.proc.returncode}); args {args}\n"
                    f"stdout: {self.stdout_lines}\nstderr:\n{tail(self.log)}")
        m = self.ready_match
        self.http = m.group(1)
        self.grpc = m.group(2)
        self.admin = m.group(3)
        self.component_sha256 = m.group(4)
        self.config_sha256 = m.group(5)
        self.http_url = f"http://{self.http}/v1/traces"

    def _read_stdout(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout_lines.append(line)
            m = READY.match(line)
            if m and not self._ready.is_set():
                self.ready_match = m
                self._ready.set()

    # ------------------------------------------------------------- admin
    def admin_get(self, path, timeout=10):
        try:
            with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def reload(self, timeout=120):
        """POST /-/reload: (status, body)."""
        req = urllib.request.Request(f"http://{self.admin}/-/reload", data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self):
        status, text = self.admin_get("/metrics")
        assert status == 200, f"/metrics answered {status}: {text[:200]}"
        return parse_prometheus(text)

    def active_version(self):
        """(component_sha256, config_sha256) of tracescrub_active_version."""
        for (name, labels), value in self.metrics().items():
            if name == "tracescrub_active_version" and value == 1:
                d = dict(labels)
                return d.get("component_sha256"), d.get("config_sha256")
        return None

    def reloads(self):
        """tracescrub_reloads_total by result label."""
        out = {}
        for (name, labels), value in self.metrics().items():
            if name == "tracescrub_reloads_total":
                result = dict(labels).get("result", "")
                out[result] = out.get(result, 0) + value
        return out

    def sighup(self):
        self.proc.send_signal(signal.SIGHUP)

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL: no chance to flush or finish anything."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    """Prometheus text format -> {(name, frozenset(labels)): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            pass
    return out


def metric_sum(metrics, name, **match):
    """Sum of a metric's samples whose labels include `match`."""
    total = 0.0
    for (n, labels), v in metrics.items():
        if n == name and all((k, val) in labels for k, val in match.items()):
            total += v
    return total


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
