"""The gateway killed with SIGKILL in the middle of a load, then restarted."""

import harness
import load

BEFORE_KILL = 400  # acknowledged batches before the kill
AFTER_RESTART = 400  # and after the restart


def test_sigkill_mid_load_loses_no_acknowledged_batch(tmp_path, procs, report):
    """Scenario: 4 senders post batches through the gateway; once 400 are
    acknowledged it is killed with SIGKILL (no shutdown, in-flight batches cut
    off), restarted on new ports against the same sink, and the senders move
    to it.
    Guarantees: every batch acknowledged before the kill is at the sink
    (acknowledged means the sink already held it), none arrives twice, every
    received batch is masked and filtered, and the restarted gateway is ready
    and acknowledges new batches, which arrive too."""
    work = str(tmp_path)
    sink = harness.Sink(work)
    procs.append(sink)
    current = {"gw": harness.Gateway(work, sink.url, name="gateway-1")}
    procs.append(current["gw"])
    first = current["gw"]

    senders = load.Load(lambda: current["gw"].http_url, senders=4, prefix="k").start()
    try:
        harness.wait_until(lambda: senders.count("acked") >= BEFORE_KILL, 300,
                           f"{BEFORE_KILL} acknowledged batches before the kill")
        first.kill()
        assert first.proc.returncode == -9
        # Every answer the senders have now came from the killed process.
        with senders.lock:
            acked_before = {b for b, r in senders.results.items() if r[0] == "acked"}
            sent_before = len(senders.results)

        second = harness.Gateway(work, sink.url, name="gateway-2")
        procs.append(second)
        current["gw"] = second
        status, _ = second.admin_get("/readyz")
        assert status == 200
        harness.wait_until(lambda: senders.count("acked") >= len(acked_before) + AFTER_RESTART, 300,
                           f"{AFTER_RESTART} acknowledged batches after the restart")
    finally:
        senders.stop()

    by_id, counts = load.match(senders, sink.records())
    lost_before = acked_before - set(by_id)
    acked_after = {b for b, r in senders.results.items() if r[0] == "acked"} - acked_before
    report(
        f"sigkill: sent_before_kill={sent_before} acknowledged_before_kill={len(acked_before)} "
        f"lost_before_kill={len(lost_before)} acknowledged_after_restart={len(acked_after)} "
        "sent={sent} acknowledged={acknowledged} received={received} lost={lost} duplicates={duplicates} "
        "errors={errors} rejected={rejected} unacked_but_received={unacked_but_received}".format(**counts)
    )
    assert not lost_before, f"{len(lost_before)} batches acknowledged before the kill are not at the sink"
    assert counts["lost"] == 0
    assert counts["duplicates"] == 0
    assert counts["unknown"] == 0
    assert len(acked_after) >= AFTER_RESTART
    for batch_id, arrivals in by_id.items():
        for rs in arrivals:
            tokens = load.replacements(rs)  # raises if health spans survived
            assert tokens == ["*" * 11] * 4, (batch_id, tokens)
    assert all(not r["leaks"] for r in sink.records())
    assert second.alive()
