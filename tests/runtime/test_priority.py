"""Which priority an execution is published with (issue 15), on the stub bus.

A launch names its job's priority; the job keeps it; the job's events (its
launcher's callbacks, sent from outside) and what actors send on its behalf are
published with it, and stored on each execution so a re-publish keeps it. The stub
bus records priorities and delivers in publishing order; that the brokers honour
them is tests/integration/test_priority.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pipelinejobs.errors import SchemaValidationError
from pipelinejobs.runtime.dispatch import Runtime
from tests.actors.test_launcher_proxy import LAUNCH, launch, register
from tests.support import FakeClock, make_runtime, stub


def job_executions(rt: Runtime, uuid: str) -> list[dict]:
    return [e for e in rt.store.find("executions", {}, limit=1000).items if e.get("job") == uuid]


@pytest.mark.parametrize("priority", ["low", "medium", "high"])
def test_a_launch_gives_its_job_and_all_its_executions_its_priority(
    runtime: Runtime, priority: str
) -> None:
    register(runtime)
    execution = launch(runtime, {**copy.deepcopy(LAUNCH), "priority": priority})
    assert execution["status"] == "COMPLETE", execution["error"]
    assert execution["priority"] == priority
    uuid = execution["result"]["uuid"]
    assert runtime.jobs.get(uuid)["priority"] == priority
    events = job_executions(runtime, uuid)
    assert {e["actor"] for e in events} >= {"jobs-manager"}  # its callbacks
    published = stub(runtime).priorities
    for e in [execution, *events]:
        assert e["priority"] == priority, e["actor"]
        assert published[e["id"]] == priority, e["actor"]


def test_a_launch_without_priority_is_medium(runtime: Runtime) -> None:
    register(runtime)
    execution = launch(runtime)
    uuid = execution["result"]["uuid"]
    assert runtime.jobs.get(uuid)["priority"] == "medium"
    assert {e["priority"] for e in job_executions(runtime, uuid)} == {"medium"}


def test_an_unknown_priority_is_refused(runtime: Runtime) -> None:
    register(runtime)
    with pytest.raises(SchemaValidationError):
        runtime.submit("launcher-proxy", {**copy.deepcopy(LAUNCH), "priority": "urgent"})


def test_what_decides_a_messages_priority(runtime: Runtime) -> None:
    register(runtime)
    uuid = launch(runtime, {**copy.deepcopy(LAUNCH), "priority": "high"})["result"]["uuid"]
    assert runtime.priority_for({"uuid": uuid}, {}) == "high"  # its job's
    assert runtime.priority_for({}, {"uuid": uuid}) == "high"  # named in the URL
    assert runtime.priority_for({"uuid": uuid}, {}, "low") == "low"  # its sender's first
    assert runtime.priority_for({"priority": "low"}, {}, "high") == "low"  # its own first
    assert runtime.priority_for({}, {}) == "medium"
    unknown = "1070e4b5-6f80-5b61-a0c0-3f2f2b5b1f7c"
    assert runtime.priority_for({"uuid": unknown}, {}) == "medium"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_recovered_execution_is_republished_with_its_priority(tmp_path: Path, kind: str) -> None:
    clock = FakeClock()
    runtime = make_runtime(tmp_path, kind, clock)
    try:
        register(runtime)
        bus = stub(runtime)
        message = {**copy.deepcopy(LAUNCH), "priority": "low"}
        execution = runtime.submit("launcher-proxy", message, execution_id="E1")
        assert execution["priority"] == "low"
        bus.queue.clear()  # its message lost
        bus.priorities.clear()
        clock.advance(120)
        assert runtime.recover(["launcher-proxy"], older_than=60) == ["E1"]
        assert bus.priorities == {"E1": "low"}
    finally:
        runtime.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_long_waiting_low_execution_is_aged_up_one_level_at_a_time(
    tmp_path: Path, kind: str
) -> None:
    """Aging (``bus.priority_age``): low -> medium after the age, medium -> high after
    another; high stays; the stored priority moves with it, and a second sweep in the
    same moment (another worker) publishes nothing more."""
    clock = FakeClock()
    runtime = make_runtime(tmp_path, kind, clock, bus={"priority_age": 300.0})
    try:
        register(runtime)
        bus = stub(runtime)
        for name, level in (("L1", "low"), ("H1", "high")):
            runtime.submit("launcher-proxy", {**copy.deepcopy(LAUNCH), "priority": level},
                           execution_id=name)  # fmt: skip
        bus.published.clear()
        recovery = runtime.recovery

        clock.advance(299)
        assert recovery.age(["launcher-proxy"]) == []  # not yet
        clock.advance(2)
        assert recovery.age(["launcher-proxy"]) == ["L1"]
        assert recovery.age(["launcher-proxy"]) == []  # claimed: once per age
        assert (bus.priorities["L1"], runtime.executions.get("L1")["priority"]) == ("medium",) * 2
        clock.advance(301)
        assert recovery.age(["launcher-proxy"]) == ["L1"]
        assert runtime.executions.get("L1")["priority"] == "high"
        assert runtime.executions.get("L1")["aged"] == 2
        clock.advance(301)
        assert recovery.age(["launcher-proxy"]) == []  # high is the top; H1 never moves
        assert bus.published == [("launcher-proxy", "L1"), ("launcher-proxy", "L1")]

        # Its messages run it once: the first to arrive runs it, the others are skipped.
        bus.join()
        assert runtime.executions.get("L1")["status"] == "COMPLETE"
        assert runtime.executions.get("L1")["attempts"] == 1
    finally:
        runtime.close()


def test_aging_is_off_at_zero(tmp_path: Path) -> None:
    clock = FakeClock()
    runtime = make_runtime(tmp_path, "memory", clock, bus={"priority_age": 0.0})
    try:
        register(runtime)
        runtime.submit("launcher-proxy", {**copy.deepcopy(LAUNCH), "priority": "low"})
        clock.advance(10_000)
        assert runtime.recovery.age(["launcher-proxy"]) == []
    finally:
        runtime.close()
