"""An execution's progress: stamped with the delivery that wrote it, and never written
by a delivery that is no longer the one running it."""

from __future__ import annotations

from pipelinejobs.runtime.executions import Executions
from tests.support import FakeClock


def test_progress_is_written_only_by_the_running_attempt(any_store) -> None:
    clock = FakeClock()
    executions = Executions(any_store, clock=clock)
    doc, _ = executions.submit("jobs-indexer", {"uuid": "x"})

    # Not started: nobody's progress yet.
    assert "progress" not in executions.progress(doc["id"], {"files_seen": 1}, attempt=1)

    executions.start(doc["id"])
    clock.advance(2)
    first = executions.progress(doc["id"], {"files_seen": 5}, logs=["one"], attempt=1)
    assert first["progress"] == {"files_seen": 5, "attempt": 1, "updated": first["updated"]}
    assert first["logs"] == ["one"]

    # A redelivery started (attempt 2): the first delivery, still going somewhere, can
    # neither put its count back nor its log lines.
    executions.start(doc["id"])
    stale = executions.progress(doc["id"], {"files_seen": 900}, logs=["stale"], attempt=1)
    assert stale["progress"]["files_seen"] == 5 and stale["logs"] == ["one"]
    second = executions.progress(doc["id"], {"files_seen": 2}, attempt=2)
    assert second["progress"]["files_seen"] == 2 and second["progress"]["attempt"] == 2

    # Finished: nothing more is written.
    executions.finish(doc["id"], result={"ok": True})
    late = executions.progress(doc["id"], {"files_seen": 3}, attempt=2)
    assert late["progress"]["files_seen"] == 2 and late["status"] == "COMPLETE"
