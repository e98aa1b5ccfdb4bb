"""Fixtures for the collector's end-to-end tests.

They share the serve tests' pieces (host-harness/tests/serve_e2e: the process
helpers, among them the one that starts the capture sink, and the `procs`
fixture with the cargo-style closing line that scripts/test.sh counts),
loaded from there rather than copied; its conftest also puts testdata/sink
(the sink and fnr.py, the independent personal-number scan) on the path.
"""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SERVE_E2E = os.path.abspath(os.path.join(HERE, "..", "..", "host-harness", "tests", "serve_e2e"))
sys.path.insert(0, SERVE_E2E)

# serve_e2e/conftest.py under another name: its fixtures and hooks apply here too.
_spec = importlib.util.spec_from_file_location("serve_e2e_conftest", os.path.join(SERVE_E2E, "conftest.py"))
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)

procs = _shared.procs
report = _shared.report
pytest_runtest_makereport = _shared.pytest_runtest_makereport
pytest_terminal_summary = _shared.pytest_terminal_summary
