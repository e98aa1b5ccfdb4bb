"""Fixtures for the serve tests, and a closing line in cargo's format.

scripts/test.sh adds up the `test result:` lines of every test binary into
its `tests: N passed, N failed` total; pytest_terminal_summary prints one for
this suite so it is counted the same way.
"""

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The capture sink and fnr.py, the independent personal-number scan, live in
# testdata/sink, shared with the collector's tests and tools.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "testdata", "sink")))
import harness  # noqa: E402

_started = time.monotonic()

# Lines a test wants in the CI log whatever its outcome (counts of the load
# tests); printed in the closing summary.
REPORT = []


@pytest.fixture
def report():
    return REPORT.append


@pytest.fixture
def procs():
    """Stops every process a test registered, whatever the outcome; on a
    failure, prints each one's log tail so CI output says what happened."""
    started = []
    yield started
    for p in reversed(started):
        p.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for p in item.funcargs.get("procs", []) or []:
            log = getattr(p, "log", None)
            if log:
                rep.sections.append((f"log {os.path.basename(log)}", harness.tail(log, 60)))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for line in REPORT:
        terminalreporter.write_line(line)
    stats = terminalreporter.stats
    passed = len(stats.get("passed", []))
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    skipped = len(stats.get("skipped", []))
    # Exit status 5 (nothing collected) is a failure too: a suite that ran
    # no test must not read as passing.
    word = "ok" if failed == 0 and exitstatus == 0 else "FAILED"
    terminalreporter.write_line(
        f"test result: {word}. {passed} passed; {failed} failed; {skipped} ignored; 0 measured; "
        f"0 filtered out; finished in {time.monotonic() - _started:.2f}s"
    )
