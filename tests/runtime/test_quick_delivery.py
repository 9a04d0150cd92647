"""A quick message's start is written with its end (Actor.quick, issue 18): one
execution write per event instead of two, with every promise a written start keeps
for the other paths — failures, retries, time limits, racing deliveries."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.domain.clock import parse
from pipelinejobs.errors import StoreUnavailable
from pipelinejobs.runtime.dispatch import Runtime
from tests.actors.jobs_support import make_job, token
from tests.support import FakeClock, make_runtime

MANAGER = "jobs-manager"


@pytest.fixture(params=["memory", "sqlite"])
def rt(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock):
    runtime = make_runtime(tmp_path, request.param, clock, bus={"max_retries": 2})
    yield runtime
    runtime.close()


def update(rt: Runtime, job: dict[str, Any]) -> dict[str, Any]:
    return {"uuid": job["uuid"], "name": "update", "token": token(rt, job)}


def statuses_seen_while_handling(rt: Runtime, alias: str, monkeypatch) -> list[str]:
    """The stored status of each execution at the moment its actor's handle runs."""
    actor, seen = rt.actor(alias), []
    handle = actor.handle

    def watching(ctx: Any, msg: Any) -> Any:
        seen.append(rt.executions.get(ctx.execution_id)["status"])
        return handle(ctx, msg)

    monkeypatch.setattr(actor, "handle", watching)
    return seen


@pytest.mark.parametrize(
    ("message", "quick"),
    [
        ({"uuid": "x", "name": "update"}, True),
        ({"action": "tag", "uuid": "x"}, True),
        ({"action": "bulk", "op": "cancel"}, False),
    ],
)
def test_which_jobs_manager_messages_are_quick(rt: Runtime, message, quick):
    assert rt.actor(MANAGER).quick(message) is quick
    assert not any(rt.actor(a).quick(message) for a in rt.actors if a != MANAGER)


def test_an_event_is_one_execution_write(rt: Runtime, clock: FakeClock, monkeypatch):
    seen = statuses_seen_while_handling(rt, MANAGER, monkeypatch)
    job = make_job(rt)
    submitted = rt.submit(MANAGER, update(rt, job))
    clock.advance(5)
    done = rt.deliver(MANAGER, submitted["id"], worker="w1")
    assert seen == ["SUBMITTED"]  # no RUNNING write before handling
    assert done["version"] == submitted["version"] + 1  # one write: start and end
    assert done["status"] == "COMPLETE" and done["attempts"] == 1 and done["worker"] == "w1"
    assert submitted["created"] < done["started"] == done["finished"]
    assert done["result"]["event"] == "update"


def test_other_messages_are_still_running_while_handled(rt: Runtime, monkeypatch):
    seen = statuses_seen_while_handling(rt, "pipelines-manager", monkeypatch)
    body = {
        "name": "quick test",
        "components": [{"id": "app-0.1.0", "inputs": {}, "parameters": {}}],
    }
    submitted = rt.submit("pipelines-manager", body)
    done = rt.deliver("pipelines-manager", submitted["id"], worker="w1")
    assert seen == ["RUNNING"]
    assert done["version"] == submitted["version"] + 2 and done["attempts"] == 1


def test_a_failing_event_is_started_before_its_failure_is_recorded(rt: Runtime):
    submitted = rt.submit(
        MANAGER, {"uuid": "1073f4ff-c2b9-5a7b-9ec2-6a1c9a7d0a0e", "name": "update"}
    )
    done = rt.deliver(MANAGER, submitted["id"], worker="w1")
    assert done["status"] == "ERROR"
    assert done["attempts"] == 1 and done["worker"] == "w1" and done["started"]
    assert done["version"] == submitted["version"] + 2  # the start, then the failure


def test_a_transient_failure_counts_every_attempt_and_gives_up(rt: Runtime, monkeypatch):
    """Retries read the attempt from the record: the late start is what counts them
    (bus.max_retries 2: three attempts, then ERROR)."""
    job = make_job(rt)
    actor = rt.actor(MANAGER)

    def down(ctx: Any, msg: Any) -> Any:
        raise StoreUnavailable("the store is away")

    monkeypatch.setattr(actor, "handle", down)
    submitted = rt.submit(MANAGER, update(rt, job))
    attempts = []
    for _ in range(5):
        done = rt.deliver(MANAGER, submitted["id"])
        attempts.append((done["status"], done["attempts"]))
        if done["status"] == "ERROR":
            break
    assert attempts == [("SUBMITTED", 1), ("SUBMITTED", 2), ("ERROR", 3)]


def test_a_killed_quick_delivery_left_submitted_is_closed_by_expire(rt: Runtime):
    job = make_job(rt)
    submitted = rt.submit(MANAGER, update(rt, job))
    closed = rt.expire(MANAGER, submitted["id"], 60.0)
    assert closed["status"] == "ERROR" and closed["error"]["error"] == "TimeLimitExceeded"
    body = {"name": "x", "components": [{"id": "app-0.1.0", "inputs": {}, "parameters": {}}]}
    other = rt.submit("pipelines-manager", body)
    assert rt.expire("pipelines-manager", other["id"], 60.0)["status"] == "SUBMITTED"


def test_two_deliveries_racing_count_two_attempts(tmp_path: Path, monkeypatch):
    """A redelivery while the first is still handling (a visibility timeout): both
    run, and the record counts both attempts whichever ends first (SQLite, threads)."""
    rt = make_runtime(tmp_path, "sqlite")
    try:
        job = make_job(rt)
        submitted = rt.submit(MANAGER, update(rt, job))
        actor, inside, release = rt.actor(MANAGER), threading.Event(), threading.Event()
        handle = actor.handle

        def slow_first(ctx: Any, msg: Any) -> Any:
            if ctx.execution.get("worker") == "first":
                inside.set()
                assert release.wait(10)
            return handle(ctx, msg)

        monkeypatch.setattr(actor, "handle", slow_first)
        outcome: dict[str, Any] = {}
        first = threading.Thread(
            target=lambda: outcome.update(first=rt.deliver(MANAGER, submitted["id"], "first"))
        )
        first.start()
        assert inside.wait(10)
        second = rt.deliver(MANAGER, submitted["id"], "second")
        release.set()
        first.join(10)
        assert second["status"] == "COMPLETE" and second["attempts"] == 1
        final = rt.executions.get(submitted["id"])
        assert final["status"] == "COMPLETE" and final["attempts"] == 2
        assert outcome["first"]["worker"] == "first"
        history = rt.jobs.record(job["uuid"])["history"]
        assert sum(1 for h in history if h["name"] == "update") == 1  # applied once
    finally:
        rt.close()


def test_a_late_start_keeps_the_time_handling_began(rt: Runtime, clock: FakeClock, monkeypatch):
    job = make_job(rt)
    actor = rt.actor(MANAGER)

    def slow_then_down(ctx: Any, msg: Any) -> Any:
        clock.advance(7)
        raise StoreUnavailable("the store is away")

    monkeypatch.setattr(actor, "handle", slow_then_down)
    submitted = rt.submit(MANAGER, update(rt, job))
    began = clock()
    done = rt.deliver(MANAGER, submitted["id"])
    assert done["status"] == "SUBMITTED" and done["attempts"] == 1  # to be retried
    assert parse(done["started"]) == pytest.approx(began, abs=0.001)
    assert parse(done["updated"]) == pytest.approx(began + 7, abs=0.001)
